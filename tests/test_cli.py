"""The ``codex-runtime`` command: ``tools``, ``call`` and ``run`` (``demo`` has its own tests).

Most tests run the command in-process (``main([...])``) against real loopback servers
and a config file pointing at them; a few run ``python -m codex_runtime`` in a
subprocess, for the entry point and for Ctrl-C.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from codex_runtime._provider_stub import ProviderStub, StubReply
from codex_runtime.cli import main
from codex_runtime.testing import RecordingServer

ROOT = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def config(tmp_path: Path, server: RecordingServer, other_server: RecordingServer) -> str:
    """Two servers: ``apps`` (an Apps server) and ``ws`` (with a secret static header)."""
    return _write_config(
        tmp_path,
        f"""
model = "ignored-by-the-runtime"

[mcp_servers.apps]
url = "{server.url}"
apps = true

[mcp_servers.ws]
url = "{other_server.url}"
bearer_token_env_var = "CLI_TEST_TOKEN"
http_headers = {{ "x-tenant" = "t1" }}
header_delivery = "both"
""",
    )


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLI_TEST_TOKEN", "tok-very-secret")


def _json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


# -- help and usage ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["demo", "tools", "call", "run"])
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"codex-runtime {command}" in out
    assert "--json" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["call", "apps"])  # TOOL is required
    assert exited.value.code == 2
    assert "tool" in capsys.readouterr().err
    # No --config and no $CODEX_HOME/config.toml: a usage error naming the default.
    assert main(["tools"]) == 2
    assert "--config" in capsys.readouterr().err


# -- tools ------------------------------------------------------------------------------------


def test_tools_prints_a_table_by_server_and_the_servers_that_failed(
    tmp_path: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(config, "a", encoding="utf-8") as fh:
        down = f"http://127.0.0.1:{_closed_port()}/mcp"
        fh.write(f'\n[mcp_servers.down]\nurl = "{down}"\nstartup_timeout_sec = 0.5\n')
        fh.write('\n[mcp_servers.off]\nurl = "http://127.0.0.1:1/mcp"\nenabled = false\n')
    assert main(["tools", "--config", config]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["SERVER", "TOOL", "DESCRIPTION"]
    assert any(line.split()[:2] == ["apps", "echo"] for line in lines)
    assert any(line.split()[:2] == ["ws", "block"] for line in lines)
    failed = out.split("Servers that failed to start:")[1]
    assert "down: " in failed and "cannot connect" in failed
    assert "off" not in out  # disabled servers are left out


def test_tools_json(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--config", config, "--json"]) == 0
    data = _json(capsys.readouterr().out)
    assert data["ok"] is True and data["exit_code"] == 0
    servers = data["servers"]
    assert isinstance(servers, dict) and list(servers) == ["apps", "ws"]
    echo = next(t for t in servers["apps"]["tools"] if t["name"] == "echo")
    assert echo["qualified_name"] == "apps__echo"
    assert echo["input_schema"]["type"] == "object"


def test_tools_exits_1_when_a_required_server_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(
        tmp_path,
        f'[mcp_servers.must]\nurl = "http://127.0.0.1:{_closed_port()}/mcp"\nrequired = true\n'
        "startup_timeout_sec = 0.5\n",
    )
    assert main(["tools", "--config", config, "--json"]) == 1
    captured = capsys.readouterr()
    data = _json(captured.out)
    assert data["ok"] is False and data["exit_code"] == 1
    must = data["servers"]["must"]
    assert must["ok"] is False and must["required"] is True
    assert "cannot connect" in must["error"]
    assert "required server failed" in captured.err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read"),
        ("[mcp_servers.x\n", "config.toml"),
        ('[mcp_servers.x]\nurl = "ftp://nope"\n', "url"),
        # (An unset variable fails only its server: see test_cli_config.py.)
        ('[mcp_servers.x]\nurl = "http://h/mcp"\nbearer_token_env_var = ""\n', "must not be empty"),
    ],
)
def test_configuration_errors_exit_2(
    tmp_path: Path, text: str | None, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "config.toml") if text is None else _write_config(tmp_path, text)
    for command in (
        ["tools"],
        ["call", "x", "echo"],
        ["run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "hi"],
    ):
        assert main([*command, "--config", path]) == 2
        assert message in capsys.readouterr().err


# -- call -------------------------------------------------------------------------------------


def test_call_prints_the_result(
    config: str, server: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "apps", "echo", "--args", '{"text": "hello cli"}', "--config", config]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["arguments"] == {"text": "hello cli"}
    [call] = server.requests("tools/call")
    assert call.arguments == {"text": "hello cli"}
    # It ran inside a turn: the Apps server got the turn headers.
    assert call.header("session_id") and call.header("x-codex-turn-metadata")


def test_call_show_headers_prints_what_left_the_client_with_secrets_redacted(
    config: str, other_server: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["call", "ws", "echo", "--args", '{"text": "h"}', "--config", config, "--show-headers"]
    assert main([*args, "-H", "x-request-id: r-1", "-H", "x-api-token: call-secret"]) == 0
    out = capsys.readouterr().out
    shown = out.split("--- sent to 'ws': POST ")[1]
    assert "authorization: [REDACTED]" in shown
    assert "x-api-token: [REDACTED]" in shown
    assert "x-tenant: t1" in shown and "x-request-id: r-1" in shown
    assert "session_id" not in shown  # not an Apps server
    assert '"extra_headers"' in shown  # header_delivery = "both"
    assert "tok-very-secret" not in shown and "call-secret" not in shown
    # The server did get the real values.
    [call] = other_server.requests("tools/call")
    assert call.header("authorization") == "Bearer tok-very-secret"
    assert call.meta["extra_headers"]["x-api-token"] == "call-secret"


def test_call_show_headers_json(
    config: str, server: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["call", "apps", "echo", "--args", '{"text": "j"}', "--config", config, "--show-headers", "--json"]
    assert main(args) == 0
    data = _json(capsys.readouterr().out)
    assert data["ok"] is True and data["is_error"] is False
    assert data["outcome"]["state"] == "completed"
    [sent] = data["sent"]
    [received] = server.requests("tools/call")
    assert sent["headers"]["session_id"] == received.header("session_id")
    assert sent["headers"]["x-codex-turn-metadata"] == received.header("x-codex-turn-metadata")
    assert sent["url"] == server.url


def test_a_tool_error_exits_1(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "ws", "fail", "--args", '{"message": "it broke"}', "--config", config]) == 1
    captured = capsys.readouterr()
    assert "it broke" in captured.out
    assert main(["call", "ws", "no_such_tool", "--config", config, "--json"]) == 1
    data = _json(capsys.readouterr().out)
    assert data["ok"] is False
    assert "does not list this tool" in data["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["apps", "echo", "--args", "{not json"], "--args is not valid JSON"),
        (["apps", "echo", "--args", "[1, 2]"], "--args must be a JSON object"),
        (["nowhere", "echo"], "no server named 'nowhere'"),
        (["apps", "echo", "-H", "bad header: x"], "--header"),
        (["apps", "echo", "-H", "traceparent: x"], "traceparent"),
    ],
)
def test_call_usage_errors_exit_2(
    config: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", *extra, "--config", config, "--json"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert _json(captured.out)["exit_code"] == 2


# -- run --------------------------------------------------------------------------------------


def test_run_prints_tool_calls_as_they_happen_and_the_answer(
    config: str,
    server: RecordingServer,
    provider: ProviderStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLI_PROVIDER_KEY", "sk-cli")
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "via run"}), ("ws__fail", {})), "Here it is.")
    args = ["run", "--config", config, "--base-url", provider.base_url, "--model", "stub", "--api-key-env"]
    assert main([*args, "CLI_PROVIDER_KEY", "-H", "x-provider-extra: 1", "Echo something"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == '-> apps__echo {"text": "via run"}'
    assert out[1] == "-> ws__fail {}"
    assert {line.split(" [")[0] for line in out[2:4]} == {"<- apps__echo", "<- ws__fail"}
    assert "<- ws__fail [error] requested failure" in out
    assert out[-1] == "Here it is."
    first, _ = provider.chat_requests()
    assert first.header("authorization") == "Bearer sk-cli"
    assert first.header("x-provider-extra") == "1"
    assert first.messages == [{"role": "user", "content": "Echo something"}]
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "via run"}]


def test_run_json(config: str, provider: ProviderStub, capsys: pytest.CaptureFixture[str]) -> None:
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "j"})), "done")
    args = ["run", "--config", config, "--base-url", provider.base_url, "--model", "stub", "--json", "go"]
    assert main(args) == 0
    data = _json(capsys.readouterr().out)
    assert data["ok"] is True and data["text"] == "done" and data["steps"] == 2
    [call] = data["tool_calls"]
    assert (call["name"], call["server"], call["tool"], call["is_error"]) == (
        "apps__echo",
        "apps",
        "echo",
        False,
    )
    assert data["outcome"]["state"] == "completed"


def test_run_without_config_has_no_tools(provider: ProviderStub, capsys: pytest.CaptureFixture[str]) -> None:
    provider.add("just text")
    assert main(["run", "--base-url", provider.base_url, "--model", "stub", "hi"]) == 0
    assert capsys.readouterr().out == "just text\n"
    assert "tools" not in provider.chat_requests()[0].body


def test_a_provider_error_exits_1_without_a_traceback(
    config: str, provider: ProviderStub, capsys: pytest.CaptureFixture[str]
) -> None:
    provider.add(StubReply.error(503, "overloaded"))
    args = ["run", "--config", config, "--base-url", provider.base_url, "--model", "stub", "--json", "hi"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "HTTP 503: overloaded" in captured.err and "Traceback" not in captured.err
    data = _json(captured.out)
    assert data["error"]["type"] == "ModelError"
    assert data["outcome"]["state"] == "failed"


def test_run_usage_errors_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    assert main(["run", "--model", "m", "hi"]) == 2
    assert "--base-url is required" in capsys.readouterr().err
    assert main(["run", "--base-url", "http://127.0.0.1:9/v1", "hi"]) == 2
    assert "--model is required" in capsys.readouterr().err
    assert main(["run", "--base-url", "not a url", "--model", "m", "hi"]) == 2
    assert "base_url" in capsys.readouterr().err


# -- as a process -----------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "codex_runtime", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_entry_point_runs_tools(config: str) -> None:
    proc = _spawn("tools", "--config", config, "--json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert set(json.loads(out)["servers"]) == {"apps", "ws"}


def test_ctrl_c_interrupts_a_call_and_exits_130(config: str, server: RecordingServer) -> None:
    key = f"cli-{uuid.uuid4().hex[:8]}"
    proc = _spawn("call", "apps", "block", "--args", json.dumps({"key": key}), "--config", config, "--json")
    try:
        anyio.run(functools.partial(server.wait_for_calls, "block", 1, timeout=30))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["outcome"]["state"] == "aborted"
    assert data["outcome"]["abort_reason"] == "interrupted"
    anyio.run(functools.partial(server.wait_for_calls, "block", 1, outcome="cancelled", timeout=10))


def test_ctrl_c_interrupts_an_agent_turn_and_exits_130(config: str, provider: ProviderStub) -> None:
    provider.add(StubReply.text("never sent", hold=f"cli-{uuid.uuid4().hex[:8]}"))
    proc = _spawn("run", "--config", config, "--base-url", provider.base_url, "--model", "m", "--json", "hi")
    try:
        anyio.run(functools.partial(provider.wait_for_requests, 1, timeout=30))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["text"] is None
    assert (data["outcome"]["state"], data["outcome"]["abort_reason"]) == ("aborted", "interrupted")


def test_demo_trace_without_the_otel_sdk_is_a_clear_usage_error() -> None:
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from codex_runtime.cli import main\n"
        "sys.exit(main(['demo', '--trace']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'codex-runtime[otel]'" in proc.stderr
    assert "Traceback" not in proc.stderr

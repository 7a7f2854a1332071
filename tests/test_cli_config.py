"""The command line as a Codex user meets it: secrets by provenance, trace context from the
environment, stdio ``--show-headers``, servers whose settings cannot be resolved, Codex keys
and defaults.

The commands run in-process (``main([...])``) against real loopback servers, or as a
subprocess where the process environment itself is under test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codex_runtime._provider_stub import ProviderStub, StubReply
from codex_runtime.cli import main
from codex_runtime.config import load_config
from codex_runtime.testing import RecordingServer, StdioRecording
from codex_runtime.tracing import parse_traceparent

ROOT = Path(__file__).resolve().parents[1]
GH_TOKEN = "ghp_provenanceSecret0123456789"
TENANT = "tenant-from-env-5f2a"


def _write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


# -- secrets by provenance ----------------------------------------------------------------------


@pytest.fixture
def env_config(tmp_path: Path, server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLI_GH_TOKEN", GH_TOKEN)
    monkeypatch.setenv("CLI_TENANT", TENANT)
    return _write(
        tmp_path,
        f"""
[mcp_servers.gh]
url = "{server.url}"
env_http_headers = {{ "x-custom-auth" = "CLI_GH_TOKEN", "x-tenant-id" = "CLI_TENANT" }}
http_headers = {{ "x-client" = "cli-test" }}
""",
    )


def test_show_headers_hides_every_value_read_from_the_environment(
    env_config: str, server: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["call", "gh", "sleep", "--args", '{"seconds": 0}', "--config", env_config, "--show-headers"]
    assert main(args) == 0
    out = capsys.readouterr().out
    shown = out.split("--- sent to 'gh': POST ")[1]
    assert "x-custom-auth: [REDACTED]" in shown  # secret by name (x-*-auth)
    assert "x-tenant-id: [REDACTED]" in shown  # secret by provenance only
    assert "x-client: cli-test" in shown  # a literal value of the file stays visible
    assert GH_TOKEN not in out and TENANT not in out
    # The server got the real values.
    [call] = server.requests("tools/call")
    assert call.header("x-custom-auth") == GH_TOKEN and call.header("x-tenant-id") == TENANT


def test_show_headers_json_hides_values_read_from_the_environment(
    env_config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "call",
        "gh",
        "sleep",
        "--args",
        '{"seconds": 0}',
        "--config",
        env_config,
        "--show-headers",
        "--json",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert GH_TOKEN not in out and TENANT not in out
    [sent] = _json(out)["sent"]
    assert sent["headers"]["x-tenant-id"] == "[REDACTED]"


def test_a_config_repr_hides_values_read_from_the_environment(env_config: str) -> None:
    [gh] = load_config(env_config)
    assert gh.secret_headers == frozenset({"x-custom-auth", "x-tenant-id"})
    shown = repr(gh)
    assert GH_TOKEN not in shown and TENANT not in shown
    assert "cli-test" in shown


# -- one server whose settings cannot be resolved fails alone -----------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def half_config(tmp_path: Path, server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """``apps`` works; ``broken`` names an environment variable that is not set."""
    monkeypatch.delenv("CLI_UNSET_TOKEN", raising=False)
    return _write(
        tmp_path,
        f"""
[mcp_servers.apps]
url = "{server.url}"

[mcp_servers.broken]
url = "{server.url}"
bearer_token_env_var = "CLI_UNSET_TOKEN"
""",
    )


def test_tools_lists_a_server_with_an_unset_variable_as_failed(
    half_config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "--config", half_config]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:2] == ["apps", "echo"] for line in out.splitlines())
    failed = out.split("Servers that failed to start:")[1]
    assert "broken: " in failed and "CLI_UNSET_TOKEN" in failed and "not set" in failed
    assert main(["tools", "--config", half_config, "--json"]) == 0
    servers = _json(capsys.readouterr().out)["servers"]
    assert servers["apps"]["ok"] is True
    assert servers["broken"]["ok"] is False and servers["broken"]["required"] is False


def test_a_required_server_with_an_unset_variable_is_fatal(
    half_config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(half_config, "a", encoding="utf-8") as fh:
        fh.write("required = true\n")
    assert main(["tools", "--config", half_config, "--json"]) == 1
    captured = capsys.readouterr()
    assert _json(captured.out)["servers"]["broken"]["required"] is True
    assert "required server failed" in captured.err


def test_call_on_another_server_works_and_on_the_broken_one_exits_1(
    half_config: str, server: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", "apps", "echo", "--args", '{"text": "alone"}', "--config", half_config]) == 0
    [call] = server.requests("tools/call")
    assert call.arguments == {"text": "alone"}
    capsys.readouterr()
    assert main(["call", "broken", "echo", "--config", half_config]) == 1
    assert "CLI_UNSET_TOKEN" in capsys.readouterr().err
    assert len(server.requests("tools/call")) == 1


def test_run_goes_on_without_a_server_with_an_unset_variable(
    half_config: str, provider: ProviderStub, capsys: pytest.CaptureFixture[str]
) -> None:
    provider.add("fine")
    args = ["run", "--config", half_config, "--base-url", provider.base_url, "--model", "m", "hi"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out == "fine\n"
    assert "'broken' cannot start" in captured.err
    [request] = provider.chat_requests()
    offered = {t["function"]["name"] for t in request.body["tools"]}
    assert "apps__echo" in offered and not any(n.startswith("broken__") for n in offered)


# -- Codex compatibility -----------------------------------------------------------------------

_ENV_SERVER = """
import os

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("envy")


@server.tool()
def getenv(name: str) -> str:
    return os.environ.get(name, "<unset>")


anyio.run(server.run_stdio_async)
"""


def test_env_vars_pass_named_variables_through_to_a_stdio_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "env_server.py"
    script.write_text(_ENV_SERVER, encoding="utf-8")
    monkeypatch.setenv("CLI_PASSED", "passed-value")
    monkeypatch.setenv("CLI_NOT_PASSED", "kept-back")
    monkeypatch.setenv("CLI_OVERRIDDEN", "from-environment")
    config = _write(
        tmp_path,
        f"""
[mcp_servers.envy]
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(script))}]
env_vars = ["CLI_PASSED", {{ name = "CLI_OVERRIDDEN", source = "local" }}, "CLI_NEVER_SET"]
env = {{ CLI_OVERRIDDEN = "from-env-table" }}
""",
    )
    seen = {}
    for name in ("CLI_PASSED", "CLI_NOT_PASSED", "CLI_OVERRIDDEN", "CLI_NEVER_SET"):
        assert main(["call", "envy", "getenv", "--args", json.dumps({"name": name}), "--config", config]) == 0
        seen[name] = capsys.readouterr().out.strip()
    assert seen == {
        "CLI_PASSED": "passed-value",
        "CLI_NOT_PASSED": "<unset>",
        "CLI_OVERRIDDEN": "from-env-table",
        "CLI_NEVER_SET": "<unset>",
    }


def test_env_vars_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for entry, message in [
        ('env_vars = "X"', "must be a list"),
        ('env_vars = [{ name = "X", source = "remote" }]', "source must be 'local'"),
        ("env_vars = [1]", "env_vars[0]"),
    ]:
        config = _write(tmp_path, f'[mcp_servers.s]\ncommand = "x"\n{entry}\n')
        assert main(["tools", "--config", config]) == 2
        assert message in capsys.readouterr().err
    config = _write(tmp_path, '[mcp_servers.s]\nurl = "http://127.0.0.1:9/mcp"\nenv_vars = ["X"]\n')
    assert main(["tools", "--config", config]) == 2
    assert "only applies to stdio servers" in capsys.readouterr().err


def test_config_defaults_to_codex_home(
    tmp_path: Path,
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    _write(home, f'[mcp_servers.apps]\nurl = "{server.url}"\n')
    monkeypatch.setenv("CODEX_HOME", str(home))
    assert main(["tools", "--json"]) == 0
    assert list(_json(capsys.readouterr().out)["servers"]) == ["apps"]
    assert main(["call", "apps", "echo", "--args", '{"text": "dflt"}']) == 0
    assert [c.arguments for c in server.requests("tools/call")] == [{"text": "dflt"}]


def test_without_codex_home_the_default_is_under_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CODEX_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["tools"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / ".codex" / "config.toml") in err and "--config" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from codex_runtime import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"codex-runtime {__version__}\n"


def test_configuration_warnings_are_one_line_on_stderr(tmp_path: Path, server: RecordingServer) -> None:
    config = _write(tmp_path, f'[mcp_servers.apps]\nurl = "{server.url}"\nheaders = {{ x = "1" }}\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "codex_runtime", "tools", "--config", config],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("codex-runtime: warning: ")
    assert "unknown key 'headers' ignored (did you mean http_headers?)" in line
    assert "ConfigWarning" not in proc.stderr and ".py:" not in proc.stderr


def test_tools_exits_1_when_no_server_started(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(
        tmp_path,
        f'[mcp_servers.down]\nurl = "http://127.0.0.1:{_closed_port()}/mcp"\nstartup_timeout_sec = 0.5\n',
    )
    assert main(["tools", "--config", config]) == 1
    captured = capsys.readouterr()
    assert "no MCP server started" in captured.err
    assert "down: " in captured.out.split("Servers that failed to start:")[1]
    empty = _write(tmp_path, 'model = "x"\n', name="empty.toml")
    assert main(["tools", "--config", empty, "--json"]) == 1
    assert "no MCP server is configured" in capsys.readouterr().err


# -- TRACEPARENT / TRACESTATE ------------------------------------------------------------------

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def apps_config(tmp_path: Path, server: RecordingServer) -> str:
    return _write(tmp_path, f'[mcp_servers.apps]\nurl = "{server.url}"\napps = true\n')


def _trace_id(value: str | None) -> str | None:
    parsed = parse_traceparent(value)
    return parsed.trace_id if parsed is not None else None


def test_call_continues_the_trace_named_by_the_environment(
    apps_config: str, server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEPARENT", PARENT)
    monkeypatch.setenv("TRACESTATE", "vendor=abc")
    assert main(["call", "apps", "echo", "--args", '{"text": "t"}', "--config", apps_config]) == 0
    [call] = server.requests("tools/call")
    assert _trace_id(call.header("traceparent")) == TRACE_ID
    assert _trace_id(call.meta.get("traceparent")) == TRACE_ID
    assert call.header("tracestate") == "vendor=abc"


def test_run_continues_the_trace_named_by_the_environment(
    apps_config: str, server: RecordingServer, provider: ProviderStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEPARENT", PARENT)
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "r"})), "done")
    args = ["run", "--config", apps_config, "--base-url", provider.base_url, "--model", "m", "go"]
    assert main(args) == 0
    assert [_trace_id(r.header("traceparent")) for r in provider.chat_requests()] == [TRACE_ID, TRACE_ID]
    [call] = server.requests("tools/call")
    assert _trace_id(call.header("traceparent")) == TRACE_ID


def test_without_the_otel_sdk_the_environment_trace_still_reaches_servers_and_provider(
    apps_config: str, server: RecordingServer, provider: ProviderStub
) -> None:
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "s"})), "done")
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from codex_runtime.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "assert 'opentelemetry.sdk.trace' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "TRACEPARENT": PARENT,
    }
    for argv in (
        ["call", "apps", "echo", "--args", '{"text": "c"}', "--config", apps_config],
        ["run", "--config", apps_config, "--base-url", provider.base_url, "--model", "m", "go"],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
    # No SDK: no span of this process is recording, so the caller's span context passes through.
    assert [c.header("traceparent") for c in server.requests("tools/call")] == [PARENT, PARENT]
    assert [r.header("traceparent") for r in provider.chat_requests()] == [PARENT, PARENT]


# -- --show-headers on a stdio server ----------------------------------------------------------


def test_show_headers_on_a_stdio_server_prints_the_meta_that_left_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "stdio.jsonl"
    monkeypatch.setenv("CLI_TENANT", TENANT)
    config = _write(
        tmp_path,
        f"""
[mcp_servers.files]
command = {json.dumps(sys.executable)}
args = ["-m", "codex_runtime.testing", "stdio", "--name", "files", "--record", {json.dumps(str(record))}]
env = {{ PYTHONPATH = {json.dumps(str(ROOT))} }}
http_headers = {{ "x-client" = "cli-test" }}
env_http_headers = {{ "x-tenant-id" = "CLI_TENANT" }}
""",
    )
    args = ["call", "files", "echo", "--args", '{"text": "s"}', "--config", config, "--show-headers"]
    assert main([*args, "-H", "x-api-token: call-secret", "-H", "x-request-id: r-9"]) == 0
    out = capsys.readouterr().out
    shown = out.split("--- sent to 'files' over stdio (tools/call)")[1]
    meta = json.loads(shown.split("_meta:")[1])
    assert meta["extra_headers"] == {
        "x-client": "cli-test",
        "x-tenant-id": "[REDACTED]",
        "x-api-token": "[REDACTED]",
        "x-request-id": "r-9",
    }
    assert TENANT not in shown and "call-secret" not in shown
    # What the server got: the same _meta, with the real values.
    [call] = StdioRecording(record).requests("tools/call")
    assert call.meta["extra_headers"]["x-tenant-id"] == TENANT
    assert call.meta["extra_headers"]["x-api-token"] == "call-secret"
    assert set(call.meta) == set(meta)

    assert main([*args, "--json"]) == 0
    [sent] = _json(capsys.readouterr().out)["sent"]
    assert sent["transport"] == "stdio" and sent["meta"]["extra_headers"]["x-tenant-id"] == "[REDACTED]"


# -- run prints whole tool results ---------------------------------------------------------------


def test_run_prints_whole_tool_results_up_to_a_cap_that_a_flag_lifts(
    apps_config: str, provider: ProviderStub, capsys: pytest.CaptureFixture[str]
) -> None:
    message = "first line\nsecond line\n" + "x" * 3000 + "END"
    args = ["run", "--config", apps_config, "--base-url", provider.base_url, "--model", "m", "go"]
    provider.add(StubReply.tool_calls(("apps__fail", {"message": message})), "done")
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "<- apps__fail [error] first line"
    assert out[2] == "   second line"
    assert out[3].startswith("   xxx") and "END" not in "".join(out[1:])  # out[0]: the arguments
    assert out[4] == "   ... (1026 more characters; --full-output shows all)"
    assert out[-1] == "done"

    provider.add(StubReply.tool_calls(("apps__fail", {"message": message})), "done")
    assert main([*args, "--full-output"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3] == "   " + "x" * 3000 + "END"


# -- the demo ----------------------------------------------------------------------------------


def test_the_demo_runs_four_turns_and_lists_static_headers_in_the_titles_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("  turn ")] == [
        ["turn", str(n)] for n in (1, 2, 3, 4)
    ]
    assert "static (x-client, x-api-key)" in out
    rows = [line for line in out.splitlines() if line.startswith("  tools  tools/call")]
    assert rows and all("codex-runtime-demo, [REDACTED]" in row for row in rows)
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "four turns" in capsys.readouterr().out


def test_resources_and_prompts_share_the_default_config_and_the_unresolved_servers(
    half_config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Path(half_config).parent
    monkeypatch.setenv("CODEX_HOME", str(home))  # half_config is $CODEX_HOME/config.toml
    for command in ("resources", "prompts"):
        assert main([command, "--json"]) == 0
        servers = _json(capsys.readouterr().out)["servers"]
        assert servers["apps"]["ok"] is True
        assert servers["broken"]["ok"] is False and "CLI_UNSET_TOKEN" in servers["broken"]["error"]
    assert main(["read", "broken", "file:///x", "--json"]) == 1
    assert "CLI_UNSET_TOKEN" in capsys.readouterr().err

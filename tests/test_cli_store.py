"""The command line with a store: ``run --store/--session/--durable``, ``sessions``, ``resume``.

Against a real recording MCP server and the stand-in provider; assertions on what they
received and on the store. The test that kills ``run --durable`` mid-turn and finishes it
with ``resume`` is a crash test (marker ``durable_crash``, its own CI step).
"""

from __future__ import annotations

import functools
import json
import os
import signal
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


def _json(text: str) -> Any:
    return json.loads(text)


@pytest.fixture
def config(tmp_path: Path, server: RecordingServer) -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[mcp_servers.apps]\nurl = "{server.url}"\napps = true\n', encoding="utf-8")
    return str(path)


def _run(config: str, provider: ProviderStub, *extra: str) -> list[str]:
    return ["run", "--config", config, "--base-url", provider.base_url, "--model", "stub", *extra]


def test_run_records_and_continues_a_session(
    tmp_path: Path,
    config: str,
    server: RecordingServer,
    provider: ProviderStub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = str(tmp_path / "s.db")
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "one"})), "first answer")
    assert main(_run(config, provider, "--store", store, "--json", "hello")) == 0
    session_id = _json(capsys.readouterr().out)["session_id"]
    provider.add("second answer")
    assert main(_run(config, provider, "--store", store, "--session", session_id, "and again")) == 0
    captured = capsys.readouterr()
    assert captured.out == "second answer\n" and session_id in captured.err
    last = provider.chat_requests()[-1].messages
    assert [m["role"] for m in last] == ["user", "assistant", "tool", "assistant", "user"]
    assert last[0]["content"] == "hello" and last[-1]["content"] == "and again"
    assert len(server.tool_calls("echo")) == 1

    assert main(["sessions", "--store", store, "--json"]) == 0
    [listed] = _json(capsys.readouterr().out)
    assert listed["session_id"] == session_id
    assert [(t["index"], t["state"]) for t in listed["turns"]] == [(1, "completed"), (2, "completed")]
    assert listed["created_at"] > 0 and all(len(t["id"]) == 32 for t in listed["turns"])
    assert main(["sessions", "--store", store]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{session_id}  (2 turns)") and "#2" in text


def test_store_usage_errors_exit_2(
    tmp_path: Path, config: str, provider: ProviderStub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_run(config, provider, "--session", "x", "hi")) == 2
    assert "need --store" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not a database" * 10)
    provider.add("unused")
    assert main(_run(config, provider, "--store", str(corrupt), "hi")) == 2
    assert "not a codex-runtime session store" in capsys.readouterr().err
    assert main(["sessions", "--store", str(corrupt)]) == 2
    assert main(["sessions", "--store", str(tmp_path / "missing.db"), "--json"]) == 2
    assert _json(capsys.readouterr().out)["ok"] is False
    assert corrupt.read_bytes() == b"not a database" * 10


def test_run_durable_keeps_no_secret(
    tmp_path: Path,
    config: str,
    server: RecordingServer,
    provider: ProviderStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("dbos")
    secret = f"sk-durable-{uuid.uuid4().hex}"
    monkeypatch.setenv("DURABLE_TEST_KEY", secret)
    store = str(tmp_path / "s.db")
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "d"})), "durable answer")
    args = _run(config, provider, "--store", store, "--durable", "--api-key-env", "DURABLE_TEST_KEY")
    assert main([*args, "--session", "s1", "--json", "go"]) == 0
    data = _json(capsys.readouterr().out)
    assert (data["state"], data["text"], data["session_id"], data["index"]) == (
        "completed",
        "durable answer",
        "s1",
        1,
    )
    assert provider.chat_requests()[0].header("authorization") == f"Bearer {secret}"
    [call] = server.tool_calls("echo")
    assert json.loads(call.headers["x-codex-turn-metadata"])["turn_id"] == data["turn_id"]
    assert main(["resume", "--store", store]) == 0
    assert capsys.readouterr().out == "no unfinished durable turns\n"
    assert main(["sessions", "--store", store, "--json"]) == 0
    [listed] = _json(capsys.readouterr().out)
    assert listed["turns"][0]["durable"] is True
    files = [p for p in tmp_path.iterdir() if p.name.startswith("s.db")]
    assert any(p.name.startswith("s.db.dbos") for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path.name


@pytest.mark.durable_crash
@pytest.mark.skipif(
    not (os.environ.get("CODEX_RUNTIME_CRASH_TESTS") or os.environ.get("CODEX_RUNTIME_TEST_POSTGRES")),
    reason="set CODEX_RUNTIME_CRASH_TESTS=1 to run",
)
def test_resume_finishes_a_durable_run_killed_during_a_model_call(
    tmp_path: Path, config: str, server: RecordingServer, provider: ProviderStub
) -> None:
    pytest.importorskip("dbos")
    store = str(tmp_path / "s.db")
    key = f"held-{uuid.uuid4().hex[:8]}"
    provider.add(
        StubReply.tool_calls(("apps__echo", {"text": "before the crash"})),
        StubReply.text("never arrives", hold=key),
        "finished after resume",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "codex_runtime", *_run(config, provider, "--store", store, "--durable")]
    proc = subprocess.Popen([*command, "--session", "s1", "go"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        anyio.run(functools.partial(provider.wait_for_requests, 2, timeout=120))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        provider.release(key)
    done = subprocess.run(
        [sys.executable, "-m", "codex_runtime", "resume", "--store", store, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [turn] = json.loads(done.stdout)["turns"]
    assert (turn["state"], turn["text"], turn["index"]) == ("completed", "finished after resume", 1)
    assert len(server.tool_calls("echo")) == 1  # finished before the crash: not run again
    last = provider.chat_requests()[-1].messages
    assert [m["role"] for m in last] == ["user", "assistant", "tool"]
    assert "before the crash" in last[-1]["content"]

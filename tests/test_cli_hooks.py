"""``codex-runtime call`` and ``run`` honour the Codex hooks of the configuration they load
(and the project's ``.codex`` hooks only with ``--trust-hooks``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_runtime._provider_stub import ProviderStub
from codex_runtime.cli import main
from codex_runtime.testing import RecordingServer

BLOCK_ECHO = """
[[hooks.PreToolUse]]
matcher = "mcp__apps__echo"
[[hooks.PreToolUse.hooks]]
type = "command"
command = "cat > /dev/null; echo 'echo is blocked by policy' >&2; exit 2"
"""


@pytest.fixture(autouse=True)
def _plain_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hooks run in `$SHELL -lc`, as in Codex; a small shell keeps the tests quick.
    monkeypatch.setenv("SHELL", "/bin/sh")


def _config(tmp_path: Path, server: RecordingServer, hooks: str = "") -> str:
    path = tmp_path / "config.toml"
    path.write_text(f'[mcp_servers.apps]\nurl = "{server.url}"\napps = true\n{hooks}', encoding="utf-8")
    return str(path)


def test_call_blocked_by_a_hook_exits_1_with_the_reason(
    tmp_path: Path, server: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, server, BLOCK_ECHO)
    assert main(["call", "apps", "echo", "--args", '{"text": "x"}', "--config", config, "--json"]) == 1
    captured = capsys.readouterr()
    assert "echo is blocked by policy" in captured.err
    data = json.loads(captured.out)
    assert data["ok"] is False and data["error"]["type"] == "ToolCallDenied"
    assert server.requests("tools/call") == []
    assert main(["call", "apps", "headers", "--config", config]) == 0  # other tools are not matched
    assert [r.tool_name for r in server.requests("tools/call")] == ["headers"]


def test_run_with_a_blocked_prompt_exits_1_and_never_calls_the_model(
    tmp_path: Path, server: RecordingServer, provider: ProviderStub, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = """
[[hooks.UserPromptSubmit]]
[[hooks.UserPromptSubmit.hooks]]
type = "command"
command = "echo '{\\"decision\\": \\"block\\", \\"reason\\": \\"no prompts today\\"}'"
"""
    config = _config(tmp_path, server, hooks)
    args = ["run", "--config", config, "--base-url", provider.base_url, "--model", "stub", "hello"]
    assert main(args) == 1
    assert "a hook blocked the prompt: no prompts today" in capsys.readouterr().err
    assert provider.chat_requests() == []


def test_project_hooks_run_only_with_trust_hooks(
    tmp_path: Path,
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, server)
    project = tmp_path / "repo"
    (project / ".codex").mkdir(parents=True)
    (project / ".codex" / "config.toml").write_text(BLOCK_ECHO, encoding="utf-8")
    monkeypatch.chdir(project)
    assert main(["call", "apps", "echo", "--args", '{"text": "untrusted"}', "--config", config]) == 0
    assert "codex-runtime: warning: " in capsys.readouterr().err  # one line: not run until trusted
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "untrusted"}]
    code = main(
        ["call", "apps", "echo", "--args", '{"text": "trusted"}', "--config", config, "--trust-hooks"]
    )
    assert code == 1
    assert "echo is blocked by policy" in capsys.readouterr().err
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "untrusted"}]

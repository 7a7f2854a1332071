"""`CodexHooks`: Codex-style hook scripts (shell scripts reading the event's JSON on stdin)
run around real tool calls and agent turns, on both backends.

The scripts are written the way Codex's documentation writes them: read stdin, decide,
exit 2 with a reason on stderr or print JSON on stdout. They use the test's Python to read
JSON, so that nothing beyond a POSIX shell is needed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from codex_runtime import (
    CodexHooks,
    HookCommandError,
    ServerConfig,
    Session,
    ToolCallDenied,
    ToolCallStatus,
    TurnState,
)
from codex_runtime.agent import AgentLoop, ModelRequest, ModelResponse, ScriptedModel, ToolCall
from codex_runtime.testing import RecordingServer

pytestmark = pytest.mark.anyio

SHELL = ["/bin/sh", "-c"]  # Codex uses `$SHELL -lc`; a login shell here only costs time

# A shell function the scripts use to read one field of their input, as `jq -r` would.
FIELD = f"""field() {{ printf '%s' "$input" | "{sys.executable}" -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."): v = v[k]
print(v if isinstance(v, str) else json.dumps(v))' "$1"; }}
"""


def script(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\ninput=$(cat)\n" + FIELD + body)
    path.chmod(0o755)
    return str(path)


def hooks_file(folder: Path, events: dict[str, list[tuple[str | None, str, float | None]]]) -> Path:
    document: dict[str, Any] = {"hooks": {}}
    for event, entries in events.items():
        groups = []
        for matcher, command, timeout in entries:
            handler: dict[str, Any] = {"type": "command", "command": command}
            if timeout is not None:
                handler["timeout"] = timeout
            group: dict[str, Any] = {"hooks": [handler]}
            if matcher is not None:
                group["matcher"] = matcher
            groups.append(group)
        document["hooks"][event] = groups
    path = folder / "hooks.json"
    path.write_text(json.dumps(document))
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_pre_tool_use_blocks_with_exit_2_and_post_tool_use_sees_every_end(
    server: RecordingServer, tmp_path: Path
) -> None:
    block = script(tmp_path, "no-headers.sh", 'echo "the headers tool is off limits" >&2\nexit 2\n')
    log_pre = script(tmp_path, "log-pre.sh", 'printf "%s\\n" "$input" >> pre.jsonl\n')
    log_post = script(tmp_path, "log-post.sh", 'printf "%s\\n" "$input" >> post.jsonl\n')
    path = hooks_file(
        tmp_path,
        {
            "PreToolUse": [("mcp__rec__headers", block, None), ("^mcp__rec__", log_pre, 5)],
            "PostToolUse": [("mcp__.*", log_post, None)],
        },
    )
    hooks = CodexHooks.from_file(path, cwd=tmp_path, shell=SHELL)
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hooks]) as session:
        async with session.turn(metadata={"model": "gpt-test"}) as turn:
            await turn.call_tool("rec", "echo", {"text": "hi"})
            await turn.call_tool("rec", "fail", {"message": "disk full"})
            with pytest.raises(ToolCallDenied) as info:
                await turn.call_tool("rec", "headers")
    assert info.value.reason == "the headers tool is off limits"
    assert [r.tool_name for r in server.requests("tools/call")] == ["echo", "fail"]  # never "headers"
    echo_record = turn.tool_calls[0]
    assert lines(tmp_path / "pre.jsonl")[0] == {
        "session_id": session.session_id,
        "turn_id": turn.id,
        "transcript_path": None,
        "cwd": str(tmp_path),
        "hook_event_name": "PreToolUse",
        "model": "gpt-test",
        "permission_mode": "default",
        "tool_name": "mcp__rec__echo",
        "tool_input": {"text": "hi"},
        "tool_use_id": echo_record.call_id,
    }
    post = {p["tool_name"]: p for p in lines(tmp_path / "post.jsonl")}
    assert set(post) == {"mcp__rec__echo", "mcp__rec__fail", "mcp__rec__headers"}
    assert post["mcp__rec__echo"]["hook_event_name"] == "PostToolUse"
    assert post["mcp__rec__echo"]["tool_response"]["isError"] is False
    assert post["mcp__rec__fail"]["tool_response"]["isError"] is True  # a tool error is never silent
    assert "disk full" in json.dumps(post["mcp__rec__fail"]["tool_response"])
    denied = post["mcp__rec__headers"]["tool_response"]
    assert (denied["isError"], denied["status"], denied["error"]) == (
        True, "denied", "the headers tool is off limits",
    )  # fmt: skip
    assert turn.outcome is not None and turn.outcome.hook_errors == ()


async def test_json_deny_rewrite_and_context_reach_the_model(server: RecordingServer, tmp_path: Path) -> None:
    policy = script(
        tmp_path,
        "policy.sh",
        """text=$(field tool_input.text)
if [ "$text" = "drop table" ]; then
  cat <<'EOF'
{"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
 "permissionDecisionReason": "destructive SQL is not allowed"}}
EOF
  exit 0
fi
"$PY" -c 'import json, sys
print(json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse",
  "permissionDecision": "allow", "updatedInput": {"text": "[checked] " + sys.argv[1]},
  "additionalContext": "echo inputs are checked by policy.sh"}}))' "$text"
""".replace('"$PY"', f'"{sys.executable}"'),
    )
    hooks = CodexHooks.from_file(
        hooks_file(tmp_path, {"PreToolUse": [("mcp__rec__echo", policy, None)]}), cwd=tmp_path, shell=SHELL
    )
    requests: list[ModelRequest] = []

    def final(request: ModelRequest) -> ModelResponse:
        requests.append(request)
        return ModelResponse(text="done")

    model = ScriptedModel(
        [
            ToolCall(name="rec__echo", arguments={"text": "hello"}),
            ToolCall(name="rec__echo", arguments={"text": "drop table"}),
            final,
        ]
    )
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hooks]) as session:
        result = await AgentLoop(session, model).run_turn("go")
    assert result.text == "done"
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "[checked] hello"}]
    messages = [(m.role, m.content) for m in requests[0].messages]
    assert ("tool", "tool call denied: destructive SQL is not allowed") in messages
    assert ("system", "echo inputs are checked by policy.sh") in messages
    assert [r.status for r in result.turn.tool_calls] == [ToolCallStatus.OK, ToolCallStatus.DENIED]


async def test_session_start_prompt_and_stop_hooks(server: RecordingServer, tmp_path: Path) -> None:
    start = script(tmp_path, "start.sh", 'echo "Use the rec server for everything."\n')
    prompt = script(
        tmp_path,
        "prompt.sh",
        """case "$(field prompt)" in
  *password*) echo '{"decision": "block", "reason": "the prompt contains a password"}' ;;
  *) echo '{"hookSpecificOutput": {"hookEventName": "UserPromptSubmit",
             "additionalContext": "ticket ABC-1"}}' ;;
esac
""",
    )
    stop = script(
        tmp_path,
        "stop.sh",
        """if [ "$(field stop_hook_active)" = "false" ]; then
  echo '{"decision": "block", "reason": "run the tests before you stop"}'
fi
printf "%s\\n" "$input" >> stop.jsonl
""",
    )
    path = hooks_file(
        tmp_path,
        {
            "SessionStart": [("startup", start, None)],
            "UserPromptSubmit": [(None, prompt, None)],
            "Stop": [(None, stop, None)],
        },
    )
    requests: list[ModelRequest] = []

    def answer(text: str) -> Any:
        def respond(request: ModelRequest) -> ModelResponse:
            requests.append(request)
            return ModelResponse(text=text)

        return respond

    model = ScriptedModel([answer("fixed"), answer("fixed, tests pass")])
    hooks = CodexHooks.from_file(path, cwd=tmp_path, shell=SHELL)
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hooks]) as session:
        loop = AgentLoop(session, model)
        result = await loop.run_turn("fix the bug")
        blocked = await loop.run_turn("my password is hunter2")
    assert result.text == "fixed, tests pass" and result.steps == 2
    first = [(m.role, m.content) for m in requests[0].messages]
    assert first == [
        ("user", "fix the bug"),
        ("system", "Use the rec server for everything."),
        ("system", "ticket ABC-1"),
    ]
    assert [(m.role, m.content) for m in requests[1].messages][-2:] == [
        ("assistant", "fixed"), ("user", "run the tests before you stop"),
    ]  # fmt: skip
    stops = lines(tmp_path / "stop.jsonl")
    assert [(s["stop_hook_active"], s["last_assistant_message"]) for s in stops] == [
        (False, "fixed"), (True, "fixed, tests pass"),
    ]  # fmt: skip
    assert blocked.blocked == "the prompt contains a password" and blocked.steps == 0
    assert model.remaining == 0


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_a_hanging_hook_is_killed_with_its_children_and_a_crashing_one_is_listed(
    server: RecordingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hang = script(tmp_path, "hang.sh", "sleep 300 &\necho $! > child.pid\nsleep 300\n")
    crash = script(tmp_path, "crash.sh", 'echo "leaking $(field tool_input.token)" >&2\nexit 1\n')
    path = hooks_file(tmp_path, {"PreToolUse": [(None, hang, 1), (None, crash, None)]})
    hooks = CodexHooks.from_file(path, cwd=tmp_path, shell=SHELL)
    caplog.set_level(logging.DEBUG, logger="codex_runtime")
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hooks]) as session:
        async with session.turn() as turn:
            result = await turn.call_tool("rec", "echo", {"text": "x", "token": "sk-live-0123456789"})
    assert not result.is_error  # failed hooks do not block, as in Codex
    assert len(server.tool_calls("echo")) == 1
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(500):  # the kill was sent; give the kernel time to finish the child
        if _gone(child):
            break
        await anyio.sleep(0.01)
    assert _gone(child)
    assert turn.outcome is not None and turn.outcome.state is TurnState.COMPLETED
    errors = [f.error for f in turn.outcome.hook_errors]
    assert all(isinstance(e, HookCommandError) for e in errors)
    assert sorted(str(e).split(": ", 1)[1] for e in errors) == [
        "hook exited with code 1",
        "hook timed out after 1s",
    ]
    assert {f.phase for f in turn.outcome.hook_errors} == {"tool_call_start"}
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("codex_runtime"))
    assert "hook timed out after 1s" in ours
    assert "sk-live" not in ours and "sk-live" not in repr(turn.outcome)


async def test_default_shell_is_codex_s(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHELL", "/bin/sh")
    assert CodexHooks().shell == ("/bin/sh", "-lc")
    monkeypatch.delenv("SHELL")
    assert CodexHooks().shell == ("/bin/sh", "-lc")
    hooks = CodexHooks.from_file(
        hooks_file(tmp_path, {"Stop": [(None, 'echo \'{"decision": "block", "reason": "again"}\'', None)]}),
        cwd=tmp_path,
    )
    async with Session(hooks=[hooks]) as session:
        async with session.turn() as turn:
            decision = await hooks.on_stop(turn, "text")
    assert decision is not None and decision.reason == "again"
    assert os.environ.get("SHELL") is None


async def test_a_failed_turn_still_ends_and_post_tool_use_sees_a_cancelled_call(
    server: RecordingServer, tmp_path: Path
) -> None:
    log_post = script(tmp_path, "log-post.sh", 'printf "%s\\n" "$input" >> post.jsonl\n')
    log_stop = script(tmp_path, "log-stop.sh", 'printf "%s\\n" "$input" >> stop.jsonl\n')
    path = hooks_file(tmp_path, {"PostToolUse": [(None, log_post, None)], "Stop": [(None, log_stop, None)]})
    hooks = CodexHooks.from_file(path, cwd=tmp_path, shell=SHELL)
    ended: list[TurnState] = []
    key = f"k-{os.getpid()}-{id(tmp_path)}"

    def broken_model(request: ModelRequest) -> ModelResponse:
        raise RuntimeError("provider down")

    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hooks]) as session:

        @session.on_turn_end
        async def record(turn: Any, outcome: Any) -> None:
            ended.append(outcome.state)

        loop = AgentLoop(
            session, ScriptedModel([ToolCall(name="rec__echo", arguments={"text": "a"}), broken_model])
        )
        with pytest.raises(Exception, match="provider down"):
            await loop.run_turn("first")
        # A second turn, interrupted while its tool call runs.
        model = ScriptedModel([ToolCall(name="rec__block", arguments={"key": key})])
        loop = AgentLoop(session, model)
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop.run_turn, "second")
            await server.wait_for_calls("block", 1)
            loop.interrupt()
    assert ended == [TurnState.FAILED, TurnState.ABORTED]  # on_turn_end ran on both ends
    assert not (tmp_path / "stop.jsonl").exists()  # no final answer: Stop never ran (as in Codex)
    post = lines(tmp_path / "post.jsonl")
    assert [p["tool_name"] for p in post] == ["mcp__rec__echo", "mcp__rec__block"]
    cancelled = post[1]["tool_response"]
    assert (cancelled["isError"], cancelled["status"], cancelled["error"]) == (True, "cancelled", "aborted")

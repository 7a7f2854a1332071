"""Tool-call hooks (`on_tool_call_start` / `on_tool_call_end`) and the agent-loop hooks
(`on_user_prompt`, `on_stop`), against real recording servers on both backends.

Assertions are on what the servers recorded: a denied call never reaches them, a
rewritten one arrives rewritten, with the turn's headers.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from codex_runtime import (
    InvalidHeaderError,
    PromptDecision,
    ServerConfig,
    Session,
    StopDecision,
    ToolCallDenied,
    ToolCallRecord,
    ToolCallRequest,
    ToolCallStatus,
    ToolDecision,
    ToolTimeoutError,
    Turn,
    TurnHeaders,
    TurnOutcome,
    TurnState,
    current_turn_id,
)
from codex_runtime.agent import AgentLoop, Message, ModelRequest, ModelResponse, ScriptedModel, ToolCall
from codex_runtime.testing import RecordingServer, StdioRecording, stdio_server_config

pytestmark = pytest.mark.anyio


class Seen:
    """A hook that records every start and end it sees and applies a decision."""

    def __init__(self, decide: Any = None) -> None:
        self.decide = decide
        self.starts: list[ToolCallRequest] = []
        self.ends: list[tuple[ToolCallRequest, ToolCallRecord]] = []
        self.turn_ids: list[str | None] = []

    async def on_tool_call_start(self, turn: Turn, call: ToolCallRequest) -> ToolDecision | None:
        self.starts.append(call)
        self.turn_ids.append(current_turn_id())
        return self.decide(call) if self.decide is not None else None

    async def on_tool_call_end(self, turn: Turn, call: ToolCallRequest, record: ToolCallRecord) -> None:
        await anyio.lowlevel.checkpoint()  # end hooks run shielded, even for a cancelled call
        self.ends.append((call, record))


async def test_a_denied_call_never_reaches_the_server(server: RecordingServer) -> None:
    hook = Seen(lambda call: ToolDecision.deny("no echo today") if call.tool == "echo" else None)
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hook]) as session:
        async with session.turn() as turn:
            with pytest.raises(ToolCallDenied) as info:
                await turn.call_tool("rec", "echo", {"text": "hi"})
            assert info.value.reason == "no echo today" and info.value.hook == "Seen"
            await turn.call_tool("rec", "headers")  # allowed
    assert server.tool_calls("echo") == []
    assert [r.tool_name for r in server.requests("tools/call")] == ["headers"]
    (call, record), _ = hook.ends
    assert (call.tool, record.status, record.error, record.ok) == (
        "echo", ToolCallStatus.DENIED, "no echo today", False,
    )  # fmt: skip
    assert [r.status for r in turn.tool_calls] == [ToolCallStatus.DENIED, ToolCallStatus.OK]
    assert hook.turn_ids == [turn.id, turn.id]  # hooks run inside the turn
    assert turn.outcome is not None and turn.outcome.state is TurnState.COMPLETED


async def test_a_rewritten_call_arrives_rewritten_with_the_turn_headers(server: RecordingServer) -> None:
    def rewrite(call: ToolCallRequest) -> ToolDecision:
        return ToolDecision.update(
            arguments={**call.arguments, "text": call.arguments["text"].upper()},
            headers={"x-approved-by": "policy"},
            meta={"audit": "1"},
        )

    first, second = Seen(rewrite), Seen()
    configs = [ServerConfig(name="apps", url=server.url, apps=True)]
    async with Session(configs, hooks=[TurnHeaders(), first, second]) as session:
        async with session.turn(metadata={"model": "m"}) as turn:
            await turn.call_tool("apps", "echo", {"text": "quiet"}, headers={"x-orig": "1"})
    (sent,) = server.requests("tools/call")
    assert sent.arguments == {"text": "QUIET"}
    assert sent.header("x-approved-by") == "policy"
    assert sent.header("x-orig") is None  # the hook's headers replaced the call's
    assert sent.header("session_id") == session.session_id  # the turn's headers are still there
    assert f'"turn_id":"{turn.id}"' in (sent.header("x-codex-turn-metadata") or "")
    assert sent.meta["audit"] == "1"
    # Updates compose: the next hook saw the rewritten request; end hooks see what was sent.
    assert second.starts[0].arguments == {"text": "QUIET"}
    assert first.ends[0][0].arguments == {"text": "QUIET"}
    assert turn.tool_calls[0].arguments == {"text": "QUIET"}


async def test_a_rewrite_is_checked_like_any_call(server: RecordingServer) -> None:
    bad = Seen(lambda call: ToolDecision.update(headers={"content-type": "text/evil"}))
    reserved = Seen(lambda call: ToolDecision.update(meta={"x-codex-turn-metadata": {"forged": True}}))
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[bad]) as session:
        async with session.turn() as turn:
            with pytest.raises(InvalidHeaderError):
                await turn.call_tool("rec", "echo", {"text": "x"})
    assert server.requests("tools/call") == []
    assert turn.tool_calls[0].status is ToolCallStatus.ERROR
    assert bad.ends[0][1].status is ToolCallStatus.ERROR
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[reserved]) as session:
        async with session.turn() as turn:
            await turn.call_tool("rec", "echo", {"text": "x"})
    (sent,) = server.requests("tools/call")
    assert "x-codex-turn-metadata" not in sent.meta  # reserved keys stay reserved
    not_json = Seen(lambda call: ToolDecision.update(arguments={"when": object()}))
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[not_json]) as session:
        async with session.turn() as turn:
            with pytest.raises(ToolCallDenied, match="Seen failed"):
                await turn.call_tool("rec", "echo", {"text": "y"})
    assert len(server.requests("tools/call")) == 1  # still only the earlier call
    assert turn.outcome is not None and turn.outcome.hook_errors[0].phase == "tool_call_start"
    with pytest.raises(ValueError, match="non-empty reason"):
        ToolDecision.deny(" ")
    with pytest.raises(TypeError):
        ToolDecision.update(arguments=["not", "an", "object"])  # type: ignore[arg-type]


async def test_end_hooks_see_every_way_a_call_ends(server: RecordingServer, tmp_path: Path) -> None:
    hook = Seen(lambda call: ToolDecision.deny("denied") if call.arguments.get("deny") else None)
    configs = [
        ServerConfig(name="rec", url=server.url),
        stdio_server_config("local", tmp_path / "local.jsonl"),
    ]
    key = f"cancel-{uuid.uuid4().hex[:8]}"
    async with Session(configs, hooks=[hook]) as session:

        async def body(turn: Turn) -> None:
            await turn.call_tool("rec", "echo", {"text": "ok"})
            await turn.call_tool("rec", "fail", {"message": "broken"})
            with pytest.raises(ToolCallDenied):
                await turn.call_tool("rec", "echo", {"deny": True})
            with pytest.raises(ToolTimeoutError):
                await turn.call_tool("rec", "sleep", {"seconds": 5}, timeout=0.3)
            with pytest.raises(Exception, match="local"):
                await turn.call_tool("local", "crash")
            await turn.call_tool("rec", "block", {"key": key})

        handle = await session.start_turn(body)
        await server.wait_for_calls("block", 1)
        handle.interrupt()
        outcome = await handle.wait()
    assert outcome.state is TurnState.ABORTED and outcome.hook_errors == ()
    statuses = [(call.tool, record.status) for call, record in hook.ends]
    assert statuses == [
        ("echo", ToolCallStatus.OK),
        ("fail", ToolCallStatus.ERROR),
        ("echo", ToolCallStatus.DENIED),
        ("sleep", ToolCallStatus.TIMEOUT),
        ("crash", ToolCallStatus.UNAVAILABLE),
        ("block", ToolCallStatus.CANCELLED),
    ]
    errors = {call.tool: record.error for call, record in hook.ends}
    assert "broken" in (errors["fail"] or "") and errors["block"] == "aborted"
    assert len(StdioRecording(tmp_path / "local.jsonl").tool_calls("crash")) == 1
    # Every call is recorded with the id its hooks saw.
    assert [r.call_id for r in handle.turn.tool_calls] == [c.call_id for c in hook.starts]


async def test_decorators_order_and_failing_hooks(server: RecordingServer) -> None:
    log: list[str] = []
    async with Session([ServerConfig(name="rec", url=server.url)]) as session:

        @session.on_tool_call_start
        async def first(turn: Turn, call: ToolCallRequest) -> ToolDecision | None:
            log.append("start 1")
            return None

        @session.on_tool_call_start
        async def broken(turn: Turn, call: ToolCallRequest) -> ToolDecision | None:
            log.append("start 2")
            if call.arguments.get("boom"):
                raise RuntimeError("approval service down")
            return None

        @session.on_tool_call_end
        async def end_one(turn: Turn, call: ToolCallRequest, record: ToolCallRecord) -> None:
            log.append(f"end 1 {record.status.value}")
            raise ValueError("end hook bug")

        @session.on_tool_call_end
        async def end_two(turn: Turn, call: ToolCallRequest, record: ToolCallRecord) -> None:
            log.append(f"end 2 {record.status.value}")

        async with session.turn() as turn:
            await turn.call_tool("rec", "echo", {"text": "a"})
            with pytest.raises(ToolCallDenied, match="broken failed"):
                await turn.call_tool("rec", "echo", {"boom": True})
    assert log == [
        "start 1", "start 2", "end 2 ok", "end 1 ok",
        "start 1", "start 2", "end 2 denied", "end 1 denied",
    ]  # fmt: skip
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "a"}]  # a failing hook denies
    assert turn.outcome is not None
    phases = [(f.hook.rsplit(".", 1)[-1], f.phase) for f in turn.outcome.hook_errors]
    assert phases == [
        ("end_one", "tool_call_end"),
        ("broken", "tool_call_start"),
        ("end_one", "tool_call_end"),
    ]


# -- the agent loop --------------------------------------------------------------------------


def _tool_messages(request: ModelRequest) -> list[Message]:
    return [m for m in request.messages if m.role == "tool"]


async def test_the_agent_loop_recovers_from_a_denial(server: RecordingServer) -> None:
    hook = Seen(
        lambda call: ToolDecision.deny("writes need approval") if call.arguments.get("text") == "rm" else None
    )
    seen: list[list[Message]] = []

    def after_denial(request: ModelRequest) -> ModelResponse:
        seen.append(_tool_messages(request))
        return ModelResponse(tool_calls=(ToolCall(name="rec__echo", arguments={"text": "ls"}),))

    def done(request: ModelRequest) -> ModelResponse:
        seen.append(_tool_messages(request))
        return ModelResponse(text="done")

    model = ScriptedModel([ToolCall(name="rec__echo", arguments={"text": "rm"}, id="c1"), after_denial, done])
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hook]) as session:
        result = await AgentLoop(session, model).run_turn("clean up")
    assert result.text == "done" and result.outcome.state is TurnState.COMPLETED
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "ls"}]
    denied = seen[0][0]
    assert denied.is_error and denied.tool_call_id == "c1"
    assert denied.content == "tool call denied: writes need approval"
    assert hook.starts[0].call_id == "c1"  # the model's tool call id
    assert [r.is_error for r in result.tool_calls] == [True, False]


class PromptAndStop:
    def __init__(self, *, block: str | None = None, context: str | None = None, go_on: int = 0) -> None:
        self.block, self.context, self.go_on = block, context, go_on
        self.stops: list[str | None] = []

    async def on_user_prompt(self, turn: Turn, prompt: str) -> PromptDecision | None:
        if self.block is not None:
            return PromptDecision.block(self.block)
        return PromptDecision.add_context(self.context) if self.context else None

    async def on_stop(self, turn: Turn, text: str | None) -> StopDecision | None:
        self.stops.append(text)
        if len(self.stops) <= self.go_on:
            return StopDecision.go_on(f"not yet ({len(self.stops)})")
        return None


async def test_a_blocked_prompt_never_reaches_the_model(server: RecordingServer) -> None:
    model = ScriptedModel(["never"])
    ended: list[TurnOutcome] = []
    async with Session(
        [ServerConfig(name="rec", url=server.url)], hooks=[PromptAndStop(block="secret inside")]
    ) as s:

        @s.on_turn_end
        async def record(turn: Turn, outcome: TurnOutcome) -> None:
            ended.append(outcome)

        loop = AgentLoop(s, model)
        result = await loop.run_turn("here is my key sk-1234")
    assert result.blocked == "secret inside" and result.text is None and result.steps == 0
    assert model.remaining == 1 and loop.messages == []
    assert [o.state for o in ended] == [TurnState.COMPLETED]  # on_turn_end runs on every end


async def test_prompt_context_and_stop_go_on_bounded_by_max_steps(server: RecordingServer) -> None:
    requests: list[ModelRequest] = []

    def answer(text: str) -> Any:
        def respond(request: ModelRequest) -> ModelResponse:
            requests.append(request)
            return ModelResponse(text=text)

        return respond

    hook = PromptAndStop(context="the repo uses tabs", go_on=5)
    model = ScriptedModel([answer("first"), answer("second"), answer("third")])
    async with Session([ServerConfig(name="rec", url=server.url)], hooks=[hook]) as session:
        result = await AgentLoop(session, model, max_steps=3).run_turn("format it")
    # Asked to go on at every stop, but max_steps bounds it: three model calls, no error.
    assert result.text == "third" and result.steps == 3 and result.outcome.state is TurnState.COMPLETED
    assert hook.stops == ["first", "second", "third"]
    roles = [(m.role, m.content) for m in requests[0].messages]
    assert roles == [("user", "format it"), ("system", "the repo uses tabs")]
    assert [(m.role, m.content) for m in requests[2].messages][-2:] == [
        ("assistant", "second"), ("user", "not yet (2)"),
    ]  # fmt: skip

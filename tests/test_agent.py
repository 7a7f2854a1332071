"""`codex_runtime.agent`: the agent loop, `ScriptedModel` and `OpenAIChatModel`.

Everything runs against real loopback servers: `RecordingServer` for MCP and
`ProviderStub` for the model provider. Assertions are on what they received.
"""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import anyio
import pytest

from codex_runtime import (
    AbortReason,
    ForwardHeaders,
    HeaderPolicy,
    ServerConfig,
    Session,
    Turn,
    TurnHeaders,
    TurnInProgressError,
    TurnOutcome,
    TurnState,
)
from codex_runtime._provider_stub import ProviderStub, StubReply
from codex_runtime.agent import (
    AgentLoop,
    MaxStepsError,
    Message,
    ModelError,
    ModelRequest,
    ModelResponse,
    ModelStep,
    OpenAIChatModel,
    ScriptedModel,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
    wire_tool_name,
)
from codex_runtime.testing import RecordingServer

pytestmark = pytest.mark.anyio


def _configs(apps: RecordingServer, tools: RecordingServer, **tools_options: Any) -> list[ServerConfig]:
    return [
        ServerConfig(name="apps", url=apps.url, apps=True),
        ServerConfig(name="ws", url=tools.url, headers={"x-api-key": "static-secret"}, **tools_options),
    ]


def _key(name: str) -> str:
    """A `block` key used once: the shared server remembers released keys."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _ended(outcomes: list[TurnOutcome]) -> Any:
    async def record(turn: Turn, outcome: TurnOutcome) -> None:
        outcomes.append(outcome)

    return record


# -- the loop with a scripted model ------------------------------------------------------------


async def test_parallel_tool_calls_run_inside_the_turn_and_results_go_back(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    def answer(request: ModelRequest) -> ModelResponse:
        tool_messages = [m for m in request.messages if m.role == "tool"]
        return ModelResponse(text=" + ".join(m.content or "" for m in tool_messages))

    k1, k2 = _key("p1"), _key("p2")
    model = ScriptedModel(
        [[ToolCall("apps__block", {"key": k1}), ToolCall("ws__block", {"key": k2})], answer]
    )
    events: list[object] = []
    async with Session(_configs(server, other_server), hooks=[TurnHeaders()]) as session:
        loop = AgentLoop(session, model, on_event=events.append)
        results: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                results.append(await loop.run_turn("block twice", metadata={"model": "scripted"}))

            tg.start_soon(run)
            # Both calls are in flight at once: they run concurrently.
            await server.wait_for_calls("block", 1)
            await other_server.wait_for_calls("block", 1)
            server.release(k1)
            other_server.release(k2)
    [result] = results
    assert result.outcome.state is TurnState.COMPLETED
    assert result.text == f"released {k1} + released {k2}"
    assert result.steps == 2
    assert [(r.server, r.tool, r.is_error) for r in result.tool_calls] == [
        ("apps", "block", False),
        ("ws", "block", False),
    ]
    assert [(r.server, r.tool) for r in result.turn.tool_calls] == [("apps", "block"), ("ws", "block")] or [
        (r.server, r.tool) for r in result.turn.tool_calls
    ] == [("ws", "block"), ("apps", "block")]

    # What the model saw at step 2: the user input, its tool calls, one result per call.
    second = model.requests[1]
    assert [m.role for m in second.messages] == ["user", "assistant", "tool", "tool"]
    calls = second.messages[1].tool_calls
    assert [m.tool_call_id for m in second.messages[2:]] == [c.id for c in calls]
    assert {t.name for t in second.tools} >= {"apps__echo", "apps__block", "ws__echo", "ws__fail"}
    spec = next(t for t in second.tools if t.name == "ws__echo")
    assert (spec.server, spec.tool) == ("ws", "echo")
    assert spec.input_schema["type"] == "object"

    # The calls ran inside the turn: only the Apps server got the turn headers.
    [apps_call] = server.requests("tools/call")
    [ws_call] = other_server.requests("tools/call")
    turn_metadata = json.loads(apps_call.header("x-codex-turn-metadata") or "{}")
    assert turn_metadata["turn_id"] == result.turn.id
    assert turn_metadata["model"] == "scripted"
    assert ws_call.header("x-codex-turn-metadata") is None and ws_call.header("session_id") is None

    kinds = [type(e) for e in events]
    assert kinds.count(ModelStep) == 2 and kinds.count(ToolCallStarted) == 2
    assert kinds.count(ToolCallFinished) == 2


async def test_sequential_tool_calls_wait_for_each_other(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    k1, k2 = _key("s1"), _key("s2")
    model = ScriptedModel(
        [[ToolCall("apps__block", {"key": k1}), ToolCall("apps__block", {"key": k2})], "ok"]
    )
    async with Session(_configs(server, other_server)) as session:
        loop = AgentLoop(session, model, parallel_tool_calls=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop.run_turn, "one by one")
            await server.wait_for_calls("block", 1)
            # The second call cannot start before the first one returns.
            assert [c.arguments["key"] for c in server.tool_calls("block")] == [k1]
            server.release(k1)
            await server.wait_for_calls("block", 2)
            server.release(k2)
    assert [c.arguments["key"] for c in server.tool_calls("block")] == [k1, k2]


async def test_the_conversation_persists_across_turns(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    model = ScriptedModel([ToolCall("apps__echo", {"text": "one"}), "first answer", "second answer"])
    async with Session(_configs(server, other_server)) as session:
        loop = AgentLoop(session, model, instructions="You are terse.")
        first = await loop.run_turn("first question")
        second = await loop.run_turn("second question")
    assert (first.text, second.text) == ("first answer", "second answer")
    assert first.turn.index == 1 and second.turn.index == 2
    last = model.requests[-1]
    assert [(m.role, m.content) for m in last.messages if m.role != "tool"] == [
        ("system", "You are terse."),
        ("user", "first question"),
        ("assistant", None),
        ("assistant", "first answer"),
        ("user", "second question"),
    ]
    assert last.turn is second.turn
    assert loop.messages[-1] == Message.assistant("second answer")
    loop.reset()
    assert loop.messages == [Message.system("You are terse.")]


async def test_tool_errors_go_back_to_the_model_as_error_results(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    gone = RecordingServer("gone")
    await anyio.to_thread.run_sync(gone.start)
    configs = [
        *_configs(server, other_server, tool_timeout=0.3),
        ServerConfig(name="gone", url=gone.url),
    ]
    model = ScriptedModel(
        [
            [
                ToolCall("apps__fail", {"message": "disk full"}),  # a tool-level error (isError)
                ToolCall("ws__block", {"key": _key("never")}),  # a timeout: ToolTimeoutError
                ToolCall("apps__echo", arguments_error="not valid JSON"),  # the model's bad arguments
                ToolCall("gone__echo", {"text": "x"}),  # the server went away: ServerUnavailableError
            ],
            "recovered",
        ]
    )
    async with Session(configs) as session:
        await anyio.to_thread.run_sync(gone.stop)
        loop = AgentLoop(session, model)
        result = await loop.run_turn("try everything")
    assert result.outcome.state is TurnState.COMPLETED
    assert result.text == "recovered"
    outputs = {r.name: r for r in result.tool_calls}
    assert all(r.is_error for r in result.tool_calls)
    assert outputs["apps__fail"].output == "disk full"
    assert "ws" in outputs["ws__block"].output and "0.3" in outputs["ws__block"].output
    assert outputs["apps__echo"].server is None
    assert "invalid arguments" in outputs["apps__echo"].output
    assert outputs["gone__echo"].output.startswith("error: MCP server 'gone'")
    tool_messages = [m for m in model.requests[1].messages if m.role == "tool"]
    assert len(tool_messages) == 4 and all(m.is_error for m in tool_messages)
    # The call with bad arguments never reached the server.
    assert server.tool_calls("echo") == []


async def test_an_unknown_tool_goes_back_to_the_model_and_the_turn_goes_on(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    outcomes: list[TurnOutcome] = []
    model = ScriptedModel(
        [[ToolCall("nope__missing", {}), ToolCall("apps__echo", {"text": "real"})], "recovered"]
    )
    async with Session(_configs(server, other_server)) as session:
        session.on_turn_end(_ended(outcomes))
        loop = AgentLoop(session, model)
        result = await loop.run_turn("call something odd")
        assert result.text == "recovered"
        assert [o.state for o in outcomes] == [TurnState.COMPLETED]
        unknown, echo = result.tool_calls
        assert unknown.is_error and (unknown.server, unknown.tool) == (None, None)
        assert "unknown tool 'nope__missing'" in unknown.output and "apps__echo" in unknown.output
        assert not echo.is_error
        # The model was told, in the tool result of the made-up call.
        told = [m for m in model.requests[1].messages if m.role == "tool"]
        assert [(m.name, m.is_error) for m in told] == [("nope__missing", True), ("apps__echo", False)]
        # The real call of the same answer ran.
        assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "real"}]


async def test_max_steps_fails_the_turn_without_running_the_last_calls(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    outcomes: list[TurnOutcome] = []

    def more(request: ModelRequest) -> ModelResponse:
        return ModelResponse(tool_calls=(ToolCall("apps__echo", {"text": f"step {request.step}"}),))

    async with Session(_configs(server, other_server)) as session:
        session.on_turn_end(_ended(outcomes))
        loop = AgentLoop(session, ScriptedModel([more, more, more]), max_steps=2)
        with pytest.raises(MaxStepsError, match=r"max_steps \(2\)") as caught:
            await loop.run_turn("loop forever")
    assert [o.state for o in outcomes] == [TurnState.FAILED]
    assert caught.value.outcome is not None and caught.value.outcome.state is TurnState.FAILED
    assert [r.arguments for r in caught.value.tool_calls] == [{"text": "step 1"}]
    assert [c.arguments["text"] for c in server.tool_calls("echo")] == ["step 1"]


async def test_a_failing_model_fails_the_turn(server: RecordingServer, other_server: RecordingServer) -> None:
    async with Session(_configs(server, other_server)) as session:
        loop = AgentLoop(session, ScriptedModel([RuntimeError("model crashed")]))
        with pytest.raises(ModelError, match="RuntimeError: model crashed") as caught:
            await loop.run_turn("hello")
        assert isinstance(caught.value.__cause__, RuntimeError)
        with pytest.raises(ModelError, match="no step left"):
            await loop.run_turn("hello again")


async def test_interrupting_a_tool_call_aborts_the_turn(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    model = ScriptedModel([ToolCall("apps__block", {"key": _key("int")}), "after the interrupt"])
    async with Session(_configs(server, other_server)) as session:
        loop = AgentLoop(session, model)
        results: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                results.append(await loop.run_turn("block"))

            tg.start_soon(run)
            await server.wait_for_calls("block", 1)
            assert loop.current_turn is not None
            loop.interrupt()
        [result] = results
        assert result.outcome.state is TurnState.ABORTED
        assert result.outcome.abort_reason is AbortReason.INTERRUPTED
        assert result.text is None and result.aborted
        await server.wait_for_calls("block", 1, outcome="cancelled")
        # The next turn continues from a valid history.
        follow_up = await loop.run_turn("go on")
    assert follow_up.text == "after the interrupt"
    history = model.requests[-1].messages
    assert [m.role for m in history] == ["user", "assistant", "tool", "user"]
    assert history[2].is_error and "ended before" in (history[2].content or "")


async def test_an_interrupt_while_the_turn_starts_is_not_lost(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    model = ScriptedModel(["never asked"])
    async with Session(_configs(server, other_server)) as session:
        loop = AgentLoop(session, model)

        @session.on_turn_start
        async def interrupt_while_starting(turn: Turn) -> None:
            assert loop.current_turn is None  # the loop has no turn to interrupt yet
            loop.interrupt()

        result = await loop.run_turn("hi")
    assert result.outcome.state is TurnState.ABORTED
    assert result.outcome.abort_reason is AbortReason.INTERRUPTED
    assert model.requests == []


async def test_one_loop_runs_one_turn_at_a_time(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    key = _key("busy")
    model = ScriptedModel([ToolCall("apps__block", {"key": key}), "done"])
    async with Session(_configs(server, other_server)) as session:
        loop = AgentLoop(session, model)
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop.run_turn, "first")
            await server.wait_for_calls("block", 1)
            with pytest.raises(TurnInProgressError):
                await loop.run_turn("second")
            server.release(key)


# -- OpenAIChatModel against the stand-in provider ---------------------------------------------


async def test_openai_model_runs_a_turn_and_sends_only_the_provider_headers(
    server: RecordingServer, other_server: RecordingServer, provider: ProviderStub
) -> None:
    provider.add(
        StubReply.tool_calls(("apps__echo", {"text": "from the model"}), ("ws__echo", {"text": "second"})),
        StubReply.text("All done."),
    )
    configs = [
        ServerConfig(name="apps", url=server.url, apps=True),
        ServerConfig(name="ws", url=other_server.url, forward=True, headers={"x-api-key": "static-secret"}),
    ]
    forwarded = {
        "x-request-id": "req-42",
        "authorization": "Bearer caller-token",
        "x-smg-oci-delegation-token": "delegated",
        "x-tenant": "t1",
    }
    model = OpenAIChatModel(
        provider.base_url,
        "gpt-test",
        api_key="sk-test",
        headers={"x-provider-extra": "yes"},
        options={"temperature": 0},
    )
    async with model, Session(configs, hooks=[TurnHeaders(), ForwardHeaders(HeaderPolicy.smg())]) as session:
        loop = AgentLoop(session, model, parallel_tool_calls=False)
        result = await loop.run_turn("use the tools", forwarded_headers=forwarded)
    assert result.text == "All done."
    assert [(r.name, r.is_error) for r in result.tool_calls] == [("apps__echo", False), ("ws__echo", False)]

    first, second = provider.chat_requests()
    for request in (first, second):
        assert request.http_method == "POST" and request.path == "/v1/chat/completions"
        assert request.header("authorization") == "Bearer sk-test"  # the api key wins
        assert request.header("x-provider-extra") == "yes"
        assert request.header("x-request-id") == "req-42"  # the default policy forwards it
        assert request.header("content-type") == "application/json"
        assert request.header("accept") == "application/json"
        for never in (
            "x-smg-oci-delegation-token",
            "x-tenant",
            "session_id",
            "x-codex-turn-metadata",
            "x-api-key",
        ):
            assert request.header(never) is None, never
    assert first.body["model"] == "gpt-test" and first.body["temperature"] == 0
    assert first.body["parallel_tool_calls"] is False
    assert first.messages == [{"role": "user", "content": "use the tools"}]
    echo = next(t for t in first.tools if t["function"]["name"] == "apps__echo")
    assert echo["type"] == "function"
    assert echo["function"]["parameters"]["properties"]["text"]["type"] == "string"
    assistant, *tool_results = second.messages[1:]
    assert assistant["role"] == "assistant"
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_stub_1", "call_stub_2"]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"text": "from the model"}
    assert [(m["role"], m["tool_call_id"]) for m in tool_results] == [
        ("tool", "call_stub_1"),
        ("tool", "call_stub_2"),
    ]
    assert json.loads(tool_results[0]["content"])["arguments"] == {"text": "from the model"}

    # The MCP side: the Apps server got the turn headers, the forward server the
    # delegation token; neither got the provider's key or the caller's authorization.
    [apps_call] = server.requests("tools/call")
    [ws_call] = other_server.requests("tools/call")
    assert apps_call.header("session_id") == session.session_id
    assert apps_call.header("x-smg-oci-delegation-token") is None
    assert ws_call.header("x-smg-oci-delegation-token") == "delegated"
    assert ws_call.header("session_id") is None
    for call in (apps_call, ws_call):
        assert call.header("authorization") is None
        assert call.header("x-provider-extra") is None


async def test_the_smg_policy_forwards_the_callers_authorization_to_the_provider(
    server: RecordingServer, other_server: RecordingServer, provider: ProviderStub
) -> None:
    provider.add("hello")
    model = OpenAIChatModel(provider.base_url, "m", policy=HeaderPolicy.smg())
    async with model, Session(_configs(server, other_server)) as session:
        await AgentLoop(session, model).run_turn(
            "hi", forwarded_headers=[("authorization", "Bearer caller"), ("x-smg-routing-key", "r1")]
        )
    [request] = provider.chat_requests()
    assert request.header("authorization") == "Bearer caller"
    assert request.header("x-smg-routing-key") == "r1"


async def test_the_provider_gets_the_turn_spans_traceparent(
    server: RecordingServer, other_server: RecordingServer, provider: ProviderStub, spans: Any
) -> None:
    tracing = pytest.importorskip("codex_runtime.tracing")
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "traced"})), "done")
    model = OpenAIChatModel(provider.base_url, "m")
    async with model, Session(_configs(server, other_server), hooks=[tracing.TraceTurns()]) as session:
        result = await AgentLoop(session, model).run_turn("trace me")
    [turn_span] = [s for s in spans.get_finished_spans() if s.name == tracing.AGENT_SPAN]
    trace_id = format(turn_span.context.trace_id, "032x")
    span_id = format(turn_span.context.span_id, "016x")
    assert turn_span.attributes["turn.id"] == result.turn.id
    for request in provider.chat_requests():
        assert (request.header("traceparent") or "").split("-")[1:3] == [trace_id, span_id]
    [call] = server.requests("tools/call")
    assert (call.header("traceparent") or "").split("-")[1] == trace_id


@pytest.mark.parametrize(
    ("reply", "status", "message"),
    [
        (StubReply.error(500, "upstream exploded"), 500, "HTTP 500: upstream exploded"),
        (StubReply.error(401, "bad key"), 401, "HTTP 401: bad key"),
        (StubReply.raw_body("<html>oops</html>"), 200, "malformed JSON"),
        (StubReply.raw_body('{"choices": []}'), None, "no choices"),
    ],
)
async def test_provider_errors_become_a_model_error(
    server: RecordingServer,
    other_server: RecordingServer,
    provider: ProviderStub,
    reply: StubReply,
    status: int | None,
    message: str,
) -> None:
    provider.add(reply)
    outcomes: list[TurnOutcome] = []
    model = OpenAIChatModel(provider.base_url, "m", api_key="sk-never-shown")
    async with model, Session(_configs(server, other_server)) as session:
        session.on_turn_end(_ended(outcomes))
        with pytest.raises(ModelError) as caught:
            await AgentLoop(session, model).run_turn("hi")
    assert message in str(caught.value)
    assert caught.value.status == status
    assert "sk-never-shown" not in str(caught.value)
    assert [o.state for o in outcomes] == [TurnState.FAILED]


async def test_an_unreachable_provider_is_a_model_error(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIChatModel(f"http://127.0.0.1:{port}/v1", "m")
    async with model, Session(_configs(server, other_server)) as session:
        with pytest.raises(ModelError, match="cannot reach the model provider"):
            await AgentLoop(session, model).run_turn("hi")


async def test_invalid_json_arguments_go_back_to_the_model(
    server: RecordingServer, other_server: RecordingServer, provider: ProviderStub
) -> None:
    provider.add(StubReply.tool_calls(("apps__echo", '{"text": oops'), ("ws__echo", "[1, 2]")), "sorry")
    model = OpenAIChatModel(provider.base_url, "m")
    async with model, Session(_configs(server, other_server)) as session:
        result = await AgentLoop(session, model).run_turn("hi")
    assert result.text == "sorry"
    assert [r.is_error for r in result.tool_calls] == [True, True]
    assert server.tool_calls() == [] and other_server.tool_calls() == []
    _, second = provider.chat_requests()
    assistant, first_result, second_result = second.messages[1:]
    assert [c["function"]["arguments"] for c in assistant["tool_calls"]] == ["{}", "{}"]
    assert first_result["content"].startswith("ERROR: invalid arguments for apps__echo: not valid JSON")
    assert "must be a JSON object, not list" in second_result["content"]


async def test_tool_names_are_made_safe_for_the_provider(
    server: RecordingServer, provider: ProviderStub
) -> None:
    wire = wire_tool_name("my.srv__echo")
    assert wire != "my.srv__echo" and wire.startswith("my_srv__echo_")
    provider.add(StubReply.tool_calls((wire, {"text": "dotted"})), "ok")
    model = OpenAIChatModel(provider.base_url, "m")
    async with model, Session([ServerConfig(name="my.srv", url=server.url)]) as session:
        result = await AgentLoop(session, model).run_turn("hi")
    assert [(r.name, r.server, r.tool) for r in result.tool_calls] == [("my.srv__echo", "my.srv", "echo")]
    assert wire in provider.chat_requests()[0].tool_names
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "dotted"}]


async def test_interrupting_a_model_call_aborts_the_turn(
    server: RecordingServer, other_server: RecordingServer, provider: ProviderStub
) -> None:
    provider.add(StubReply.text("too late", hold=_key("model")))
    model = OpenAIChatModel(provider.base_url, "m")
    async with model, Session(_configs(server, other_server)) as session:
        loop = AgentLoop(session, model)
        results: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                results.append(await loop.run_turn("think hard"))

            tg.start_soon(run)
            await provider.wait_for_requests(1)
            loop.interrupt()
    [result] = results
    assert result.outcome.state is TurnState.ABORTED and result.text is None
    assert result.outcome.abort_reason is AbortReason.INTERRUPTED


async def test_openai_model_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAIChatModel("localhost:8000", "m")
    with pytest.raises(ValueError, match="model"):
        OpenAIChatModel("http://localhost:8000/v1", "")
    with pytest.raises(ValueError, match="traceparent"):
        OpenAIChatModel("http://localhost:8000/v1", "m", headers={"traceparent": "x"})
    with pytest.raises(ValueError, match="messages"):
        OpenAIChatModel("http://localhost:8000/v1", "m", options={"messages": []})

"""Spans in the OpenTelemetry GenAI conventions: ``invoke_agent`` turns and ``execute_tool`` calls.

Checked against what actually travelled: the ids the provider sent and got back, and the
``traceparent`` each MCP server received.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from codex_runtime import ServerConfig, Session, TraceTurns
from codex_runtime._provider_stub import ProviderStub, StubReply
from codex_runtime.agent import AgentLoop, OpenAIChatModel, ScriptedModel, ToolCall
from codex_runtime.testing import RecordingServer
from codex_runtime.tracing import AGENT_SPAN, TURN_SPAN, parse_traceparent

pytestmark = pytest.mark.anyio


def _hex(span_id: int) -> str:
    return format(span_id, "016x")


def _by_id(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {_hex(s.context.span_id): s for s in exporter.get_finished_spans() if s.context is not None}


def _parent(spans: dict[str, ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, span.name
    return spans[_hex(span.parent.span_id)]


async def test_an_agent_turn_is_invoke_agent_and_its_tool_calls_carry_the_models_ids(
    server: RecordingServer,
    other_server: RecordingServer,
    provider: ProviderStub,
    spans: InMemorySpanExporter,
) -> None:
    provider.add(
        StubReply.tool_calls(
            ("apps__echo", {"text": "one"}, "call_alpha"), ("ws__echo", {"text": "two"}, "call_beta")
        ),
        "done",
    )
    configs = [
        ServerConfig(name="apps", url=server.url, apps=True),
        ServerConfig(name="ws", url=other_server.url, protocol="legacy"),
    ]
    model = OpenAIChatModel(provider.base_url, "m")
    async with model, Session(configs, hooks=[TraceTurns()]) as session:
        result = await AgentLoop(session, model, name="coder").run_turn("go")
        async with session.turn() as plain:  # a turn without the agent loop
            await plain.call_tool("apps", "echo", {"text": "plain"})

    by_id = _by_id(spans)
    [agent_span] = [s for s in by_id.values() if s.name == f"{AGENT_SPAN} coder"]
    assert agent_span.kind is SpanKind.INTERNAL
    attributes = dict(agent_span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "invoke_agent"
    assert attributes["gen_ai.agent.name"] == "coder"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.conversation.id"] == attributes["session.id"] == session.session_id
    assert attributes["turn.id"] == result.turn.id and attributes["turn.index"] == 1

    # The ids the model gave are the ids it got back with the results, and the spans'.
    second = provider.chat_requests()[1]
    returned = {m["tool_call_id"] for m in second.messages if m.get("role") == "tool"}
    assert returned == {"call_alpha", "call_beta"}
    apps_call, ws_call = server.requests("tools/call")[0], other_server.requests("tools/call")[0]
    tool_spans = {}
    for record, call_id in ((apps_call, "call_alpha"), (ws_call, "call_beta")):
        sent = parse_traceparent(record.header("traceparent"))
        assert sent is not None and sent.span_id in by_id
        sdk_span = by_id[sent.span_id]
        assert sdk_span.name == "MCP send tools/call echo" and sdk_span.kind is SpanKind.CLIENT
        tool_span = _parent(by_id, sdk_span)
        assert tool_span.name == "execute_tool echo" and tool_span.kind is SpanKind.INTERNAL
        tool_attributes = dict(tool_span.attributes or {})
        assert tool_attributes["gen_ai.tool.call.id"] == call_id
        assert tool_attributes["gen_ai.operation.name"] == "execute_tool"
        assert tool_attributes["mcp.protocol.version"] == record.header("mcp-protocol-version")
        assert _parent(by_id, tool_span) is agent_span
        tool_spans[call_id] = tool_attributes

    # The legacy server's call names its session; the 2026-07-28 one has none.
    session_header = ws_call.header("mcp-session-id")
    assert session_header and tool_spans["call_beta"]["mcp.session.id"] == session_header
    assert apps_call.header("mcp-session-id") is None and "mcp.session.id" not in tool_spans["call_alpha"]

    [plain_span] = [s for s in by_id.values() if s.name == TURN_SPAN]
    plain_attributes = dict(plain_span.attributes or {})
    assert plain_attributes["gen_ai.conversation.id"] == session.session_id
    assert plain_attributes["turn.id"] == plain.id
    assert "gen_ai.operation.name" not in plain_attributes
    [plain_call] = [r for r in server.requests("tools/call") if r.arguments.get("text") == "plain"]
    sent = parse_traceparent(plain_call.header("traceparent"))
    assert sent is not None
    plain_tool = _parent(by_id, by_id[sent.span_id])
    [plain_record] = plain.tool_calls  # the span names the call as the turn's record does
    assert dict(plain_tool.attributes or {})["gen_ai.tool.call.id"] == plain_record.call_id
    assert _parent(by_id, plain_tool) is plain_span


async def test_an_unnamed_loop_and_a_model_without_a_provider_name(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    model = ScriptedModel([ToolCall("apps__echo", {"text": "x"}, id="call_1"), "done"])
    async with Session([ServerConfig(name="apps", url=server.url)], hooks=[TraceTurns()]) as session:
        await AgentLoop(session, model).run_turn("go")
    by_id = _by_id(spans)
    [agent_span] = [s for s in by_id.values() if s.name == AGENT_SPAN]
    attributes: dict[str, Any] = dict(agent_span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "invoke_agent"
    assert "gen_ai.agent.name" not in attributes and "gen_ai.provider.name" not in attributes
    [tool_span] = [s for s in by_id.values() if s.name == "execute_tool echo"]
    assert dict(tool_span.attributes or {})["gen_ai.tool.call.id"] == "call_1"


def test_an_agent_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="name"):
        AgentLoop(Session(), ScriptedModel([]), name="")

"""Tests of `codex_runtime.tracing`: turn spans, W3C context out to servers and in from callers.

Every async test runs on asyncio and trio, against `RecordingServer`s over real HTTP on
loopback (or stdio where stated), with the process-wide SDK tracer provider and
in-memory exporter of ``tests/conftest.py`` (the ``spans`` fixture, emptied per test).
Assertions are on what the servers received and on the finished spans.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode

from codex_runtime.client import McpClient, ServerConfig, ToolCallError
from codex_runtime.session import AbortReason, Session, Turn, TurnState
from codex_runtime.testing import RecordedRequest, RecordingServer, StdioRecording, stdio_server_config
from codex_runtime.tracing import (
    TraceParent,
    TraceTurns,
    context_from_environ,
    context_from_headers,
    format_span_tree,
    install_memory_exporter,
    parse_traceparent,
)

pytestmark = pytest.mark.anyio

INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_SPAN = "00f067aa0ba902b7"
INCOMING = f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"
TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"


# -- helpers ----------------------------------------------------------------------------


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.span_id, "016x")


def hex_link(link: Link) -> str:
    return format(link.context.span_id, "016x")


def hex_parent(span: ReadableSpan) -> str | None:
    return None if span.parent is None else format(span.parent.span_id, "016x")


class Spans:
    """The finished spans of a test, indexed by span id."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.all: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
        self.by_id = {hex_span(s): s for s in self.all}

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all if s.name == name]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan:
        parent = hex_parent(span)
        assert parent is not None, f"{span.name} has no parent"
        return self.by_id[parent]

    def chain(self, span_id: str) -> list[str]:
        """Names from span ``span_id`` up to its local root."""
        names = []
        span: ReadableSpan | None = self.by_id[span_id]
        while span is not None:
            names.append(span.name)
            parent = hex_parent(span)
            span = self.by_id.get(parent) if parent is not None else None
        return names


def sent_by(record: RecordedRequest) -> TraceParent:
    """The traceparent of a recorded request, checking HTTP and ``_meta`` agree."""
    header = record.header("traceparent")
    assert header is not None, f"{record.method} arrived without a traceparent header"
    assert header == record.meta.get("traceparent"), (record.method, header, record.meta)
    assert record.header("tracestate") == record.meta.get("tracestate")
    parsed = parse_traceparent(header)
    assert parsed is not None
    return parsed


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def apps_config(server: RecordingServer, **options: Any) -> ServerConfig:
    return ServerConfig(name="apps", url=server.url, apps=True, **options)


def no_span_current() -> bool:
    return not trace.get_current_span().get_span_context().is_valid


# -- spans and what servers received -----------------------------------------------------


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_turn_tool_call_and_sdk_span_chain_reaches_the_server(
    server: RecordingServer, spans: InMemorySpanExporter, protocol: str
) -> None:
    async with Session([apps_config(server, protocol=protocol)], hooks=[TraceTurns()]) as session:
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "one"})
            await turn.call_tool("apps", "echo", {"text": "two"})
        assert no_span_current()

    got = Spans(spans)
    [session_span] = got.named("session")
    [turn_span] = got.named("turn")
    assert hex_parent(turn_span) == hex_span(session_span)
    assert session_span.parent is None
    assert turn_span.attributes is not None
    assert dict(turn_span.attributes) == {
        "session.id": session.session_id,
        "turn.id": turn.id,
        "turn.index": 1,
        "gen_ai.conversation.id": session.session_id,
        "turn.outcome": "completed",
    }
    assert turn_span.status.status_code is StatusCode.UNSET
    assert turn_span.kind is SpanKind.INTERNAL

    calls = server.requests("tools/call")
    assert len(calls) == 2
    for call in calls:
        sent = sent_by(call)
        assert sent.trace_id == hex_trace(turn_span)
        sender = got.by_id[sent.span_id]
        assert sender.name == "MCP send tools/call echo" and sender.kind is SpanKind.CLIENT
        tool_span = got.parent_of(sender)
        assert tool_span.name == "execute_tool echo" and tool_span.kind is SpanKind.INTERNAL
        assert got.parent_of(tool_span) is turn_span
        attributes = dict(tool_span.attributes or {})
        assert attributes["mcp.server.name"] == "apps"
        assert attributes["tool.name"] == attributes["gen_ai.tool.name"] == "echo"
        assert attributes["mcp.transport"] == "streamable-http"
        assert attributes["mcp.method.name"] == "tools/call"
        assert attributes["gen_ai.operation.name"] == "execute_tool"
        assert attributes["network.transport"] == "tcp"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == server.port
        # What the connection negotiated, as the server received it on this very request.
        assert attributes["mcp.protocol.version"] == call.header("mcp-protocol-version")
        if protocol == "legacy":
            session_header = call.header("mcp-session-id")
            assert session_header and attributes["mcp.session.id"] == session_header
        else:  # the conventions forbid it from 2026-07-28 on (no sessions)
            assert call.header("mcp-session-id") is None and "mcp.session.id" not in attributes
        # The turn's id for the call, as its record has it.
        assert attributes["gen_ai.tool.call.id"] in {r.call_id for r in turn.tool_calls}
    # The server's own span (same process here) continues the same trace from `_meta`.
    server_spans = [s for s in got.named("tools/call echo") if s.kind is SpanKind.SERVER]
    assert len(server_spans) == 2
    assert {hex_parent(s) for s in server_spans} == {sent_by(c).span_id for c in calls}


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_every_request_with_meta_context_has_the_same_http_traceparent(
    server: RecordingServer, spans: InMemorySpanExporter, protocol: str
) -> None:
    key = unique("block")
    async with Session([apps_config(server, protocol=protocol)], hooks=[TraceTurns()]) as session:
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "x"})
            with anyio.move_on_after(0.2):
                await turn.call_tool("apps", "block", {"key": key})  # legacy sends a cancellation
            await session.clients["apps"].list_tools(refresh=True)
    got = Spans(spans)
    [turn_span] = got.named("turn")
    seen = 0
    for record in server.requests():
        if "traceparent" in record.meta:
            sent = sent_by(record)
            assert got.by_id[sent.span_id].name.startswith("MCP send "), record.method
            seen += 1
        elif record.header("traceparent") is not None:
            # Notifications carry no `_meta` context (the SDK injects it into requests):
            # the HTTP header still names the span that sent them, in the turn's trace.
            notified = parse_traceparent(record.header("traceparent"))
            assert notified is not None and notified.span_id in got.by_id, record.method
            assert notified.trace_id == hex_trace(turn_span)
    assert seen >= 4  # connect + tools/call x2 + tools/list


async def test_concurrent_calls_get_distinct_span_ids(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:
        async with session.turn() as turn, anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(turn.call_tool, "apps", "echo", {"text": f"c{i}"})
    got = Spans(spans)
    [turn_span] = got.named("turn")
    sent = [sent_by(call) for call in server.requests("tools/call")]
    assert len(sent) == 12
    assert len({s.span_id for s in sent}) == 12
    tool_spans = set()
    for s in sent:
        assert s.trace_id == hex_trace(turn_span)
        assert got.chain(s.span_id)[:3] == ["MCP send tools/call echo", "execute_tool echo", "turn"]
        tool_spans.add(hex_parent(got.by_id[s.span_id]))
    assert len(tool_spans) == 12


async def test_stdio_server_gets_meta_only(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    record = tmp_path / "stdio.jsonl"
    config = stdio_server_config("local", record)
    async with Session([config], hooks=[TraceTurns()]) as session:
        async with session.turn() as turn:
            await turn.call_tool("local", "echo", {"text": "s"})
    [call] = StdioRecording(record).requests("tools/call")
    assert call.header_pairs == ()
    sent = parse_traceparent(call.meta.get("traceparent"))
    assert sent is not None
    got = Spans(spans)
    [turn_span] = got.named("turn")
    assert sent.trace_id == hex_trace(turn_span)
    assert got.chain(sent.span_id)[:3] == ["MCP send tools/call echo", "execute_tool echo", "turn"]
    tool_span = got.parent_of(got.by_id[sent.span_id])
    attributes = dict(tool_span.attributes or {})
    assert attributes["mcp.transport"] == "stdio" and attributes["network.transport"] == "pipe"
    assert "server.address" not in attributes


# -- tool call errors on the span --------------------------------------------------------------


async def test_tool_call_span_follows_the_error_conventions(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:
        async with session.turn() as turn:
            result = await turn.call_tool("apps", "fail", {"message": "nope"})
            assert result.is_error
            with pytest.raises(ToolCallError) as refused:
                await turn.call_tool("apps", "no-such-tool")
            await turn.call_tool("apps", "echo", {"text": "fine"})
    by_tool = {
        dict(s.attributes or {})["tool.name"]: s
        for s in Spans(spans).all
        if s.name.startswith("execute_tool ")
    }
    failed = by_tool["fail"]
    assert dict(failed.attributes or {})["error.type"] == "tool_error"
    assert failed.status.status_code is StatusCode.ERROR
    rejected = by_tool["no-such-tool"]
    assert refused.value.code is not None
    assert dict(rejected.attributes or {})["error.type"] == str(refused.value.code)
    assert dict(rejected.attributes or {})["rpc.response.status_code"] == str(refused.value.code)
    assert rejected.status.status_code is StatusCode.ERROR
    assert rejected.status.description == refused.value.reason
    fine = by_tool["echo"]
    assert "error.type" not in dict(fine.attributes or {})
    assert fine.status.status_code is StatusCode.UNSET
    assert dict(fine.attributes or {})["network.protocol.name"] == "http"


# -- turn outcome on the span -----------------------------------------------------------------


async def test_failed_turn_has_error_status(server: RecordingServer, spans: InMemorySpanExporter) -> None:
    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:
        with pytest.raises(ValueError, match="boom"):
            async with session.turn() as turn:
                await turn.call_tool("apps", "echo", {"text": "before"})
                raise ValueError("boom")
        assert no_span_current()
    [turn_span] = Spans(spans).named("turn")
    assert turn.state is TurnState.FAILED
    assert turn_span.status.status_code is StatusCode.ERROR
    assert turn_span.status.description == "ValueError: boom"
    attributes = dict(turn_span.attributes or {})
    assert attributes["turn.outcome"] == "failed" and attributes["error.type"] == "ValueError"
    assert "turn.abort_reason" not in attributes
    assert [e.name for e in turn_span.events] == ["exception"]


async def test_aborted_turn_records_the_reason(server: RecordingServer, spans: InMemorySpanExporter) -> None:
    key = unique("abort")
    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:

        async def body(turn: Turn) -> None:
            await turn.call_tool("apps", "block", {"key": key})

        handle = await session.start_turn(body)
        await server.wait_for_calls("block", 1)
        handle.interrupt()
        outcome = await handle.wait()
    assert outcome.state is TurnState.ABORTED
    [turn_span] = Spans(spans).named("turn")
    attributes = dict(turn_span.attributes or {})
    assert attributes["turn.outcome"] == "aborted"
    assert attributes["turn.abort_reason"] == AbortReason.INTERRUPTED.value
    assert turn_span.status.status_code is StatusCode.UNSET
    sent = sent_by(server.requests("tools/call")[0])
    assert sent.trace_id == hex_trace(turn_span)


async def test_a_failing_later_start_hook_still_ends_the_span_and_detaches(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async def refuse(turn: Turn) -> None:
        raise RuntimeError("no")

    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:
        session.on_turn_start(refuse)
        with pytest.raises(RuntimeError):
            async with session.turn():
                pass  # pragma: no cover - never runs
        assert no_span_current()
    [turn_span] = Spans(spans).named("turn")
    assert turn_span.status.status_code is StatusCode.ERROR
    assert dict(turn_span.attributes or {})["turn.outcome"] == "failed"


async def test_session_span_is_never_current_and_can_be_switched_off(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async with Session([apps_config(server)], hooks=[TraceTurns(session_span=False)]) as session:
        assert no_span_current()
        async with session.turn() as first:
            await first.call_tool("apps", "echo", {"text": "1"})
        async with session.turn() as second:
            await second.call_tool("apps", "echo", {"text": "2"})
    got = Spans(spans)
    assert got.named("session") == []
    turns = got.named("turn")
    assert [t.parent for t in turns] == [None, None]
    assert len({hex_trace(t) for t in turns}) == 2  # each turn is a trace of its own

    spans.clear()
    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:
        assert no_span_current()
        async with session.turn():
            assert trace.get_current_span().name == "turn"  # type: ignore[attr-defined]
        assert no_span_current()
    [session_span] = Spans(spans).named("session")
    assert dict(session_span.attributes or {}) == {
        "session.id": session.session_id,
        "gen_ai.conversation.id": session.session_id,
    }


async def test_without_session_span_a_turn_is_a_child_of_the_current_span(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("tests")
    async with Session([apps_config(server)], hooks=[TraceTurns(session_span=False)]) as session:
        with tracer.start_as_current_span("request") as outer:
            async with session.turn() as turn:
                await turn.call_tool("apps", "echo", {"text": "x"})
    got = Spans(spans)
    [turn_span] = got.named("turn")
    assert hex_parent(turn_span) == format(outer.get_span_context().span_id, "016x")
    assert sent_by(server.requests("tools/call")[0]).trace_id == hex_trace(turn_span)


# -- incoming context -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded", "expected_state"),
    [
        pytest.param({"traceparent": INCOMING, "tracestate": TRACESTATE}, TRACESTATE, id="unchanged"),
        pytest.param(
            [
                ("TraceParent", INCOMING),
                ("tracestate", "rojo=00f067aa0ba902b7"),
                ("TRACESTATE", "congo=t61rcWkgMzE"),
            ],
            TRACESTATE,
            id="repeated-tracestate-merged",
        ),
        pytest.param(
            [("traceparent", INCOMING), ("traceparent", INCOMING)], None, id="identical-traceparents"
        ),
    ],
)
async def test_forwarded_context_is_continued(
    server: RecordingServer,
    other_server: RecordingServer,
    spans: InMemorySpanExporter,
    forwarded: Any,
    expected_state: str | None,
) -> None:
    configs = [apps_config(server), ServerConfig(name="other", url=other_server.url)]
    async with Session(configs, hooks=[TraceTurns()]) as session:
        async with session.turn(forwarded_headers=forwarded) as turn:
            await turn.call_tool("apps", "echo", {"text": "a"})
            await turn.call_tool("other", "echo", {"text": "b"})
    got = Spans(spans)
    [session_span] = got.named("session")
    [turn_span] = got.named("turn")
    assert hex_trace(turn_span) == INCOMING_TRACE
    assert turn_span.parent is not None and turn_span.parent.is_remote
    assert hex_parent(turn_span) == INCOMING_SPAN
    assert [hex_link(link) for link in turn_span.links] == [hex_span(session_span)]
    for record in server.requests("tools/call") + other_server.requests("tools/call"):
        sent = sent_by(record)
        assert sent.trace_id == INCOMING_TRACE
        assert sent.flags == "01"
        assert got.chain(sent.span_id)[:3] == ["MCP send tools/call echo", "execute_tool echo", "turn"]
        assert record.header("tracestate") == expected_state
        assert record.header_values("traceparent") == [record.header("traceparent")]


async def test_parent_session_ignores_forwarded_context(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async with Session([apps_config(server)], hooks=[TraceTurns(parent="session")]) as session:
        async with session.turn(
            forwarded_headers={"traceparent": INCOMING, "tracestate": TRACESTATE}
        ) as turn:
            await turn.call_tool("apps", "echo", {"text": "x"})
    got = Spans(spans)
    [session_span] = got.named("session")
    [turn_span] = got.named("turn")
    assert got.parent_of(turn_span) is session_span
    assert hex_trace(turn_span) != INCOMING_TRACE
    [call] = server.requests("tools/call")
    assert sent_by(call).trace_id == hex_trace(session_span)
    assert call.header("tracestate") is None


MALFORMED = [
    pytest.param([("traceparent", "garbage")], id="garbage"),
    pytest.param([("traceparent", f"ff-{INCOMING_TRACE}-{INCOMING_SPAN}-01")], id="version-ff"),
    pytest.param([("traceparent", f"00-{'0' * 32}-{INCOMING_SPAN}-01")], id="zero-trace-id"),
    pytest.param([("traceparent", f"00-{INCOMING_TRACE}-{'0' * 16}-01")], id="zero-span-id"),
    pytest.param([("traceparent", f"00-{INCOMING_TRACE.upper()}-{INCOMING_SPAN}-01")], id="upper-case"),
    pytest.param([("traceparent", INCOMING + "-extra")], id="v00-with-extra"),
    pytest.param([("traceparent", "00-" + "a" * 600)], id="too-long"),
    pytest.param(
        [("traceparent", INCOMING), ("traceparent", f"00-{'1' * 32}-{'2' * 16}-01")], id="differing-repeats"
    ),
]


@pytest.mark.parametrize("forwarded", MALFORMED)
@pytest.mark.parametrize("session_span", [True, False])
async def test_invalid_incoming_context_starts_a_new_trace(
    server: RecordingServer,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    forwarded: list[tuple[str, str]],
    session_span: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="codex_runtime.tracing")
    forwarded = [*forwarded, ("tracestate", TRACESTATE)]
    hook = TraceTurns(session_span=session_span)
    async with Session([apps_config(server)], hooks=[hook]) as session:
        async with session.turn(forwarded_headers=forwarded) as turn:
            await turn.call_tool("apps", "echo", {"text": "x"})
    assert turn.outcome is not None and turn.outcome.ok
    got = Spans(spans)
    [turn_span] = got.named("turn")
    assert hex_trace(turn_span) != INCOMING_TRACE
    if session_span:
        assert got.parent_of(turn_span) is got.named("session")[0]
    else:
        assert turn_span.parent is None
    [call] = server.requests("tools/call")
    assert sent_by(call).trace_id == hex_trace(turn_span)
    assert call.header("tracestate") is None  # never parsed without a valid traceparent
    debug = [r for r in caplog.records if r.name == "codex_runtime.tracing"]
    assert debug and all(r.levelno == logging.DEBUG for r in debug)
    assert "traceparent" in debug[0].getMessage()


async def test_environment_continues_a_parent_trace(
    server: RecordingServer, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEPARENT", INCOMING)
    monkeypatch.setenv("TRACESTATE", TRACESTATE)
    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "x"})
    got = Spans(spans)
    [session_span] = got.named("session")
    [turn_span] = got.named("turn")
    assert hex_parent(session_span) == INCOMING_SPAN and hex_trace(session_span) == INCOMING_TRACE
    assert got.parent_of(turn_span) is session_span
    [call] = server.requests("tools/call")
    assert sent_by(call).trace_id == INCOMING_TRACE
    assert call.header("tracestate") == TRACESTATE

    spans.clear()
    server.clear()
    async with Session([apps_config(server)], hooks=[TraceTurns(session_span=False)]) as session:
        # Forwarded context, when valid, wins over the environment.
        forwarded = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
        async with session.turn(forwarded_headers=forwarded) as turn:
            await turn.call_tool("apps", "echo", {"text": "y"})
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "z"})
    first, second = Spans(spans).named("turn")
    assert (hex_trace(first), hex_parent(first)) == ("1" * 32, "2" * 16)
    assert (hex_trace(second), hex_parent(second)) == (INCOMING_TRACE, INCOMING_SPAN)


# -- baggage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_baggage_is_opt_in_and_for_apps_servers_only(
    server: RecordingServer, other_server: RecordingServer, spans: InMemorySpanExporter, protocol: str
) -> None:
    configs = [apps_config(server, protocol=protocol), ServerConfig(name="other", url=other_server.url)]
    async with Session(configs, hooks=[TraceTurns()]) as session:
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "off"})
            await turn.call_tool("other", "echo", {"text": "off"})
    for record in server.requests() + other_server.requests():
        assert record.header("baggage") is None and "baggage" not in record.meta

    server.clear()
    other_server.clear()
    async with Session(configs, hooks=[TraceTurns(baggage=True)], session_id="s/1 é") as session:
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "on"})
            await turn.call_tool("other", "echo", {"text": "on"})
        assert session.clients["apps"].turn_entry_ids() == frozenset()
        await session.clients["apps"].call_tool("echo", {"text": "after"})
    expected = f"session.id=s%2F1+%C3%A9,turn.id={turn.id}"
    [call, after] = server.requests("tools/call")
    assert call.header("baggage") == expected
    assert call.meta["baggage"] == expected
    assert after.header("baggage") is None and "baggage" not in after.meta
    for record in other_server.requests():
        assert record.header("baggage") is None and "baggage" not in record.meta
    # Baggage never enters the OpenTelemetry context: the traceparent is still the span's.
    assert sent_by(call).span_id in Spans(spans).by_id


async def test_server_added_mid_turn_gets_baggage(
    server: RecordingServer, other_server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async with Session(
        [ServerConfig(name="plain", url=server.url)], hooks=[TraceTurns(baggage=True)]
    ) as session:
        async with session.turn() as turn:
            await session.add_server(ServerConfig(name="apps", url=other_server.url, apps=True))
            await turn.call_tool("apps", "echo", {"text": "late"})
            await turn.call_tool("plain", "echo", {"text": "plain"})
    [late] = other_server.requests("tools/call")
    assert late.header("baggage") == f"session.id={session.session_id},turn.id={turn.id}"
    [plain] = server.requests("tools/call")
    assert plain.header("baggage") is None
    [turn_span] = Spans(spans).named("turn")
    assert sent_by(late).trace_id == hex_trace(turn_span)


# -- isolation ----------------------------------------------------------------------------


async def test_two_concurrent_sessions_make_two_separate_traces(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    hook = TraceTurns()  # one hook instance serving both sessions
    turns: dict[str, list[Turn]] = {"a": [], "b": []}
    async with McpClient(apps_config(server)) as shared:

        async def run(label: str) -> None:
            async with Session(clients=[shared], hooks=[hook], session_id=f"session-{label}") as session:
                for index in range(2):
                    async with session.turn() as turn, anyio.create_task_group() as tg:
                        turns[label].append(turn)
                        for i in range(4):
                            tg.start_soon(turn.call_tool, "apps", "echo", {"text": f"{label}-{index}-{i}"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a")
            tg.start_soon(run, "b")

    got = Spans(spans)
    sessions = {dict(s.attributes or {})["session.id"]: s for s in got.named("session")}
    assert set(sessions) == {"session-a", "session-b"}
    trace_of = {label: hex_trace(sessions[f"session-{label}"]) for label in ("a", "b")}
    assert trace_of["a"] != trace_of["b"]
    turn_spans = {dict(s.attributes or {})["turn.id"]: s for s in got.named("turn")}
    for label, label_turns in turns.items():
        for turn in label_turns:
            span = turn_spans[turn.id]
            assert got.parent_of(span) is sessions[f"session-{label}"]
    calls = server.requests("tools/call")
    assert len(calls) == 16
    for call in calls:
        label, index, _ = call.arguments["text"].split("-")
        sent = sent_by(call)
        assert sent.trace_id == trace_of[label]
        chain = got.chain(sent.span_id)
        assert chain == ["MCP send tools/call echo", "execute_tool echo", "turn", "session"]
        turn_span = got.parent_of(got.parent_of(got.by_id[sent.span_id]))
        assert dict(turn_span.attributes or {})["turn.id"] == turns[label][int(index)].id
    # Every span of a session's trace belongs to that session's turns (or the server's).
    for label in ("a", "b"):
        for span in got.all:
            if hex_trace(span) == trace_of[label] and span.name == "turn":
                assert dict(span.attributes or {})["session.id"] == f"session-{label}"


# -- helpers of the module ---------------------------------------------------------------------


def test_context_from_headers_and_parse_traceparent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert context_from_headers({}) is None
    assert context_from_headers({"tracestate": TRACESTATE}) is None
    context = context_from_headers([("traceparent", INCOMING), ("tracestate", "a=1"), ("tracestate", "b=2")])
    assert context is not None
    span_context = trace.get_current_span(context).get_span_context()
    assert span_context.is_remote and format(span_context.trace_id, "032x") == INCOMING_TRACE
    assert span_context.trace_state.to_header() == "a=1,b=2"
    # An invalid tracestate is dropped (logged at debug only), never the traceparent.
    for bad in ("not a member", "a=1,a=2", ",".join(f"k{i}=v" for i in range(33)), "UPPER=1"):
        caplog.clear()
        context = context_from_headers([("traceparent", INCOMING), ("tracestate", bad)])
        assert context is not None
        assert trace.get_current_span(context).get_span_context().trace_state.to_header() == ""
        assert [r.levelno for r in caplog.records] == [logging.DEBUG], bad
    context = context_from_headers([("traceparent", INCOMING), ("tracestate", "t@sys=v, ,x=y z")])
    assert context is not None
    assert trace.get_current_span(context).get_span_context().trace_state.to_header() == "t@sys=v,x=y z"
    # Baggage is never read from the caller.
    context = context_from_headers({"traceparent": INCOMING, "baggage": "user=alice"})
    assert context is not None and "baggage" not in json.dumps(sorted(str(k) for k in context))

    parsed = parse_traceparent(INCOMING)
    assert parsed == TraceParent("00", INCOMING_TRACE, INCOMING_SPAN, "01")
    assert parsed is not None and parsed.sampled and str(parsed) == INCOMING
    assert parse_traceparent(None) is None
    assert parse_traceparent("00-xyz") is None


def test_context_from_environ() -> None:
    assert context_from_environ({}) is None
    assert context_from_environ({"TRACEPARENT": "nonsense"}) is None
    assert context_from_environ({"TRACEPARENT": "caf\u00e9"}) is None
    context = context_from_environ({"TRACEPARENT": INCOMING, "TRACESTATE": TRACESTATE})
    assert context is not None
    span_context = trace.get_current_span(context).get_span_context()
    assert format(span_context.span_id, "016x") == INCOMING_SPAN
    assert span_context.trace_state.to_header() == TRACESTATE


def test_trace_turns_arguments() -> None:
    with pytest.raises(ValueError, match="parent"):
        TraceTurns(parent="forwarded")  # type: ignore[arg-type]
    assert repr(TraceTurns()) == "TraceTurns(parent='auto', session_span=True, baggage=False)"


async def test_an_end_without_a_start_is_a_no_op(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async with Session([apps_config(server)]) as session:
        async with session.turn() as turn:
            pass
    assert turn.outcome is not None
    await TraceTurns().on_turn_end(turn, turn.outcome)
    await TraceTurns().on_session_end(session)
    assert Spans(spans).named("turn") == []
    assert no_span_current()


async def test_format_span_tree_shows_parents_and_children(
    server: RecordingServer, spans: InMemorySpanExporter
) -> None:
    async with Session([apps_config(server)], hooks=[TraceTurns()]) as session:
        async with session.turn(forwarded_headers={"traceparent": INCOMING}) as turn:
            await turn.call_tool("apps", "echo", {"text": "x"})
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "y"})
    got = Spans(spans)
    text = format_span_tree(got.all, trace_ids=[INCOMING_TRACE])
    lines = text.splitlines()
    assert lines[0] == f"trace {INCOMING_TRACE}"
    names = [line.lstrip("│├└─ ").split("  ")[0] for line in lines[1:]]
    assert names == ["turn", "execute_tool echo", "MCP send tools/call echo", "tools/call echo"]
    depth = [len(line) - len(line.lstrip("│├└─ ")) for line in lines[1:]]
    assert depth == sorted(depth) and len(set(depth)) == 4
    assert f"(parent {INCOMING_SPAN}, remote)" in lines[1]
    assert "turn.index=1" in lines[1] and "[client]" in lines[3] and "[server]" in lines[4]
    whole = format_span_tree(got.all)
    session_trace = hex_trace(got.named("session")[0])
    block = whole.split(f"trace {session_trace}\n")[1].split("\n\n")[0].splitlines()
    assert block[0].startswith("└─ session") and block[1].startswith("   └─ turn")
    assert "turn.index=2" in block[1]
    assert format_span_tree([]) == ""


def test_install_memory_exporter_uses_the_installed_sdk_provider() -> None:
    exporter = install_memory_exporter()
    try:
        with trace.get_tracer("tests").start_as_current_span("probe"):
            pass
        assert [s.name for s in exporter.get_finished_spans()] == ["probe"]
    finally:
        exporter.shutdown()


# -- without the SDK ---------------------------------------------------------------------------


_NO_SDK = textwrap.dedent(
    """
    import sys
    sys.modules["opentelemetry.sdk"] = None  # as if only opentelemetry-api were installed
    import json, anyio
    from opentelemetry import trace
    from codex_runtime.client import ServerConfig
    from codex_runtime.session import Session
    from codex_runtime.testing import RecordingServer
    from codex_runtime.tracing import TraceTurns, TracingUnavailableError, install_memory_exporter

    async def main():
        async with RecordingServer("apps") as server:
            config = ServerConfig(name="apps", url=server.url, apps=True)
            hooks = [TraceTurns(baggage=True)]
            async with Session([config], hooks=hooks) as session:
                forwarded = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
                async with session.turn(forwarded_headers=forwarded) as turn:
                    result = await turn.call_tool("apps", "echo", {"text": "no sdk"})
                async with session.turn() as turn2:
                    await turn2.call_tool("apps", "echo", {"text": "again"})
                    with trace.get_tracer("t").start_as_current_span("x"):
                        pass
            [call, call2] = server.requests("tools/call")
        try:
            install_memory_exporter()
            error = None
        except TracingUnavailableError as exc:
            error = str(exc)
        print(json.dumps({
            "ok": turn.outcome.ok and turn2.outcome.ok and not result.is_error,
            "http_traceparent": call.header("traceparent"),
            "meta_traceparent": call.meta.get("traceparent"),
            "second": [call2.header("traceparent"), call2.meta.get("traceparent")],
            "baggage": call.header("baggage"),
            "error": error,
        }))

    anyio.run(main, backend=sys.argv[1])
    """
)


def test_without_the_sdk_everything_is_a_no_op(anyio_backend: str, tmp_path: Path) -> None:
    script = tmp_path / "no_sdk.py"
    script.write_text(_NO_SDK)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("TRACEPARENT", None)
    proc = subprocess.run(
        [sys.executable, str(script), anyio_backend], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "rror" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["ok"] is True
    # Without an SDK the API's spans are non-recording and carry their parent's context:
    # a forwarded context passes through unchanged, on HTTP and in `_meta` alike...
    assert report["http_traceparent"] == report["meta_traceparent"] == INCOMING
    # ...and with no context at all, nothing is injected.
    assert report["second"] == [None, None]
    assert report["baggage"] is not None and report["baggage"].startswith("session.id=")
    assert report["error"] is not None and "pip install 'codex-runtime[otel]'" in report["error"]

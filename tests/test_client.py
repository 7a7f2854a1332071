"""Tests of `codex_runtime.client.McpClient`, asserting on what real servers received.

Every test runs on asyncio and trio against a `RecordingServer` over real HTTP on
loopback (or a stdio server where stated).
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from codex_runtime.client import (
    McpClient,
    ServerConfig,
    ServerUnavailableError,
    ToolCallError,
    ToolTimeoutError,
    bind_turn,
    request_headers,
)
from codex_runtime.headers import Headers, InvalidHeaderError
from codex_runtime.testing import (
    RecordedRequest,
    RecordingServer,
    StdioRecording,
    SubprocessRecordingServer,
    stdio_server_config,
)

pytestmark = pytest.mark.anyio

PROTOCOLS = pytest.mark.parametrize("protocol", ["auto", "legacy"])


def config_for(server: RecordingServer | SubprocessRecordingServer, **options: Any) -> ServerConfig:
    return ServerConfig(name=server.name, url=server.url, **options)


def calls_by_text(server: RecordingServer) -> dict[str, RecordedRequest]:
    """Recorded ``tools/call`` requests keyed by their ``text`` argument (each text used once)."""
    calls = server.requests("tools/call")
    by_text = {call.arguments.get("text"): call for call in calls}
    assert len(by_text) == len(calls), "a text argument was used twice"
    return by_text


def is_request(record: RecordedRequest) -> bool:
    """A JSON-RPC request (not a notification, a response, GET or DELETE)."""
    return isinstance(record.body, dict) and "id" in record.body and record.method is not None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- header layers ---------------------------------------------------------------------------


@PROTOCOLS
async def test_each_layer_arrives_and_higher_layers_win(server: RecordingServer, protocol: str) -> None:
    static = {"x-static": "static", "x-a": "static", "x-b": "static", "x-c": "static", "x-d": "static"}
    async with McpClient(config_for(server, protocol=protocol, headers=static)) as client:
        client.set_turn_headers("turn-1", {"x-turn": "turn", "x-b": "turn", "x-c": "turn", "x-d": "turn"})
        await client.call_tool("echo", {"text": "static only"})
        with bind_turn("turn-1"):
            await client.call_tool("echo", {"text": "turn"})
            with request_headers({"x-scoped": "scoped", "x-c": "scoped", "x-d": "scoped"}):
                await client.call_tool(
                    "echo", {"text": "call"}, headers={"x-explicit": "explicit", "x-d": "explicit"}
                )

    got = calls_by_text(server)
    assert got["static only"].header("x-static") == "static"
    assert got["static only"].header("x-b") == "static"
    assert got["static only"].header("x-turn") is None

    assert got["turn"].header("x-static") == "static"
    assert got["turn"].header("x-a") == "static"
    assert got["turn"].header("x-b") == "turn"
    assert got["turn"].header("x-turn") == "turn"
    assert got["turn"].header("x-scoped") is None

    call = got["call"]
    assert call.header("x-static") == "static"
    assert call.header("x-a") == "static"
    assert call.header("x-b") == "turn"
    assert call.header("x-c") == "scoped"
    assert call.header("x-d") == "explicit"  # call_tool(headers=) over request_headers
    assert call.header("x-turn") == "turn"
    assert call.header("x-scoped") == "scoped"
    assert call.header("x-explicit") == "explicit"
    for name in ("x-a", "x-b", "x-c", "x-d"):
        assert call.header_values(name) == [call.header(name)], f"{name} sent more than once"
    # The tool itself saw what the HTTP layer recorded.
    [tool_call] = [c for c in server.tool_calls("echo") if c.arguments["text"] == "call"]
    assert tool_call.headers["x-d"] == "explicit"


async def test_call_headers_stay_in_their_block(server: RecordingServer) -> None:
    async with McpClient(config_for(server)) as client:
        with request_headers({"x-scoped": "1"}):
            with request_headers({"x-scoped": "2", "x-inner": "yes"}):
                await client.call_tool("echo", {"text": "inner"})
            await client.call_tool("echo", {"text": "outer"})
        await client.call_tool("echo", {"text": "after"}, headers=Headers({"x-once": "1"}))
        await client.call_tool("echo", {"text": "after again"})
    got = calls_by_text(server)
    assert got["inner"].header("x-scoped") == "2"
    assert got["inner"].header("x-inner") == "yes"
    assert got["outer"].header("x-scoped") == "1"
    assert got["outer"].header("x-inner") is None
    assert got["after"].header("x-scoped") is None
    assert got["after"].header("x-once") == "1"
    assert got["after again"].header("x-once") is None


async def test_turn_header_values_may_be_callables_read_at_send_time(server: RecordingServer) -> None:
    metadata = {"model": "gpt-a"}
    async with McpClient(config_for(server)) as client:
        client.set_turn_headers("t", {"x-model": lambda: metadata["model"], "x-fixed": "f"})
        with bind_turn("t"):
            await client.call_tool("echo", {"text": "first"})
            metadata["model"] = "gpt-b"
            await client.call_tool("echo", {"text": "second"})
    got = calls_by_text(server)
    assert got["first"].header("x-model") == "gpt-a"
    assert got["second"].header("x-model") == "gpt-b"
    assert got["second"].header("x-fixed") == "f"


async def test_set_turn_headers_merges_and_clear_removes_the_entry(server: RecordingServer) -> None:
    async with McpClient(config_for(server)) as client:
        client.set_turn_headers("t", {"x-one": "1", "x-shared": "first"})
        client.set_turn_headers("t", {"x-two": "2", "x-shared": "second"})
        assert client.turn_entry_ids() == frozenset({"t"})
        with bind_turn("t"):
            await client.call_tool("echo", {"text": "merged"})
            client.clear_turn_headers("t")
            client.clear_turn_headers("t")  # idempotent
            await client.call_tool("echo", {"text": "cleared"})
        assert client.turn_entry_ids() == frozenset()
    got = calls_by_text(server)
    assert (got["merged"].header("x-one"), got["merged"].header("x-two")) == ("1", "2")
    assert got["merged"].header("x-shared") == "second"
    assert got["cleared"].header("x-one") is None
    assert got["cleared"].header("x-shared") is None


# -- protocol eras ---------------------------------------------------------------------------


async def test_auto_protocol_is_stateless(server: RecordingServer) -> None:
    async with McpClient(config_for(server, protocol="auto")) as client:
        assert client.protocol_version == "2026-07-28"
        assert client.connected
        await client.call_tool("echo", {"text": "x"})
    assert not client.connected
    records = server.requests()
    assert {r.http_method for r in records} == {"POST"}
    assert "initialize" not in [r.method for r in records]
    assert all(r.header("mcp-session-id") is None for r in records)
    [call] = server.requests("tools/call")
    assert call.header("mcp-protocol-version") == "2026-07-28"


async def test_legacy_protocol_uses_a_session(server: RecordingServer) -> None:
    async with McpClient(config_for(server, protocol="legacy")) as client:
        assert client.protocol_version == "2025-11-25"
        await client.call_tool("echo", {"text": "x"})
        await server.wait_for(lambda s: bool(s.requests("GET")))
    posts = server.requests("POST")
    assert posts[0].method == "initialize"
    assert posts[0].header("mcp-session-id") is None
    [call] = server.requests("tools/call")
    session_id = call.header("mcp-session-id")
    assert session_id
    assert [r.header("mcp-session-id") for r in server.requests("GET")] == [session_id]
    assert [r.header("mcp-session-id") for r in server.requests("DELETE")] == [session_id]


# -- turn isolation --------------------------------------------------------------------------


async def test_turn_entries_travel_only_on_tool_calls_sent_inside_the_turn(server: RecordingServer) -> None:
    client = McpClient(config_for(server, protocol="legacy"))
    client.set_turn_headers("t1", {"x-turn": "t1"}, meta={"turn-meta": "t1"})
    outside_go = anyio.Event()
    outside_done = anyio.Event()

    async def outside_task() -> None:
        # Started before the turn: not part of it, even though it sends during the turn.
        await outside_go.wait()
        await client.call_tool("echo", {"text": "outside task"})
        outside_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(outside_task)
        with bind_turn("t1"):
            async with client:  # connected from inside the turn
                await client.list_tools(refresh=True)
                await client.call_tool("echo", {"text": "inside"})
                async with anyio.create_task_group() as children:
                    children.start_soon(partial(client.call_tool, "echo", {"text": "child"}))
                outside_go.set()
                await outside_done.wait()
                await server.wait_for(lambda s: bool(s.requests("GET")))
                with bind_turn("t2"):
                    await client.call_tool("echo", {"text": "other turn"})
                client.clear_turn_headers("t1")
                await client.call_tool("echo", {"text": "after clear"})
                client.set_turn_headers("t1", {"x-turn": "t1"})
    unbound = McpClient(config_for(server, protocol="legacy"))
    unbound.set_turn_headers("t1", {"x-turn": "t1"})
    async with unbound:  # no turn bound at all
        await unbound.call_tool("echo", {"text": "no turn bound"})

    got = calls_by_text(server)
    for text in ("inside", "child"):
        assert got[text].header("x-turn") == "t1", text
        assert got[text].meta.get("turn-meta") == "t1", text
    for text in ("outside task", "other turn", "after clear", "no turn bound"):
        assert got[text].header("x-turn") is None, text
        assert "turn-meta" not in got[text].meta, text
    others = [r for r in server.requests() if r.method != "tools/call"]
    assert {r.method for r in others} >= {"initialize", "notifications/initialized", "tools/list"}
    assert {r.http_method for r in others} == {"POST", "GET", "DELETE"}
    for record in others:
        assert record.header("x-turn") is None, (record.http_method, record.method)
        assert "turn-meta" not in record.meta, (record.http_method, record.method)


@PROTOCOLS
async def test_two_turns_on_one_client_never_cross(server: RecordingServer, protocol: str) -> None:
    turns = ("turn-a", "turn-b")
    async with McpClient(config_for(server, protocol=protocol)) as client:
        for turn in turns:
            client.set_turn_headers(
                turn,
                {"x-turn-id": turn, "x-turn-lazy": lambda turn=turn: f"{turn}-lazy"},  # type: ignore[misc]
                meta={"turn": turn},
            )

        async def one(turn: str, index: int) -> None:
            with bind_turn(turn):
                await client.call_tool(
                    "echo", {"text": f"{turn}/{index}"}, headers={"x-call": f"{turn}/{index}"}
                )

        async with anyio.create_task_group() as tg:
            for index in range(100):
                for turn in turns:
                    tg.start_soon(one, turn, index)

    calls = server.requests("tools/call")
    assert len(calls) == 200
    crossed = []
    for call in calls:
        text = call.arguments["text"]
        turn = text.split("/")[0]
        seen = (
            call.header("x-turn-id"),
            call.header("x-turn-lazy"),
            call.meta.get("turn"),
            call.header("x-call"),
        )
        if seen != (turn, f"{turn}-lazy", turn, text):
            crossed.append((text, seen))
    assert crossed == []


# -- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", ["meta", "both"])
async def test_headers_delivered_in_meta_extra_headers(server: RecordingServer, delivery: str) -> None:
    config = config_for(server, header_delivery=delivery, headers={"x-static": "s"})
    async with McpClient(config) as client:
        client.set_turn_headers("t", {"X-Turn": "t", "x-shared": "turn"})
        with bind_turn("t"), request_headers({"x-scoped": "sc"}):
            await client.call_tool(
                "echo", {"text": "x"}, headers={"X-Call": "c", "x-shared": "call"}, meta={"other": 1}
            )
        await client.call_tool("echo", {"text": "no layers"})
    got = calls_by_text(server)
    call = got["x"]
    expected = {"x-turn": "t", "x-scoped": "sc", "x-call": "c", "x-shared": "call"}
    assert call.meta["extra_headers"] == expected
    assert call.meta["other"] == 1
    assert call.header("x-static") == "s"  # static headers stay HTTP
    for name, value in expected.items():
        assert call.header(name) == (value if delivery == "both" else None), name
    assert "extra_headers" not in got["no layers"].meta
    [tool_call] = [c for c in server.tool_calls("echo") if c.arguments["text"] == "x"]
    assert tool_call.meta["extra_headers"] == expected


async def test_stdio_carries_every_layer_in_meta(tmp_path: Path) -> None:
    record = tmp_path / "stdio.jsonl"
    config = stdio_server_config("local", record, headers={"x-static": "s", "x-shared": "static"})
    async with McpClient(config) as client:
        client.set_turn_headers("t", {"x-turn": "t", "x-shared": "turn"})
        with bind_turn("t"):
            result = await client.call_tool("echo", {"text": "x"}, headers={"x-call": "c"})
        assert not result.is_error
    recording = StdioRecording(record)
    [call] = recording.requests("tools/call")
    assert call.meta["extra_headers"] == {"x-static": "s", "x-shared": "turn", "x-turn": "t", "x-call": "c"}
    [tool_call] = recording.tool_calls("echo")
    assert tool_call.meta["extra_headers"]["x-call"] == "c"
    assert tool_call.outcome == "ok"


# -- invalid headers -------------------------------------------------------------------------

INVALID_HEADERS = [
    pytest.param({"bad name": "v"}, id="space-in-name"),
    pytest.param({"x:colon": "v"}, id="colon-in-name"),
    pytest.param({"": "v"}, id="empty-name"),
    pytest.param({"x-caf\u00e9": "v"}, id="non-ascii-name"),
    pytest.param({"x-v": "a\rb"}, id="cr-in-value"),
    pytest.param({"x-v": "a\nb"}, id="lf-in-value"),
    pytest.param({"x-v": "a\r\nx-injected: 1"}, id="crlf-injection"),
    pytest.param({"x-v": "a\x00b"}, id="nul-in-value"),
    pytest.param({"x-v": " leading"}, id="leading-space"),
    pytest.param({"x-v": "\u20ac"}, id="non-latin1-value"),
    pytest.param({"x-v": "x" * 9000}, id="value-too-large"),
    pytest.param({f"x-h{i}": "x" * 8000 for i in range(10)}, id="set-too-large"),
    pytest.param({"x-v": 7}, id="value-not-str"),
    *[
        pytest.param({name: "v"}, id=f"protected-{name}")
        for name in (
            "traceparent",
            "tracestate",
            "mcp-session-id",
            "host",
            "Content-Length",
            "mcp-protocol-version",
        )
    ],
]


@pytest.mark.parametrize("bad", INVALID_HEADERS)
async def test_invalid_headers_raise_and_send_nothing(server: RecordingServer, bad: dict[str, Any]) -> None:
    async with McpClient(config_for(server)) as client:
        client.set_turn_headers("t", {"x-turn": "before"})
        with bind_turn("t"):
            with pytest.raises(InvalidHeaderError):
                client.set_turn_headers("t", {"x-turn": "after", **bad})
            with pytest.raises(InvalidHeaderError):
                client.set_turn_headers("t", [("x-turn", "after"), *bad.items()])
            with pytest.raises(InvalidHeaderError):
                await client.call_tool("echo", {"text": "explicit"}, headers=bad)
            with pytest.raises(InvalidHeaderError):
                with request_headers(bad):
                    await client.call_tool("echo", {"text": "scoped"})
            assert server.requests("tools/call") == []
            assert client.turn_entry_ids() == frozenset({"t"})
            await client.call_tool("echo", {"text": "valid"})
    [call] = server.requests("tools/call")
    assert call.header("x-turn") == "before"


async def test_invalid_callable_turn_value_raises_at_call_and_sends_nothing(server: RecordingServer) -> None:
    value = {"v": "ok"}
    async with McpClient(config_for(server)) as client:
        client.set_turn_headers("t", {"x-lazy": lambda: value["v"]})
        with bind_turn("t"):
            value["v"] = "bad\r\nx-injected: 1"
            with pytest.raises(InvalidHeaderError):
                await client.call_tool("echo", {"text": "bad"})
            assert server.requests("tools/call") == []
            value["v"] = "good"
            await client.call_tool("echo", {"text": "good"})
    [call] = server.requests("tools/call")
    assert call.header("x-lazy") == "good"
    assert call.header("x-injected") is None


# -- trace context ---------------------------------------------------------------------------


@PROTOCOLS
async def test_http_traceparent_names_the_same_span_as_meta(
    server: RecordingServer, spans: InMemorySpanExporter, protocol: str
) -> None:
    tracer = trace.get_tracer("tests")
    async with McpClient(config_for(server, protocol=protocol)) as client:
        with tracer.start_as_current_span("turn") as turn_span:
            await client.call_tool("echo", {"text": "first"})
            async with anyio.create_task_group() as tg:
                for index in range(5):
                    tg.start_soon(partial(client.call_tool, "echo", {"text": f"parallel {index}"}))
        await client.list_tools(refresh=True)
        await client.call_tool("echo", {"text": "no span"})

    requests = [r for r in server.requests("POST") if is_request(r)]
    assert {r.method for r in requests} >= {"tools/call", "tools/list"}
    for record in requests:
        assert record.header("traceparent") is not None, record.method
        assert record.header("traceparent") == record.meta.get("traceparent"), record.method

    finished = {format(s.context.span_id, "016x"): s for s in spans.get_finished_spans()}
    turn_trace = format(turn_span.get_span_context().trace_id, "032x")
    turn_id = format(turn_span.get_span_context().span_id, "016x")
    got = calls_by_text(server)
    for text, call in got.items():
        _, trace_id, parent_id, _ = call.header("traceparent").split("-")  # type: ignore[union-attr]
        send_span = finished[parent_id]  # the SDK's "MCP send tools/call" span
        assert send_span.name.startswith("MCP send tools/call"), send_span.name
        assert send_span.parent is not None
        tool_span = finished[format(send_span.parent.span_id, "016x")]
        assert tool_span.name == "execute_tool echo"
        assert tool_span.attributes is not None and tool_span.attributes["gen_ai.tool.name"] == "echo"
        if text == "no span":
            assert trace_id != turn_trace
            assert tool_span.parent is None
        else:
            assert trace_id == turn_trace
            assert tool_span.parent is not None
            assert format(tool_span.parent.span_id, "016x") == turn_id


# -- concurrency -----------------------------------------------------------------------------


@PROTOCOLS
async def test_concurrent_calls_are_not_serialized(server: RecordingServer, protocol: str) -> None:
    key = unique("parallel")
    results: list[str] = []
    async with McpClient(config_for(server, protocol=protocol)) as client:

        async def blocked_call() -> None:
            result = await client.call_tool("block", {"key": key})
            results.append(result.content[0].text)  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(blocked_call)
            # All 20 are running on the server at once; a serializing client never gets here.
            running = await server.wait_for_calls("block", 20, outcome="running")
            assert len(running) == 20
            server.release(key)
    assert results == [f"released {key}"] * 20
    assert [c.outcome for c in server.tool_calls("block")] == ["ok"] * 20
    assert len(server.requests("tools/list")) == 1  # listed once at connect, not per first call


# -- failures --------------------------------------------------------------------------------


@PROTOCOLS
async def test_a_killed_server_fails_only_its_own_client(server: RecordingServer, protocol: str) -> None:
    async with RecordingServer.subprocess("dying") as dying:
        options: dict[str, Any] = {"protocol": protocol, "startup_timeout": 5.0}
        async with (
            McpClient(config_for(dying, **options)) as doomed,
            McpClient(config_for(server, **options)) as ok,
        ):
            errors: list[BaseException] = []

            async def pending_call() -> None:
                try:
                    await doomed.call_tool("sleep", {"seconds": 30})
                except ServerUnavailableError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:  # nothing may escape into it
                tg.start_soon(pending_call)
                await dying.wait_for_calls("sleep", 1)
                await anyio.to_thread.run_sync(dying.kill)
                result = await ok.call_tool("echo", {"text": "during"})
                assert not result.is_error
            assert len(errors) == 1
            assert isinstance(errors[0], ServerUnavailableError)
            assert errors[0].server == "dying"

            for attempt in range(2):  # noticing the death, then reconnecting while it is down
                with pytest.raises(ServerUnavailableError) as info:
                    await doomed.call_tool("echo", {"text": f"down {attempt}"})
                assert info.value.server == "dying"
            assert not (await ok.call_tool("echo", {"text": "still fine"})).is_error

            await anyio.to_thread.run_sync(dying.restart)
            result = await doomed.call_tool("echo", {"text": "back"})
            assert not result.is_error
            assert doomed.connected
    assert [c.arguments["text"] for c in dying.tool_calls("echo")] == ["back"]
    assert set(calls_by_text(server)) == {"during", "still fine"}


@PROTOCOLS
async def test_a_restarted_server_is_answered_by_the_next_call(protocol: str) -> None:
    async with RecordingServer.subprocess("restarting") as restarting:
        async with McpClient(config_for(restarting, protocol=protocol)) as client:
            await client.call_tool("echo", {"text": "before"})
            await anyio.to_thread.run_sync(restarting.restart)
            # Legacy: the old session is gone, so the client re-initializes (once, for all
            # concurrent callers) and resends each call once: the server refused them
            # before running them. 2026-07-28 has no session to lose.
            async with anyio.create_task_group() as tg:
                for index in range(10):
                    tg.start_soon(partial(client.call_tool, "echo", {"text": f"after {index}"}))
    texts = sorted(c.arguments["text"] for c in restarting.tool_calls("echo"))
    assert texts == sorted(["before", *(f"after {index}" for index in range(10))])
    assert all(c.outcome == "ok" for c in restarting.tool_calls("echo"))
    if protocol == "legacy":
        assert len(restarting.requests("initialize")) == 2


async def test_connecting_retries_transient_http_errors(server: RecordingServer) -> None:
    server.fail_next(2, status=503)
    async with McpClient(config_for(server, protocol="legacy")) as client:
        assert client.connected
        await client.call_tool("echo", {"text": "connected"})
    assert [r.method for r in server.requests("POST")][:3] == ["initialize"] * 3


async def test_connecting_does_not_retry_other_http_errors(server: RecordingServer) -> None:
    server.fail_next(1, status=401)
    with pytest.raises(ServerUnavailableError) as info:
        async with McpClient(config_for(server, protocol="legacy")):
            pass
    assert info.value.server == "rec"
    assert [r.method for r in server.requests()] == ["initialize"]


async def test_unreachable_server_raises_server_unavailable() -> None:
    with RecordingServer("gone") as gone:
        url = gone.url
    config = ServerConfig(name="gone", url=url, startup_timeout=3.0)
    with pytest.raises(ServerUnavailableError) as info:
        async with McpClient(config):
            pass
    assert info.value.server == "gone"
    client = McpClient(config)
    with pytest.raises(ServerUnavailableError):
        await client.call_tool("echo")  # never connected


async def test_disabled_tool_is_refused_before_sending(server: RecordingServer) -> None:
    async with McpClient(config_for(server, disabled_tools=["fail"])) as client:
        assert "fail" not in [t.name for t in await client.list_tools()]
        with pytest.raises(ToolCallError) as info:
            await client.call_tool("fail")
        assert (info.value.server, info.value.tool) == ("rec", "fail")
    assert server.requests("tools/call") == []
    async with McpClient(config_for(server, enabled_tools=["echo"])) as client:
        assert [t.name for t in await client.list_tools()] == ["echo"]
        with pytest.raises(ToolCallError):
            await client.call_tool("sleep", {"seconds": 0})
    assert server.requests("tools/call") == []


async def test_tool_failure_is_a_result_not_an_exception(server: RecordingServer) -> None:
    async with McpClient(config_for(server)) as client:
        result = await client.call_tool("fail", {"message": "nope"})
    assert result.is_error
    assert result.content[0].text == "nope"  # type: ignore[union-attr]
    [tool_call] = server.tool_calls("fail")
    assert tool_call.outcome == "error"


@PROTOCOLS
async def test_unknown_tool_raises_tool_call_error(server: RecordingServer, protocol: str) -> None:
    async with McpClient(config_for(server, protocol=protocol)) as client:
        with pytest.raises(ToolCallError) as info:
            await client.call_tool("no-such-tool", {})
        assert info.value.tool == "no-such-tool"
        assert not (await client.call_tool("echo", {"text": "still usable"})).is_error
    assert server.tool_calls("no-such-tool") == []


@PROTOCOLS
async def test_timeout_raises_and_cancels_the_call_on_the_server(
    server: RecordingServer, protocol: str
) -> None:
    async with McpClient(config_for(server, protocol=protocol)) as client:
        with pytest.raises(ToolTimeoutError) as info:
            await client.call_tool("sleep", {"seconds": 30}, timeout=0.5)
        assert isinstance(info.value, ToolCallError)
        assert info.value.tool == "sleep"
        [cancelled] = await server.wait_for_calls("sleep", 1, outcome="cancelled")
        assert cancelled.arguments == {"seconds": 30}
        assert not (await client.call_tool("echo", {"text": "after timeout"})).is_error


async def test_argument_errors_raise_before_sending(server: RecordingServer) -> None:
    async with McpClient(config_for(server)) as client:
        with pytest.raises(ValueError):
            await client.call_tool("echo", {"text": "x"}, timeout=0)
        with pytest.raises(TypeError):
            await client.call_tool("echo", ["not", "a", "mapping"])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.call_tool("echo", {"text": object()})
        with pytest.raises(TypeError):
            await client.call_tool("echo", {"text": "x"}, meta={"k": object()})
        assert server.requests("tools/call") == []
        assert not (await client.call_tool("echo", {"text": "still usable"})).is_error


# -- egress and secrets ----------------------------------------------------------------------

RESERVED_META = {
    "x-codex-turn-metadata": {"turn_id": "t"},
    "X-Codex-Other": "1",
    "codex/thing": 1,
    "_codex_internal": 1,
    "openai/widget": "w",
    "x-openai-session": "s",
}


@pytest.mark.parametrize("apps", [False, True])
async def test_reserved_meta_keys_reach_only_apps_servers(server: RecordingServer, apps: bool) -> None:
    async with McpClient(config_for(server, apps=apps)) as client:
        client.set_turn_headers("t", meta={"codex/turn": "from-turn", "plain-turn": "p"})
        with bind_turn("t"):
            await client.call_tool("echo", {"text": "x"}, meta={**RESERVED_META, "plain": "kept"})
    [call] = server.requests("tools/call")
    assert call.meta["plain"] == "kept"
    assert call.meta["plain-turn"] == "p"
    reserved = {**RESERVED_META, "codex/turn": "from-turn"}
    if apps:
        assert {k: call.meta.get(k) for k in reserved} == reserved
    else:
        assert not set(reserved) & set(call.meta)


async def test_reprs_never_show_secret_values(server: RecordingServer) -> None:
    secret = "sk-" + uuid.uuid4().hex
    config = config_for(
        server, headers={"authorization": f"Bearer {secret}", "x-api-key": secret, "x-plain": "p"}
    )
    headers = Headers({"Authorization": f"Bearer {secret}", "x-tenant": "t"})
    client = McpClient(config)
    for text in (repr(config), str(config), repr(headers), str(headers), repr(client)):
        assert secret not in text
    assert "x-plain" in repr(config)
    async with client:
        assert secret not in repr(client)


@pytest.mark.parametrize("delivery", ["http", "both"])
async def test_log_records_never_contain_secrets(
    server: RecordingServer, caplog: pytest.LogCaptureFixture, delivery: str
) -> None:
    static_secret, turn_secret, call_secret = (uuid.uuid4().hex for _ in range(3))
    config = config_for(
        server,
        protocol="legacy",
        header_delivery=delivery,
        headers={"authorization": f"Bearer {static_secret}"},
    )
    with caplog.at_level(logging.DEBUG):
        async with McpClient(config) as client:
            client.set_turn_headers("t", {"x-api-key": turn_secret})
            with bind_turn("t"):
                await client.call_tool(
                    "sleep", {"seconds": 0}, headers={"authorization": f"Bearer {call_secret}"}
                )
                with pytest.raises(ToolTimeoutError):
                    await client.call_tool("sleep", {"seconds": 5}, timeout=0.05)
    client_records = [r for r in caplog.records if not r.name.startswith(("mcp.server", "uvicorn"))]
    assert client_records, "expected debug records from the client side"
    for record in client_records:
        text = record.getMessage() + repr(record.args) + str(record.exc_info)
        for secret in (static_secret, turn_secret, call_secret):
            assert secret not in text, (record.name, record.getMessage()[:200])
    [call] = [c for c in server.requests("tools/call") if c.arguments == {"seconds": 0}]
    assert call.header("authorization") == f"Bearer {call_secret}"


async def test_a_crashed_stdio_server_is_restarted_by_the_next_call(tmp_path: Path) -> None:
    record = tmp_path / "stdio.jsonl"
    async with McpClient(stdio_server_config("local", record)) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.call_tool("crash")
        assert info.value.server == "local"
        result = await client.call_tool("echo", {"text": "after the crash"})
        assert not result.is_error
    recording = StdioRecording(record)
    handshakes = [r for r in recording.requests() if r.method in ("initialize", "server/discover")]
    assert len(handshakes) == 2  # one per server process
    assert [c.arguments for c in recording.tool_calls("echo")] == [{"text": "after the crash"}]


async def test_clearing_some_turn_headers_keeps_the_others(server: RecordingServer) -> None:
    async with McpClient(config_for(server)) as client:
        client.set_turn_headers("t", {"x-mine": "1", "x-theirs": "2"}, meta={"mine": 1, "theirs": 2})
        client.clear_turn_headers("t", headers=["X-Mine"], meta=["mine"])
        with bind_turn("t"):
            await client.call_tool("echo", {"text": "partial"})
        client.clear_turn_headers("t", headers=["x-theirs"], meta=["theirs"])
        assert client.turn_entry_ids() == frozenset()
        with bind_turn("t"):
            await client.call_tool("echo", {"text": "none"})
    partial, none = server.requests("tools/call")
    assert partial.header("x-mine") is None and partial.header("x-theirs") == "2"
    assert "mine" not in partial.meta and partial.meta["theirs"] == 2
    assert none.header("x-theirs") is None and "theirs" not in none.meta

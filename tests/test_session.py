"""Tests of `Session`, `Turn` and `TurnHeaders` against real loopback MCP servers.

Every test runs on asyncio and trio and asserts on what the servers recorded: an Apps
server (``apps=True``, the shared ``server`` fixture) and a third-party server (``tools``).
Calls are kept in flight with the ``block`` tool, never with sleeps.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from codex_runtime import (
    AbortReason,
    InvalidMetadataError,
    McpClient,
    ServerConfig,
    ServerUnavailableError,
    Session,
    Turn,
    TurnAbortedError,
    TurnHeaders,
    TurnInProgressError,
    TurnOutcome,
    TurnState,
    bind_turn,
)
from codex_runtime.testing import RecordedRequest, RecordingServer, StdioRecording, stdio_server_config

pytestmark = pytest.mark.anyio

PROTOCOLS = pytest.mark.parametrize("protocol", ["auto", "legacy"])
META_KEY = "x-codex-turn-metadata"


@pytest.fixture(scope="module")
def _tools_server() -> Iterator[RecordingServer]:
    with RecordingServer("tools") as server:
        yield server


@pytest.fixture
def tools(_tools_server: RecordingServer) -> Iterator[RecordingServer]:
    """A third-party (not Apps) recording server, emptied for this test."""
    _tools_server.clear()
    yield _tools_server
    _tools_server.release_all()


def apps_config(server: RecordingServer, **options: Any) -> ServerConfig:
    return ServerConfig(name="apps", url=server.url, apps=True, **options)


def tools_config(server: RecordingServer, **options: Any) -> ServerConfig:
    return ServerConfig(name="tools", url=server.url, **options)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def turn_metadata_header(record: RecordedRequest) -> dict[str, Any] | None:
    raw = record.header(META_KEY)
    return None if raw is None else json.loads(raw)


def by_text(server: RecordingServer) -> dict[str, RecordedRequest]:
    calls = server.requests("tools/call")
    got = {str(c.arguments.get("text")): c for c in calls}
    assert len(got) == len(calls), "a text argument was used twice"
    return got


def carries_nothing(record: RecordedRequest) -> bool:
    return (
        record.header("session_id") is None
        and record.header(META_KEY) is None
        and META_KEY not in record.meta
        and "threadId" not in record.meta
    )


class Events:
    """A hook that records the order of start and end calls."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.outcomes: dict[int, TurnOutcome] = {}

    async def on_turn_start(self, turn: Turn) -> None:
        self.log.append(("start", turn.index))

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        await anyio.lowlevel.checkpoint()  # end hooks may await, even when the turn was cancelled
        self.log.append(("end", turn.index))
        self.outcomes[turn.index] = outcome


def block_body(key: str, server: str = "apps") -> Callable[[Turn], Awaitable[None]]:
    async def body(turn: Turn) -> None:
        await turn.call_tool(server, "block", {"key": key})

    return body


# -- wire format ---------------------------------------------------------------------------------


@PROTOCOLS
async def test_apps_tool_call_carries_session_id_and_turn_metadata(
    server: RecordingServer, tools: RecordingServer, protocol: str
) -> None:
    configs = [apps_config(server, protocol=protocol), tools_config(tools, protocol=protocol)]
    async with Session(configs, hooks=[TurnHeaders()], session_id="sess-1") as session:
        async with session.turn(metadata={"model": "gpt-x", "reasoning_effort": "high"}) as turn:
            await turn.call_tool("apps", "echo", {"text": "apps"})
            await turn.call_tool("tools", "echo", {"text": "tools"})
            await session.clients["apps"].list_tools(refresh=True)  # inside the turn, not a tools/call

    [call] = server.requests("tools/call")
    assert call.header("session_id") == "sess-1"
    assert turn.started_at is not None
    assert turn_metadata_header(call) == {
        "session_id": "sess-1",
        "thread_id": "sess-1",
        "turn_id": turn.id,
        "turn_started_at_unix_ms": int(turn.started_at * 1000),
        "model": "gpt-x",
        "reasoning_effort": "high",
    }
    raw = call.header(META_KEY)
    assert raw is not None and ", " not in raw and ": " not in raw  # compact JSON
    assert META_KEY not in call.meta and "threadId" not in call.meta  # mode="headers"

    others = [r for r in server.requests() if r.method != "tools/call"]
    if protocol == "legacy":
        assert {r.method for r in others} >= {"initialize", "notifications/initialized", "tools/list"}
        assert {r.http_method for r in others} == {"POST", "GET", "DELETE"}
    else:
        assert {r.method for r in others} >= {"tools/list"}
    assert [(r.http_method, r.method) for r in others if not carries_nothing(r)] == []
    assert [r.method for r in tools.requests() if not carries_nothing(r)] == []
    assert len(tools.requests("tools/call")) == 1


@pytest.mark.parametrize("mode", ["meta", "both"])
async def test_meta_mode_sends_the_metadata_object_and_thread_id(
    server: RecordingServer, tools: RecordingServer, mode: str
) -> None:
    configs = [apps_config(server), tools_config(tools)]
    async with Session(configs, hooks=[TurnHeaders(mode=mode)], session_id="sess-2") as session:  # type: ignore[arg-type]
        async with session.turn(metadata={"model": "m"}) as turn:
            await turn.call_tool("apps", "echo", {"text": "apps"})
            await turn.call_tool("tools", "echo", {"text": "tools"})

    [call] = server.requests("tools/call")
    assert call.meta["threadId"] == "sess-2"
    metadata = call.meta[META_KEY]
    assert isinstance(metadata, dict)  # an object, not a string
    assert metadata["turn_id"] == turn.id
    assert metadata["session_id"] == metadata["thread_id"] == "sess-2"
    assert metadata["model"] == "m"
    if mode == "both":
        assert call.header("session_id") == "sess-2"
        assert turn_metadata_header(call) == metadata
    else:
        assert call.header("session_id") is None and call.header(META_KEY) is None
    assert all(carries_nothing(r) for r in tools.requests())


async def test_reserved_meta_keys_from_callers_reach_only_apps_servers(
    server: RecordingServer, tools: RecordingServer
) -> None:
    reserved = {"x-codex-turn-metadata": {"turn_id": "forged"}, "codex/x": 1, "openai/y": 2, "keep": 3}
    async with Session([apps_config(server), tools_config(tools)], hooks=[TurnHeaders()]) as session:
        async with session.turn() as turn:
            await turn.call_tool("tools", "echo", {"text": "tools"}, meta=reserved)
            await turn.call_tool("apps", "echo", {"text": "apps"}, meta={"codex/x": 1})
    [third_party] = tools.requests("tools/call")
    assert third_party.meta["keep"] == 3
    assert [k for k in third_party.meta if k.startswith(("x-codex-", "codex/", "openai/"))] == []
    assert carries_nothing(third_party)
    [apps] = server.requests("tools/call")
    assert apps.meta["codex/x"] == 1


async def test_metadata_changed_mid_turn_reaches_later_calls(server: RecordingServer) -> None:
    async with Session([apps_config(server)], hooks=[TurnHeaders(mode="both")]) as session:
        async with session.turn(metadata={"model": "a"}) as turn:
            await turn.call_tool("apps", "echo", {"text": "first"})
            turn.metadata["model"] = "b"
            turn.metadata["step"] = 2
            await turn.call_tool("apps", "echo", {"text": "second"})
    got = by_text(server)
    first, second = turn_metadata_header(got["first"]), turn_metadata_header(got["second"])
    assert first is not None and second is not None
    assert (first["model"], "step" in first) == ("a", False)
    assert (second["model"], second["step"]) == ("b", 2)
    assert got["second"].meta[META_KEY]["model"] == "b"


@pytest.mark.parametrize(
    "metadata",
    [
        {"turn_id": "mine"},
        {"session_id": "other"},
        {f"k{i}": i for i in range(17)},
        {"k" * 65: 1},
        {"big": "v" * 129},
        {"big": ["v" * 62, "w" * 62]},
    ],
    ids=["reserved-turn_id", "reserved-session_id", "17-keys", "long-key", "long-value", "long-json-value"],
)
async def test_metadata_limits_fail_the_turn_at_start(
    server: RecordingServer, metadata: dict[str, Any]
) -> None:
    events = Events()
    ran = False
    async with Session([apps_config(server)], hooks=[events, TurnHeaders()]) as session:
        with pytest.raises(InvalidMetadataError) as info:
            async with session.turn(metadata=metadata):
                ran = True
        assert not ran
        assert turn_failed_with(events, 1, InvalidMetadataError)
        assert session.clients["apps"].turn_entry_ids() == frozenset()
    assert "metadata" in str(info.value)
    assert server.requests("tools/call") == []


def turn_failed_with(events: Events, index: int, error: type[BaseException]) -> bool:
    outcome = events.outcomes[index]
    return outcome.state is TurnState.FAILED and isinstance(outcome.error, error)


async def test_metadata_at_the_limits_is_sent(server: RecordingServer) -> None:
    metadata: dict[str, Any] = {f"k{i}": i for i in range(15)}
    metadata["k" * 64] = "é" * 64  # 128 bytes in UTF-8
    async with Session([apps_config(server)], hooks=[TurnHeaders()]) as session:
        async with session.turn(metadata=metadata) as turn:
            await turn.call_tool("apps", "echo", {"text": "x"})
            turn.metadata["turn_id"] = "forged"  # reserved, added mid-turn
            with pytest.raises(InvalidMetadataError):
                await turn.call_tool("apps", "echo", {"text": "refused"})
    assert turn.outcome is not None and turn.outcome.state is TurnState.COMPLETED
    [call] = server.requests("tools/call")
    sent = turn_metadata_header(call)
    assert sent is not None and sent["k" * 64] == "é" * 64 and sent["turn_id"] == turn.id


# -- entries cleared at every kind of end --------------------------------------------------------


@PROTOCOLS
@pytest.mark.parametrize("end", ["completed", "failed", "interrupted", "replaced", "shutdown"])
async def test_turn_entries_are_cleared_whatever_ends_the_turn(
    server: RecordingServer, protocol: str, end: str
) -> None:
    key = unique("clear")
    events = Events()
    async with McpClient(apps_config(server, protocol=protocol)) as client:
        async with Session(clients=[client], hooks=[TurnHeaders(), events]) as session:
            if end == "completed":
                async with session.turn() as turn:
                    await turn.call_tool("apps", "echo", {"text": "in turn"})
            elif end == "failed":
                with pytest.raises(ValueError, match="body failed"):
                    async with session.turn() as turn:
                        await turn.call_tool("apps", "echo", {"text": "in turn"})
                        raise ValueError("body failed")
            else:
                handle = await session.start_turn(block_body(key))
                turn = handle.turn
                await server.wait_for_calls("block", 1)
                assert client.turn_entry_ids() == {turn.id}
                if end == "interrupted":
                    handle.interrupt()
                    await handle.wait()
                elif end == "replaced":
                    async with session.turn() as next_turn:
                        await next_turn.call_tool("apps", "echo", {"text": "next turn"})
        # The session is closed now (shutdown case: while the turn was running).
        assert client.connected  # a shared client is never closed by the session
        assert client.turn_entry_ids() == frozenset()
        with bind_turn(turn.id):  # even bound to the old turn, nothing is left to send
            await client.call_tool("echo", {"text": "after"})

    expected = {
        "completed": (TurnState.COMPLETED, None),
        "failed": (TurnState.FAILED, None),
        "interrupted": (TurnState.ABORTED, AbortReason.INTERRUPTED),
        "replaced": (TurnState.ABORTED, AbortReason.REPLACED),
        "shutdown": (TurnState.ABORTED, AbortReason.SHUTDOWN),
    }[end]
    outcome = events.outcomes[1]
    assert (outcome.state, outcome.abort_reason) == expected
    assert turn.outcome is outcome or turn.outcome == outcome
    assert ("end", 1) in events.log
    got = by_text(server)
    assert carries_nothing(got["after"])
    if end in ("completed", "failed"):
        assert turn_metadata_header(got["in turn"])["turn_id"] == turn.id  # type: ignore[index]
    else:
        [blocked] = await server.wait_for_calls("block", 1, outcome="cancelled")
        assert blocked.headers["session_id"] == session.session_id
        assert json.loads(blocked.headers[META_KEY])["turn_id"] == turn.id


@PROTOCOLS
async def test_replaced_turn_is_cancelled_on_the_server_and_the_new_turn_has_its_own_id(
    server: RecordingServer, protocol: str
) -> None:
    key = unique("replaced")
    events = Events()
    async with Session([apps_config(server, protocol=protocol)], hooks=[TurnHeaders(), events]) as session:
        first = await session.start_turn(block_body(key))
        await server.wait_for_calls("block", 1, outcome="running")
        async with session.turn() as second:
            # The replaced turn ended (end hooks included) before this one started.
            assert events.log == [("start", 1), ("end", 1), ("start", 2)]
            await second.call_tool("apps", "echo", {"text": "second"})
        outcome = await first.wait()
    assert (outcome.state, outcome.abort_reason) == (TurnState.ABORTED, AbortReason.REPLACED)
    [cancelled] = await server.wait_for_calls("block", 1, outcome="cancelled")
    assert json.loads(cancelled.headers[META_KEY])["turn_id"] == first.turn.id
    if protocol == "legacy":
        assert len(server.requests("notifications/cancelled")) == 1
    [second_call] = server.requests("tools/call")[1:]
    assert turn_metadata_header(second_call)["turn_id"] == second.id != first.turn.id  # type: ignore[index]
    [record] = first.turn.tool_calls
    assert (record.tool, record.ok, record.error) == ("block", False, "aborted")


@PROTOCOLS
async def test_parallel_calls_in_one_turn_overlap_and_carry_the_same_id(
    server: RecordingServer, protocol: str
) -> None:
    key = unique("parallel")
    async with Session([apps_config(server, protocol=protocol)], hooks=[TurnHeaders()]) as session:
        async with session.turn() as turn:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(turn.call_tool, "apps", "block", {"key": key})
                # All 20 run on the server at once: a serializing client never gets here.
                running = await server.wait_for_calls("block", 20, outcome="running")
                server.release(key)
    assert len(running) == 20
    assert [c.outcome for c in server.tool_calls("block")] == ["ok"] * 20
    ids = {turn_metadata_header(r)["turn_id"] for r in server.requests("tools/call")}  # type: ignore[index]
    assert ids == {turn.id}
    assert len(turn.tool_calls) == 20 and all(r.ok for r in turn.tool_calls)


async def test_two_sessions_sharing_an_apps_client_never_cross(server: RecordingServer) -> None:
    async with McpClient(apps_config(server)) as shared:
        sessions = [Session(clients=[shared], hooks=[TurnHeaders()], session_id=f"s{i}") for i in range(2)]
        async with sessions[0] as first, sessions[1] as second:

            async def run(session: Session) -> None:
                for _ in range(5):
                    async with session.turn() as turn:
                        async with anyio.create_task_group() as tg:
                            for i in range(4):
                                text = f"{session.session_id}/{turn.id}/{i}"
                                tg.start_soon(turn.call_tool, "apps", "echo", {"text": text})

            async with anyio.create_task_group() as tg:
                tg.start_soon(run, first)
                tg.start_soon(run, second)
        assert shared.turn_entry_ids() == frozenset()

    calls = server.requests("tools/call")
    assert len(calls) == 40
    crossed = []
    for call in calls:
        session_id, turn_id, _ = call.arguments["text"].split("/")
        metadata = turn_metadata_header(call) or {}
        seen = (call.header("session_id"), metadata.get("session_id"), metadata.get("turn_id"))
        if seen != (session_id, session_id, turn_id):
            crossed.append((call.arguments["text"], seen))
    assert crossed == []


# -- aborts ----------------------------------------------------------------------------------------


async def test_interrupt_cancels_in_flight_calls_and_the_turn_context_exits_quietly(
    server: RecordingServer,
) -> None:
    key = unique("interrupt")
    async with Session([apps_config(server)], hooks=[TurnHeaders()]) as session:
        async with session.turn() as turn:
            async with anyio.create_task_group() as tg:

                async def interrupt_when_running() -> None:
                    await server.wait_for_calls("block", 1, outcome="running")
                    turn.interrupt()
                    turn.interrupt()  # twice: a no-op

                tg.start_soon(interrupt_when_running)
                await turn.call_tool("apps", "block", {"key": key})
            raise AssertionError("not reached: the aborted call raises TurnAbortedError")
        assert turn.outcome is not None
        assert (turn.outcome.state, turn.outcome.abort_reason) == (TurnState.ABORTED, AbortReason.INTERRUPTED)
        with pytest.raises(TurnAbortedError):
            await turn.call_tool("apps", "echo", {"text": "late"})
    await server.wait_for_calls("block", 1, outcome="cancelled")
    assert server.requests("tools/call")[-1].tool_name == "block"


async def test_timeout_aborts_the_turn_and_cancels_its_calls(server: RecordingServer) -> None:
    key = unique("timeout")
    async with Session([apps_config(server)], hooks=[TurnHeaders()]) as session:
        async with session.turn(timeout=0.2) as turn:
            await turn.call_tool("apps", "block", {"key": key})
    assert turn.outcome is not None
    assert (turn.outcome.state, turn.outcome.abort_reason) == (TurnState.ABORTED, AbortReason.TIMEOUT)
    await server.wait_for_calls("block", 1, outcome="cancelled")


async def test_cancelling_the_task_running_the_turn_interrupts_it(server: RecordingServer) -> None:
    key = unique("outer-cancel")
    events = Events()
    turns: list[Turn] = []
    async with Session([apps_config(server)], hooks=[TurnHeaders(), events]) as session:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                async with session.turn() as turn:
                    turns.append(turn)
                    await turn.call_tool("apps", "block", {"key": key})

            tg.start_soon(run)
            await server.wait_for_calls("block", 1, outcome="running")
            tg.cancel_scope.cancel()
        assert len(turns) == 1
        assert session.clients["apps"].turn_entry_ids() == frozenset()
        assert session.current_turn is None
    assert (events.outcomes[1].state, events.outcomes[1].abort_reason) == (
        TurnState.ABORTED,
        AbortReason.INTERRUPTED,
    )
    await server.wait_for_calls("block", 1, outcome="cancelled")


async def test_on_busy_reject_raises_while_a_turn_runs(server: RecordingServer) -> None:
    key = unique("reject")
    async with Session([apps_config(server)], on_busy="reject") as session:
        handle = await session.start_turn(block_body(key))
        await server.wait_for_calls("block", 1, outcome="running")
        with pytest.raises(TurnInProgressError, match="on_busy"):
            async with session.turn():
                pass
        with pytest.raises(TurnInProgressError):
            await session.start_turn(block_body(key))
        server.release(key)
        outcome = await handle.wait()
        assert outcome.state is TurnState.COMPLETED
        async with session.turn() as turn:  # free again
            pass
    assert turn.index == 2


# -- sessions ------------------------------------------------------------------------------------


async def test_list_tools_qualifies_names_and_tool_calls_are_recorded(
    server: RecordingServer, tools: RecordingServer
) -> None:
    async with Session([apps_config(server), tools_config(tools)]) as session:
        names = [t.name for t in await session.list_tools()]
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "hi"})
            await turn.call_tool("tools", "fail", {"message": "broken"})
            with pytest.raises(Exception, match="no such server"):
                await turn.call_tool("nowhere", "echo", {})
    assert {"apps__echo", "apps__block", "tools__echo", "tools__fail"} <= set(names)
    assert names == sorted(names, key=lambda n: not n.startswith("apps__"))  # server order kept
    echo, fail = turn.tool_calls  # the call to an unknown server was refused, not made
    assert (echo.server, echo.tool, echo.arguments, echo.ok, echo.error) == (
        "apps",
        "echo",
        {"text": "hi"},
        True,
        None,
    )
    assert (fail.server, fail.ok, fail.is_error, fail.error) == ("tools", False, True, "tool error: broken")
    for record in turn.tool_calls:
        assert turn.started_at is not None and turn.ended_at is not None
        assert turn.started_at <= record.started_at <= record.ended_at <= turn.ended_at
        assert record.duration == record.ended_at - record.started_at


async def test_an_optional_server_failing_to_start_is_reported(server: RecordingServer) -> None:
    broken = ServerConfig(name="broken", url="http://127.0.0.1:9/mcp", startup_timeout=0.5)
    async with Session([apps_config(server), broken]) as session:
        assert list(session.clients) == ["apps"]
        assert isinstance(session.startup_errors["broken"], ServerUnavailableError)
        assert "broken" in str(session.startup_errors["broken"])
        async with session.turn() as turn:
            await turn.call_tool("apps", "echo", {"text": "still works"})


async def test_a_required_server_failing_to_start_fails_the_session(server: RecordingServer) -> None:
    broken = ServerConfig(name="broken", url="http://127.0.0.1:9/mcp", startup_timeout=0.5, required=True)
    session = Session([apps_config(server), broken])
    with pytest.raises(ServerUnavailableError, match="required") as info:
        async with session:
            raise AssertionError("not reached")
    assert "broken" in str(info.value) and "required=False" in str(info.value)
    assert session.clients == {}
    with pytest.raises(RuntimeError, match=r"not open|closing"):
        async with session.turn():
            pass


async def test_servers_connect_concurrently(server: RecordingServer) -> None:
    """A server that hangs at connect does not hold up the others."""
    release = anyio.Event()
    hanging: list[int] = []

    async def hang(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            hanging.append(1)
            await release.wait()
            # Then refuse (a 400 is not retried), so that the session need not wait.
            await stream.send(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    slow = ServerConfig(name="slow", url=f"http://127.0.0.1:{port}/mcp", startup_timeout=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hang)

        async def release_once_apps_is_listed() -> None:
            # Reached only if "apps" connects while "slow" (configured first) still hangs.
            await server.wait_for(lambda s: bool(s.requests("tools/list")))
            assert hanging
            release.set()

        tg.start_soon(release_once_apps_is_listed)
        async with Session([slow, apps_config(server)]) as session:
            assert list(session.clients) == ["apps"]
            assert "slow" in session.startup_errors
        tg.cancel_scope.cancel()


async def test_owned_clients_are_closed_and_shared_ones_are_not(server: RecordingServer) -> None:
    async with McpClient(apps_config(server)) as shared:
        async with Session([tools_config(server)], clients=[shared]) as session:
            owned = session.clients["tools"]
            assert list(session.clients) == ["apps", "tools"]
            assert owned.connected and shared.connected
        assert not owned.connected
        assert shared.connected
        await shared.call_tool("echo", {"text": "shared still works"})


async def test_a_server_added_mid_turn_gets_the_turn_entries(
    server: RecordingServer, tools: RecordingServer
) -> None:
    async with Session([tools_config(tools)], hooks=[TurnHeaders()]) as session:
        async with session.turn() as turn:
            client = await session.add_server(apps_config(server))
            await turn.call_tool("apps", "echo", {"text": "added"})
        assert client.turn_entry_ids() == frozenset()
        with pytest.raises(ValueError, match="already"):
            await session.add_server(apps_config(server))
    [call] = server.requests("tools/call")
    assert turn_metadata_header(call)["turn_id"] == turn.id  # type: ignore[index]
    assert all(carries_nothing(r) for r in tools.requests())


async def test_turn_headers_over_stdio(tmp_path: Path) -> None:
    """mode="both" on stdio: the metadata object and threadId in _meta, the "headers"
    part in _meta.extra_headers (stdio has no HTTP headers)."""
    record = tmp_path / "stdio.jsonl"
    config = stdio_server_config("local", record, apps=True)
    async with Session([config], hooks=[TurnHeaders(mode="both")], session_id="sess-stdio") as session:
        async with session.turn(metadata={"model": "m"}) as turn:
            await turn.call_tool("local", "echo", {"text": "over stdio"})
        await session.clients["local"].call_tool("echo", {"text": "after"})
    calls = {c.arguments.get("text"): c for c in StdioRecording(record).requests("tools/call")}
    meta = calls["over stdio"].meta
    assert meta["threadId"] == "sess-stdio"
    assert meta[META_KEY]["turn_id"] == turn.id and meta[META_KEY]["model"] == "m"
    extra = meta.get("extra_headers", {})
    assert extra["session_id"] == "sess-stdio"
    assert json.loads(extra[META_KEY]) == meta[META_KEY]
    after = calls["after"].meta
    assert (
        META_KEY not in after
        and "threadId" not in after
        and "session_id" not in after.get("extra_headers", {})
    )

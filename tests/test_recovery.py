"""Recovery from server faults, as a session sees it: never replay a call that may have run,
restart dead stdio servers within a bounded rate, and end a turn cleanly mid-recovery."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from codex_runtime import (
    AbortReason,
    McpClient,
    ServerConfig,
    ServerUnavailableError,
    Session,
    Turn,
    TurnHeaders,
    TurnState,
)
from codex_runtime import client as client_module
from codex_runtime.testing import RecordingServer, stdio_server_config

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_call_in_flight_when_the_server_dies_is_never_replayed(protocol: str) -> None:
    async with RecordingServer.subprocess("dying") as dying:
        config = ServerConfig(name="dying", url=dying.url, protocol=protocol)  # type: ignore[arg-type]
        async with McpClient(config) as client:
            errors: list[BaseException] = []

            async def in_flight() -> None:
                try:
                    await client.call_tool("sleep", {"seconds": 30})
                except ServerUnavailableError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(in_flight)
                await dying.wait_for_calls("sleep", 1)
                await anyio.to_thread.run_sync(dying.kill)
            assert len(errors) == 1 and isinstance(errors[0], ServerUnavailableError)
            assert "sleep" in str(errors[0])

            await anyio.to_thread.run_sync(dying.restart)
            assert not (await client.call_tool("echo", {"text": "after restart"})).is_error
    # The server ran the interrupted tool once (in the process that died) and never again.
    assert len(dying.tool_calls("sleep")) == 1
    assert [c.arguments["text"] for c in dying.tool_calls("echo")] == ["after restart"]


async def test_stdio_restarts_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "_STDIO_RESTARTS_PER_MINUTE", 2)
    async with McpClient(stdio_server_config("local", tmp_path / "rec.jsonl")) as client:
        with pytest.raises(ServerUnavailableError):
            await client.call_tool("crash")  # start 1 dies
        with pytest.raises(ServerUnavailableError):
            await client.call_tool("crash")  # start 2 (a restart) dies too
        with pytest.raises(ServerUnavailableError) as info:
            await client.call_tool("echo", {"text": "third start refused"})
        assert "times in the last minute" in str(info.value)


async def test_a_turn_aborted_during_recovery_ends_cleanly() -> None:
    server = RecordingServer("apps")
    await anyio.to_thread.run_sync(server.start)
    try:
        config = ServerConfig(name="apps", url=server.url, apps=True, protocol="legacy", startup_timeout=30)
        ends: list[TurnState] = []
        async with Session([config], hooks=[TurnHeaders()]) as session:

            @session.on_turn_end
            async def record_end(turn: Turn, outcome: object) -> None:
                ends.append(turn.state)

            client = session.clients["apps"]
            await client.call_tool("echo", {"text": "warm"})
            # The server restarts (its sessions are gone) and then refuses to initialize for
            # a while: the next call must re-initialize and keeps retrying.
            await anyio.to_thread.run_sync(server.stop)
            server.clear()
            server.fail_next(1000, status=503, method="initialize")
            await anyio.to_thread.run_sync(server.start)

            async def body(turn: Turn) -> None:
                await turn.call_tool("apps", "echo", {"text": "during recovery"})

            handle = await session.start_turn(body)
            await server.wait_for(lambda s: len(s.requests("initialize")) >= 1)
            handle.interrupt()
            outcome = await handle.wait()
            assert outcome.state is TurnState.ABORTED
            assert outcome.abort_reason is AbortReason.INTERRUPTED
            assert ends == [TurnState.ABORTED]
            assert client.turn_entry_ids() == frozenset()
            assert session.current_turn is None

            # Once the server answers again, the client recovers and carries no stale entry.
            server.clear()  # also drops the pending failures
            result = await client.call_tool("echo", {"text": "after"})
            assert not result.is_error
        [after] = server.requests("tools/call")
        assert after.header("session_id") is None
        assert after.header("x-codex-turn-metadata") is None
    finally:
        await anyio.to_thread.run_sync(server.stop)


class _FailingTransport(httpx2.AsyncBaseTransport):
    """Fault injection: the network fails for tool calls whose arguments say so."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if b'"doomed"' in request.content:
            raise httpx2.ConnectError("injected network failure", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_request_that_fails_in_transport_fails_alone(server: RecordingServer, protocol: str) -> None:
    config = ServerConfig(name="rec", url=server.url, protocol=protocol)  # type: ignore[arg-type]
    async with McpClient(config) as client:
        isolating = client._http._transport  # type: ignore[union-attr]
        isolating._inner = _FailingTransport(isolating._inner)
        results: list[object] = []

        async def in_flight() -> None:
            results.append(await client.call_tool("block", {"key": "survivor"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(in_flight)
            await server.wait_for_calls("block", 1)
            with pytest.raises(ServerUnavailableError) as info:
                await client.call_tool("echo", {"text": "doomed"})
            assert "could not be sent" in str(info.value)
            server.release("survivor")
        # The call in flight on the same connection was not failed with it.
        assert len(results) == 1 and not results[0].is_error  # type: ignore[attr-defined]
        assert client.connected
        assert not (await client.call_tool("echo", {"text": "next"})).is_error
    assert [c.arguments["text"] for c in server.tool_calls("echo")] == ["next"]
    assert [c.outcome for c in server.tool_calls("block")] == ["ok"]

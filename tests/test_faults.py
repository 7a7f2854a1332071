"""Faults of servers and transports, as a user meets them: each costs one thing, typed.

A JSON-RPC error that merely mentions a session is the tool's answer, never a reason to
send the call again; a result the SDK cannot read is a `ToolCallError` naming server and
tool, which the agent loop hands to the model like any tool error; a notification whose
POST fails is lost alone, without taking the connection, its session or the calls in
flight with it.
"""

from __future__ import annotations

import os
import shlex
import signal
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from codex_runtime import McpClient, ServerConfig, Session, ToolCallError, TurnState
from codex_runtime.agent import AgentLoop, ModelRequest, ModelResponse, ScriptedModel, ToolCall
from codex_runtime.testing import RecordingServer, StdioRecording, stdio_server_config

pytestmark = pytest.mark.anyio

PROTOCOLS = ["auto", "legacy"]


def _config(server: RecordingServer, protocol: str = "auto", **options: Any) -> ServerConfig:
    return ServerConfig(name="srv", url=server.url, protocol=protocol, **options)  # type: ignore[arg-type]


# -- a tool runs at most once -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_json_rpc_error_naming_a_session_is_not_a_lost_session(
    server: RecordingServer, protocol: str
) -> None:
    async with McpClient(_config(server, protocol)) as client:
        server.clear()
        with pytest.raises(ToolCallError) as raised:
            await client.call_tool("reject", {"code": -32600, "message": "user session 42 is invalid"})
        assert raised.value.code == -32600
        assert "user session 42 is invalid" in str(raised.value)
        assert client.connected
    # The tool ran once, and the client neither resent it nor opened a new session.
    assert [c.outcome for c in server.tool_calls("reject")] == ["error"]
    assert len(server.requests("tools/call")) == 1
    assert server.requests("initialize") == []


async def test_only_a_404_on_a_request_with_a_session_id_re_initializes(server: RecordingServer) -> None:
    async with McpClient(_config(server, "legacy")) as client:
        server.clear()
        server.fail_next(1, status=404, method="tools/call")
        result = await client.call_tool("echo", {"text": "after a lost session"})
        assert not result.is_error
    # The refused request carried the old session id; the server never ran it, so the one
    # resend under a new session is the only run.
    first, second = server.requests("tools/call")
    assert first.header("mcp-session-id") is not None
    assert second.header("mcp-session-id") not in (None, first.header("mcp-session-id"))
    assert len(server.requests("initialize")) == 1
    assert [c.arguments["text"] for c in server.tool_calls("echo")] == ["after a lost session"]


# -- results the SDK cannot read ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "protocol", "reason"),
    [
        ("unstructured", "auto", "structured content"),
        ("unstructured", "legacy", "structured content"),
        ("shapeless", "auto", "resultType"),
    ],
)
async def test_a_result_the_sdk_cannot_read_is_a_tool_call_error(
    server: RecordingServer, tool: str, protocol: str, reason: str
) -> None:
    async with McpClient(_config(server, protocol)) as client:
        server.clear()
        with pytest.raises(ToolCallError) as raised:
            await client.call_tool(tool)
        error = raised.value
        assert (error.server, error.tool) == ("srv", tool)
        assert reason in str(error) and "srv" in str(error) and tool in str(error)
        # The connection is fine: the next call goes through.
        assert not (await client.call_tool("echo", {"text": "next"})).is_error
    assert len(server.tool_calls(tool)) == 1


async def test_the_agent_loop_hands_a_malformed_result_to_the_model(server: RecordingServer) -> None:
    key = f"sibling-{uuid.uuid4().hex[:8]}"

    def answer(request: ModelRequest) -> ModelResponse:
        return ModelResponse(text=" | ".join(m.content or "" for m in request.messages if m.role == "tool"))

    model = ScriptedModel([[ToolCall("srv__unstructured", {}), ToolCall("srv__block", {"key": key})], answer])
    async with Session([_config(server)]) as session:
        server.clear()
        loop = AgentLoop(session, model)
        results: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                results.append(await loop.run_turn("call both"))

            tg.start_soon(run)
            # The malformed result must not cancel its sibling, still in flight.
            await server.wait_for(lambda s: len(s.tool_calls("unstructured")) == 1)
            await server.wait_for_calls("block", 1)
            server.release(key)
    [result] = results
    assert result.outcome.state is TurnState.COMPLETED
    assert [(r.tool, r.is_error) for r in result.tool_calls] == [("unstructured", True), ("block", False)]
    error_text, sibling_text = [m.content or "" for m in model.requests[1].messages if m.role == "tool"]
    assert "unstructured" in error_text and "structured content" in error_text
    assert sibling_text == f"released {key}"
    assert [c.outcome for c in server.tool_calls("block")] == ["ok"]


# -- a failed notification costs only itself -----------------------------------------------------


class _NotificationsFail(httpx2.AsyncBaseTransport):
    """Fault injection: the network fails for every POST of a notification."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, *, bug: bool = False) -> None:
        self.inner = inner
        self.bug = bug
        self.failed: list[str] = []
        self.one_failed = anyio.Event()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.content
        if request.method == "POST" and b'"notifications/' in body and b'"id"' not in body:
            self.failed.append(request.content.decode())
            self.one_failed.set()
            if self.bug:
                raise RuntimeError("injected: not a transport error")
            raise httpx2.ConnectError("injected: connection reset", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_notification_that_cannot_be_sent_costs_only_itself(server: RecordingServer) -> None:
    key = f"survivor-{uuid.uuid4().hex[:8]}"
    async with McpClient(_config(server, "legacy")) as client:
        isolating = client._http._transport  # type: ignore[union-attr]
        faults = _NotificationsFail(isolating._inner)
        isolating._inner = faults
        server.clear()
        results: list[Any] = []

        async def survivor() -> None:
            results.append(await client.call_tool("block", {"key": key}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(survivor)
            await server.wait_for_calls("block", 1)
            with anyio.CancelScope() as cancelled:
                async with anyio.create_task_group() as inner:
                    inner.start_soon(client.call_tool, "sleep", {"seconds": 30})
                    await server.wait_for_calls("sleep", 1)
                    cancelled.cancel()  # the SDK sends notifications/cancelled, whose POST fails
            await faults.one_failed.wait()
            server.release(key)
        assert any("notifications/cancelled" in body for body in faults.failed)
        # The call in flight beside it got its answer, and the connection is still usable.
        assert len(results) == 1 and not results[0].is_error
        assert client.connected
        assert not (await client.call_tool("echo", {"text": "next"})).is_error
    assert [c.arguments["text"] for c in server.tool_calls("echo")] == ["next"]
    assert server.requests("initialize") == []  # same connection, same session


async def test_a_restarted_legacy_server_gets_one_new_session_after_a_lost_cancellation() -> None:
    cancel_sent = anyio.Event()
    server = RecordingServer.subprocess("restarting")

    async def observe(request: httpx2.Request) -> None:
        if b'"notifications/cancelled"' in request.content and not cancel_sent.is_set():
            # The server goes down right as the cancellation leaves: its POST fails.
            await anyio.to_thread.run_sync(server.kill)
            cancel_sent.set()

    async with server:
        config = _config(server, "legacy", startup_timeout=30)
        async with McpClient(config, on_request=observe) as client:
            with anyio.CancelScope() as cancelled:
                async with anyio.create_task_group() as inner:
                    inner.start_soon(client.call_tool, "sleep", {"seconds": 30})
                    await server.wait_for_calls("sleep", 1)
                    cancelled.cancel()
            await cancel_sent.wait()
            await anyio.to_thread.run_sync(server.restart)
            assert client.connected
            first_session = server.requests("initialize")
            results: list[Any] = []

            async def call(text: str) -> None:
                results.append(await client.call_tool("echo", {"text": text}))

            async with anyio.create_task_group() as tg:
                for text in ("a", "b", "c"):
                    tg.start_soon(call, text)
            assert len(results) == 3 and not any(r.is_error for r in results)
            assert client.connected
    # Concurrent callers shared one new session; each call ran once.
    assert len(server.requests("initialize")) == len(first_session) + 1
    assert sorted(c.arguments["text"] for c in server.tool_calls("echo")) == ["a", "b", "c"]


async def test_a_connection_whose_transport_died_says_so_and_the_next_call_reconnects(
    server: RecordingServer,
) -> None:
    async with McpClient(_config(server, "legacy")) as client:
        isolating = client._http._transport  # type: ignore[union-attr]
        # An error that is no transport error still ends the SDK's POST writer for good.
        faults = _NotificationsFail(isolating._inner, bug=True)
        isolating._inner = faults
        server.clear()
        conn_before = client._conn
        with anyio.CancelScope() as cancelled:
            async with anyio.create_task_group() as inner:
                inner.start_soon(client.call_tool, "sleep", {"seconds": 30})
                await server.wait_for_calls("sleep", 1)
                cancelled.cancel()
        await faults.one_failed.wait()
        conn = conn_before
        assert conn is not None
        with anyio.fail_after(10):
            await conn.closed.wait()  # closed by itself, once its transport ended
        assert not client.connected
        isolating._inner = faults.inner
        assert not (await client.call_tool("echo", {"text": "reconnected"})).is_error
        assert client.connected
    assert len(server.requests("initialize")) == 1
    assert [c.arguments["text"] for c in server.tool_calls("echo")] == ["reconnected"]


# -- stdio servers: a dead one is noticed, and closing one is bounded -----------------------------


def _wrapped_stdio(tmp_path: Path, script: str) -> ServerConfig:
    """The stdio recording server started by ``sh -c script`` (``SERVER`` runs it), with the
    shell's pid (the process group of everything it starts) written to ``pid``."""
    base = stdio_server_config("local", tmp_path / "rec.jsonl")
    server = " ".join(shlex.quote(part) for part in (base.command, *base.args))
    return ServerConfig(
        name="local",
        command="sh",
        args=("-c", f"echo $$ > {shlex.quote(str(tmp_path / 'pid'))}; " + script.replace("SERVER", server)),
        env=base.env,
    )


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (an orphan's zombie awaits its reaper)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


async def test_a_stdio_server_that_dies_is_noticed_and_restarted_by_the_next_call(tmp_path: Path) -> None:
    async with McpClient(_wrapped_stdio(tmp_path, "exec SERVER")) as client:
        conn = client._conn
        assert conn is not None and client.connected
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)
        with anyio.fail_after(10):
            await conn.closed.wait()  # closed by itself, without any call failing
        assert not client.connected
        assert not (await client.call_tool("echo", {"text": "restarted"})).is_error
        assert client.connected
    recording = StdioRecording(tmp_path / "rec.jsonl")
    assert len([r for r in recording.requests() if r.method in ("initialize", "server/discover")]) == 2
    assert [c.arguments for c in recording.tool_calls("echo")] == [{"text": "restarted"}]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
async def test_closing_a_stdio_server_ends_its_process_group_even_if_it_ignores_eof_and_sigterm(
    tmp_path: Path,
) -> None:
    # The shell ignores SIGTERM (and so does what it starts), and outlives its stdin.
    config = _wrapped_stdio(tmp_path, "trap '' TERM; SERVER; sleep 600")
    async with McpClient(config) as client:
        assert not (await client.call_tool("echo", {"text": "x"})).is_error
        pgid = int((tmp_path / "pid").read_text())
        assert len(_live_members(pgid)) >= 2  # the shell and the server it started
    # Every member was killed; on a busy machine the last ones may still be on their way out.
    with anyio.fail_after(10):
        while _live_members(pgid):  # noqa: ASYNC110 (no event tells that a process ended)
            await anyio.sleep(0.01)

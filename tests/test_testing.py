"""Tests of `codex_runtime.testing`: the recording servers themselves, driven by the bare SDK."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from codex_runtime.testing import RecordingServer, StdioRecording, stdio_server_config

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def sdk_client(
    url: str, headers: dict[str, str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


async def test_records_method_path_headers_and_body(server: RecordingServer) -> None:
    async with sdk_client(server.url, headers={"X-Test": "Yes"}) as client:
        result = await client.call_tool("echo", {"text": "hi"}, meta={"k": "v"})
    seen = json.loads(result.content[0].text)  # type: ignore[union-attr]
    assert seen["arguments"] == {"text": "hi"}
    assert seen["headers"]["x-test"] == "Yes"
    assert seen["meta"]["k"] == "v"

    [call] = server.requests("tools/call")
    assert (call.server, call.http_method, call.path) == ("rec", "POST", "/mcp")
    assert call.header("X-TEST") == "Yes"  # names are case-insensitive
    assert call.headers["x-test"] == "Yes"
    assert call.header_values("x-test") == ["Yes"]
    assert call.body["jsonrpc"] == "2.0"
    assert call.method == "tools/call"
    assert call.tool_name == "echo"
    assert call.arguments == {"text": "hi"}
    assert call.meta["k"] == "v"
    assert call.time > 0
    assert call in server.requests("POST")
    assert all(r.http_method == "POST" for r in server.requests())


async def test_tool_calls_record_their_outcome(server: RecordingServer) -> None:
    async with sdk_client(server.url) as client:
        await client.call_tool("echo", {"text": "a"})
        failed = await client.call_tool("fail", {"message": "boom"})
        assert failed.is_error
        with anyio.move_on_after(0.2):
            await client.call_tool("sleep", {"seconds": 30})
        await server.wait_for_calls("sleep", 1, outcome="cancelled")

        key = f"outcomes-{uuid.uuid4().hex}"  # the server is shared: keys are released for good
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "block", {"key": key})
            [running] = await server.wait_for_calls("block", 1, outcome="running")
            assert running.ended_at is None
            server.release(key)
    outcomes = {c.tool: c.outcome for c in server.tool_calls()}
    assert outcomes == {"echo": "ok", "fail": "error", "sleep": "cancelled", "block": "ok"}
    [echo] = server.tool_calls("echo")
    assert echo.arguments == {"text": "a"}
    assert echo.ended_at is not None and echo.ended_at >= echo.started_at
    assert len({c.call_id for c in server.tool_calls()}) == 4


async def test_clear_forgets_everything(server: RecordingServer) -> None:
    async with sdk_client(server.url) as client:
        await client.call_tool("echo", {"text": "a"})
    assert server.requests() and server.tool_calls()
    server.clear()
    assert server.requests() == []
    assert server.tool_calls() == []
    with pytest.raises(TimeoutError):
        await server.wait_for(lambda s: bool(s.requests()), timeout=0.05)


async def test_legacy_clients_and_json_responses_are_recorded() -> None:
    async with RecordingServer("json", json_response=True) as server:
        async with sdk_client(server.url, mode="legacy") as client:
            await client.call_tool("echo", {"text": "a"})
    methods = [r.method for r in server.requests("POST")]
    assert methods[:2] == ["initialize", "notifications/initialized"]
    assert "tools/call" in methods
    [delete] = server.requests("DELETE")
    assert delete.header("mcp-session-id")


async def test_subprocess_server_can_be_killed_and_restarted_on_the_same_port() -> None:
    async with RecordingServer.subprocess("child") as child:
        port = child.port
        assert child.running
        async with sdk_client(child.url) as client:
            await client.call_tool("echo", {"text": "first life"})
        await anyio.to_thread.run_sync(child.kill)
        assert not child.running
        async with httpx2.AsyncClient() as http:
            with pytest.raises(httpx2.ConnectError):
                await http.post(child.url, json={})
        await anyio.to_thread.run_sync(child.restart)
        assert child.port == port
        async with sdk_client(child.url) as client:
            await client.call_tool("echo", {"text": "second life"})
        await child.wait_for_calls("echo", 2)
    # Records outlive both processes.
    assert [c.arguments["text"] for c in child.tool_calls("echo")] == ["first life", "second life"]
    child.clear()
    assert child.requests() == []


async def test_stdio_server_records_into_its_file(tmp_path: Path) -> None:
    record = tmp_path / "stdio.jsonl"
    config = stdio_server_config("local", record)
    params = StdioServerParameters(command=config.command, args=list(config.args), env=dict(config.env or {}))
    async with Client(params) as client:
        await client.call_tool("echo", {"text": "over stdio"}, meta={"k": "v"})
    recording = StdioRecording(record)
    [call] = recording.requests("tools/call")
    assert call.http_method == "STDIO"
    assert call.arguments == {"text": "over stdio"}
    assert call.meta["k"] == "v"
    [tool_call] = recording.tool_calls("echo")
    assert (tool_call.server, tool_call.outcome) == ("local", "ok")


async def test_a_synchronous_server_works_inside_either_event_loop() -> None:
    # The app is built on the server's own loop, whatever loop the test runs.
    with RecordingServer("sync") as server:
        async with sdk_client(server.url) as client:
            await client.call_tool("echo", {"text": "a"})
    assert len(server.tool_calls("echo")) == 1


def test_starting_a_server_leaves_logging_configuration_alone() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with RecordingServer("quiet"):
        assert root.handlers == handlers
        assert root.level == level

"""Resources, prompts, completion, ping and server metadata, against real loopback servers.

Every request asserts on what the server received: the header layers (call scope
always, turn scope only for methods in ``turn_header_methods``), the trace context, and
recovery of a lost legacy session.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import anyio
import mcp_types as t
import pytest
from opentelemetry import trace

from codex_runtime import (
    ClientHandlers,
    McpClient,
    McpRequestError,
    ServerConfig,
    ServerRequest,
    Session,
    TurnHeaders,
    request_headers,
)
from codex_runtime.testing import RecordingServer, StdioRecording, stdio_server_config

pytestmark = pytest.mark.anyio

PROTOCOLS = pytest.mark.parametrize("protocol", ["auto", "legacy"])
METHODS = (
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "prompts/list",
    "prompts/get",
    "completion/complete",
)


async def exercise(client: McpClient) -> None:
    """One request of every kind; asserts on the answers."""
    resources = await client.list_resources()
    assert {(str(r.uri), r.name) for r in resources} == {
        ("res://readme", "readme"),
        ("res://data.json", "data"),
    }
    [template] = await client.list_resource_templates()
    assert template.uri_template == "res://items/{item_id}"
    read = await client.read_resource("res://items/42")
    [content] = read.contents
    assert isinstance(content, t.TextResourceContents) and content.text == "item 42"
    [prompt] = await client.list_prompts()
    assert prompt.name == "greet"
    got = await client.get_prompt("greet", {"name": "Ann"})
    [message] = got.messages
    assert isinstance(message.content, t.TextContent) and message.content.text == "Hello, Ann!"
    done = await client.complete(
        t.PromptReference(type="ref/prompt", name="greet"), {"name": "name", "value": "al"}
    )
    assert done.completion.values == ["alice", "alan"]


@PROTOCOLS
async def test_every_request_round_trips(server: RecordingServer, protocol: str) -> None:
    async with McpClient(ServerConfig(name="rec", url=server.url, protocol=protocol)) as client:
        await exercise(client)
        await client.ping()
        assert client.server_info is not None and client.server_info.name == "rec"
        caps = client.server_capabilities
        assert caps is not None and caps.resources is not None and caps.prompts is not None
        assert client.instructions is None
    for method in METHODS:
        assert len(server.requests(method)) == 1, method
    assert server.requests("ping" if protocol == "legacy" else "server/discover")


@PROTOCOLS
async def test_call_headers_and_trace_reach_every_request(server: RecordingServer, protocol: str) -> None:
    async with McpClient(ServerConfig(name="rec", url=server.url, protocol=protocol)) as client:
        server.clear()
        with trace.get_tracer("tests").start_as_current_span("outer") as span:
            with request_headers({"x-tenant": "t1"}):
                await exercise(client)
            await client.read_resource("res://readme", headers={"x-call": "c1"})
        trace_id = format(span.get_span_context().trace_id, "032x")
    for method in METHODS:
        record = server.requests(method)[0]
        assert record.header("x-tenant") == "t1", method
        traceparent = record.header("traceparent")
        assert traceparent is not None and traceparent.split("-")[1] == trace_id, method
        assert record.meta.get("traceparent") == traceparent, method  # header and body agree
    last = server.requests("resources/read")[-1]
    assert (last.header("x-call"), last.header("x-tenant")) == ("c1", None)


@PROTOCOLS
async def test_turn_entries_reach_only_the_configured_methods(
    server: RecordingServer, other_server: RecordingServer, protocol: str
) -> None:
    configs = [
        ServerConfig(name="apps", url=server.url, apps=True, protocol=protocol),
        ServerConfig(
            name="wide",
            url=other_server.url,
            apps=True,
            protocol=protocol,
            turn_header_methods=("tools/call", "resources/read", "prompts/get"),
        ),
    ]
    async with Session(configs, hooks=[TurnHeaders()]) as session:
        async with session.turn() as turn:
            for name in ("apps", "wide"):
                await turn.read_resource(name, "res://readme")
                await turn.get_prompt(name, "greet", {"name": "x"})
                await turn.call_tool(name, "echo", {"text": "x"})
                await session.clients[name].list_resources()
    for method in ("resources/read", "prompts/get", "resources/list"):
        assert [r.header("x-codex-turn-metadata") for r in server.requests(method)] == [None], method
    [call] = server.requests("tools/call")
    assert json.loads(call.header("x-codex-turn-metadata") or "{}")["turn_id"] == turn.id
    for method in ("resources/read", "prompts/get", "tools/call"):
        [record] = other_server.requests(method)
        assert json.loads(record.header("x-codex-turn-metadata") or "{}")["turn_id"] == turn.id, method
        assert record.header("session_id") == session.session_id
    # resources/list is not in the list: it was sent inside the turn, without the entries.
    assert [r.header("x-codex-turn-metadata") for r in other_server.requests("resources/list")] == [None]


async def test_third_party_servers_never_get_turn_entries(server: RecordingServer) -> None:
    cfg = ServerConfig(name="tools", url=server.url, turn_header_methods=("resources/read",))
    async with Session([cfg], hooks=[TurnHeaders()]) as session:
        async with session.turn() as turn:
            await turn.read_resource(
                "tools", "res://readme", meta={"x-codex-turn-metadata": "forged", "k": "v"}
            )
    [record] = server.requests("resources/read")
    assert record.header("x-codex-turn-metadata") is None
    assert "x-codex-turn-metadata" not in record.meta  # reserved keys are stripped for others
    assert record.meta["k"] == "v"


async def test_session_lists_resources_and_prompts_of_every_server(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    configs = [
        ServerConfig(name="a", url=server.url),
        ServerConfig(name="b", url=other_server.url, protocol="legacy"),
    ]
    async with Session(configs) as session:
        resources = await session.list_resources()
        prompts = await session.list_prompts()
    assert sorted((r.server, r.uri) for r in resources) == [
        ("a", "res://data.json"),
        ("a", "res://readme"),
        ("b", "res://data.json"),
        ("b", "res://readme"),
    ]
    assert sorted((p.name, p.server, p.prompt.name) for p in prompts) == [
        ("a__greet", "a", "greet"),
        ("b__greet", "b", "greet"),
    ]


async def test_a_lost_legacy_session_is_recovered_once() -> None:
    with RecordingServer.subprocess("sub") as server:
        cfg = ServerConfig(name="sub", url=server.url, protocol="legacy")
        async with McpClient(cfg) as client:
            await client.list_resources()
            server.restart()  # the server forgot the session
            read = await client.read_resource("res://readme")
            [content] = read.contents
            assert isinstance(content, t.TextResourceContents) and content.text == "readme of sub"
        assert len(server.requests("initialize")) == 2
        # The refused read was resent once on the new session.
        assert len(server.requests("resources/read")) == 2


async def test_legacy_subscription_delivers_updates(server: RecordingServer) -> None:
    updates: list[ServerRequest] = []
    got = anyio.Event()

    async def updated(request: ServerRequest) -> None:
        updates.append(request)
        got.set()

    cfg = ServerConfig(name="rec", url=server.url, protocol="legacy")
    async with McpClient(cfg, handlers=ClientHandlers(resource_updated=updated)) as client:
        await client.subscribe_resource("res://readme", headers={"x-call": "sub"})
        with anyio.fail_after(10):
            await got.wait()
        await client.unsubscribe_resource("res://readme")
    [request] = updates
    assert isinstance(request.params, t.ResourceUpdatedNotificationParams)
    assert (request.server, str(request.params.uri)) == ("rec", "res://readme")
    assert server.subscriptions() == ["res://readme", "-res://readme"]
    [sub] = server.requests("resources/subscribe")
    assert sub.header("x-call") == "sub"


async def test_subscriptions_deliver_updates_in_the_2026_era(server: RecordingServer) -> None:
    updates: list[str] = []
    got = anyio.Event()

    async def updated(request: ServerRequest) -> None:
        updates.append(str(request.params.uri))
        got.set()

    cfg = ServerConfig(name="rec", url=server.url)
    async with McpClient(cfg, handlers=ClientHandlers(resource_updated=updated)) as client:
        assert client.protocol_version == "2026-07-28"
        await client.subscribe_resource("res://readme")
        await client.subscribe_resource("res://data.json")
        await client.call_tool("touch", {"uri": "res://data.json"})
        with anyio.fail_after(10):
            await got.wait()
        await client.unsubscribe_resource("res://data.json")
        await client.unsubscribe_resource("res://readme")
    assert updates == ["res://data.json"]
    # One stream per set of URIs: the second subscription replaced the first stream.
    filters = [
        r.params["notifications"].get("resourceSubscriptions")
        for r in server.requests("subscriptions/listen")
    ]
    assert filters == [["res://readme"], ["res://data.json", "res://readme"], ["res://readme"]]


async def test_stdio_requests_carry_headers_in_meta(tmp_path: Path) -> None:
    record = tmp_path / "stdio.jsonl"
    cfg = stdio_server_config("io", record, headers={"x-static": "s"})
    async with McpClient(cfg) as client:
        await client.read_resource("res://readme", headers={"x-call": "c"})
        await client.get_prompt("greet", {"name": "x"})
        await client.ping()
    recording = StdioRecording(record)
    [read] = recording.requests("resources/read")
    assert read.meta["extra_headers"] == {"x-static": "s", "x-call": "c"}
    [get] = recording.requests("prompts/get")
    assert get.meta["extra_headers"] == {"x-static": "s"}


async def test_errors_are_typed_and_bad_input_sends_nothing(server: RecordingServer) -> None:
    async with McpClient(ServerConfig(name="rec", url=server.url)) as client:
        server.clear()
        with pytest.raises(McpRequestError) as info:
            await client.read_resource("res://missing/" + uuid.uuid4().hex)
        assert info.value.method == "resources/read" and info.value.server == "rec"
        with pytest.raises(McpRequestError):
            await client.get_prompt("no-such-prompt")
        sent = len(server.requests())
        with pytest.raises(TypeError):
            await client.read_resource("")
        with pytest.raises(TypeError):
            await client.get_prompt("greet", {"name": 3})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            await client.complete(t.PromptReference(type="ref/prompt", name="greet"), {"value": "a"})
        with pytest.raises(ValueError):
            await client.list_resources(timeout=-1)
        assert len(server.requests()) == sent


async def test_turn_requests_need_a_running_turn_and_a_known_server(server: RecordingServer) -> None:
    async with Session([ServerConfig(name="rec", url=server.url)]) as session:
        async with session.turn() as turn:
            with pytest.raises(McpRequestError):
                await turn.read_resource("nope", "res://readme")
        from codex_runtime import TurnStateError

        with pytest.raises(TurnStateError):
            await turn.get_prompt("rec", "greet", {"name": "x"})


async def test_closing_a_client_ends_its_subscription_stream(server: RecordingServer) -> None:
    with anyio.fail_after(20):
        async with McpClient(ServerConfig(name="rec", url=server.url)) as client:
            await client.subscribe_resource("res://readme")
    assert len(server.requests("subscriptions/listen")) == 1

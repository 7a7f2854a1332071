"""The app-server: Codex's app-server protocol v2 (subset) over line-delimited JSON-RPC.

The server runs in-process over memory streams (the stdio process is driven by
tests/test_app_server_process.py and the Node example); every message it writes is
validated against Codex's published JSON Schema. Tools run on real loopback MCP servers
and the model is the stand-in provider, streamed.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from app_protocol import Client, ProtocolChecker, protocol_schema, run_server, text
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from codex_runtime import (
    OpenAIResponsesModel,
    ScriptedModel,
    ServerConfig,
    ToolCall,
    TraceTurns,
    Turn,
    TurnHeaders,
    TurnOutcome,
)
from codex_runtime.app_server import AppServer
from codex_runtime.testing import ProviderStub, RecordingServer, StubReply

pytestmark = pytest.mark.anyio

__all__ = ["protocol_schema"]


class EndRecorder:
    """A turn hook recording every turn end it saw (to prove end hooks ran)."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        self.ended.append((turn.id, outcome.state.value))


def _key() -> str:
    return uuid.uuid4().hex[:10]


async def _thread(client: Client) -> str:
    answer = await client.request("thread/start", {})
    thread_id: str = answer["result"]["thread"]["id"]
    return thread_id


async def test_a_turn_streams_items_and_reaches_the_servers_with_turn_headers(
    protocol_schema: Path, server: RecordingServer, provider: ProviderStub, spans: InMemorySpanExporter
) -> None:
    provider.add(
        StubReply.tool_calls(("apps__echo", {"text": "ping"}, "call_1"), text="Checking."),
        StubReply.text("The echo said ping."),
    )
    model = OpenAIResponsesModel(provider.base_url, "stub-model")
    ends = EndRecorder()
    app = AppServer(
        model,
        servers=[ServerConfig(name="apps", url=server.url, apps=True)],
        hooks=lambda: [TurnHeaders(), TraceTurns(), ends],
        model_provider="stub",
    )
    client = Client(ProtocolChecker(protocol_schema))
    async with model, anyio.create_task_group() as tg:
        tg.start_soon(run_server, app, client)
        await client.initialize()
        thread_id = await _thread(client)
        started = await client.notification("thread/started")
        assert started["params"]["thread"]["id"] == thread_id
        answer = await client.request("turn/start", {"threadId": thread_id, "input": text("echo ping")})
        turn_id = answer["result"]["turn"]["id"]
        assert answer["result"]["turn"]["status"] == "inProgress"
        completed = await client.notification("turn/completed", threadId=thread_id)
        assert completed["params"]["turn"]["status"] == "completed"
        read = await client.request("thread/read", {"threadId": thread_id, "includeTurns": True})
        listed = await client.request("thread/list", {})
        resumed = await client.request("thread/resume", {"threadId": thread_id})
        client.close()

    methods = [m.get("method") for m in client.messages if "method" in m]
    turn_part = methods[methods.index("turn/started") :]
    assert turn_part[:3] == ["turn/started", "item/started", "item/completed"]  # the user message
    assert turn_part[-1] == "turn/completed"
    deltas = [m["params"]["delta"] for m in client.messages if m.get("method") == "item/agentMessage/delta"]
    assert "".join(deltas) == "Checking.The echo said ping." and len(deltas) > 2
    items = [m["params"]["item"] for m in client.messages if m.get("method") == "item/completed"]
    assert [i["type"] for i in items] == ["userMessage", "agentMessage", "mcpToolCall", "agentMessage"]
    tool = items[2]
    assert (tool["server"], tool["tool"], tool["status"], tool["arguments"]) == (
        "apps",
        "echo",
        "completed",
        {"text": "ping"},
    )
    assert tool["result"]["content"][0]["type"] == "text"
    assert items[3]["text"] == "The echo said ping."
    # the tool call reached the server inside the turn, with Codex's turn headers
    [call] = server.requests("tools/call")
    metadata = json.loads(call.header("x-codex-turn-metadata") or "{}")
    assert metadata["turn_id"] == turn_id and metadata["thread_id"] == thread_id
    assert call.header("session_id") == thread_id
    # ... and inside the turn's span, as in-process
    [turn_span] = [s for s in spans.get_finished_spans() if (s.attributes or {}).get("turn.id") == turn_id]
    assert turn_span.attributes is not None and turn_span.attributes["turn.id"] == turn_id
    traceparent = call.header("traceparent") or ""
    assert traceparent.split("-")[1] == format(turn_span.context.trace_id, "032x")
    model_call = provider.chat_requests()[0]
    assert (model_call.header("traceparent") or "").split("-")[1] == format(
        turn_span.context.trace_id, "032x"
    )
    assert ends.ended == [(turn_id, "completed")]
    turns = read["result"]["thread"]["turns"]
    assert [t["id"] for t in turns] == [turn_id]
    assert [i["type"] for i in turns[0]["items"]] == [
        "userMessage",
        "agentMessage",
        "mcpToolCall",
        "agentMessage",
    ]
    assert [t["id"] for t in listed["result"]["data"]] == [thread_id]
    assert resumed["result"]["thread"]["turns"][0]["status"] == "completed"
    assert resumed["result"]["modelProvider"] == "stub"
    assert client.checker is not None and client.checker.checked == len(client.messages)


async def test_interrupt_mid_tool_call_and_steer(
    protocol_schema: Path, server: RecordingServer, provider: ProviderStub
) -> None:
    key = _key()
    hold = _key()
    provider.add(
        StubReply.tool_calls(("apps__block", {"key": key}, "call_block")),
        StubReply.text("first answer", hold=hold),
        StubReply.text("answer to the steer"),
    )
    model = OpenAIResponsesModel(provider.base_url, "stub-model")
    ends = EndRecorder()
    app = AppServer(
        model, servers=[ServerConfig(name="apps", url=server.url, apps=True)], hooks=lambda: [ends]
    )
    client = Client(ProtocolChecker(protocol_schema))
    async with model, anyio.create_task_group() as tg:
        tg.start_soon(run_server, app, client)
        await client.initialize()
        thread_id = await _thread(client)
        answer = await client.request("turn/start", {"threadId": thread_id, "input": text("block")})
        turn_id = answer["result"]["turn"]["id"]
        await client.notification("item/started", threadId=thread_id)  # user message
        tool = await client.next(
            lambda m: m.get("method") == "item/started" and m["params"]["item"]["type"] == "mcpToolCall"
        )
        assert tool["params"]["item"]["status"] == "inProgress"
        await server.wait_for_calls("block", 1)
        busy = await client.request("turn/start", {"threadId": thread_id, "input": text("again")})
        assert (
            busy["error"]["code"] == -32600 and "already has a turn in progress" in busy["error"]["message"]
        )
        wrong = await client.request("turn/interrupt", {"threadId": thread_id, "turnId": "nope"})
        assert wrong["error"]["code"] == -32600
        ok = await client.request("turn/interrupt", {"threadId": thread_id, "turnId": turn_id})
        assert ok["result"] == {}
        done = await client.notification("turn/completed", threadId=thread_id)
        assert done["params"]["turn"]["status"] == "interrupted"
        await server.wait_for(lambda s: s.tool_calls("block")[0].outcome == "cancelled")

        # a second turn, steered while the model's answer is held
        answer = await client.request("turn/start", {"threadId": thread_id, "input": text("talk")})
        second = answer["result"]["turn"]["id"]
        await provider.wait_for_requests(2)
        mismatch = await client.request(
            "turn/steer", {"threadId": thread_id, "expectedTurnId": turn_id, "input": text("x")}
        )
        assert mismatch["error"]["code"] == -32600 and "expectedTurnId" in mismatch["error"]["message"]
        steered = await client.request(
            "turn/steer", {"threadId": thread_id, "expectedTurnId": second, "input": text("also this")}
        )
        assert steered["result"] == {"turnId": second}
        provider.release(hold)
        done = await client.notification("turn/completed", threadId=thread_id)
        assert done["params"]["turn"]["status"] == "completed"
        client.close()
    interrupted_items = [
        m["params"]["item"]
        for m in client.messages
        if m.get("method") == "item/completed" and m["params"]["item"]["type"] == "mcpToolCall"
    ]
    assert (
        interrupted_items[0]["status"] == "failed"
        and "interrupted" in interrupted_items[0]["error"]["message"]
    )
    assert ends.ended == [(turn_id, "aborted"), (second, "completed")]
    third = provider.chat_requests()[2]
    users = [i for i in third.input if i.get("role") == "user"]
    assert users[-1]["content"][0]["text"] == "also this"


async def test_a_failed_turn_reports_the_error(protocol_schema: Path, provider: ProviderStub) -> None:
    provider.add(StubReply.error(500, "the provider broke"))
    model = OpenAIResponsesModel(provider.base_url, "stub-model")
    client = Client(ProtocolChecker(protocol_schema))
    async with model, anyio.create_task_group() as tg:
        tg.start_soon(run_server, AppServer(model), client)
        await client.initialize()
        thread_id = await _thread(client)
        await client.request("turn/start", {"threadId": thread_id, "input": text("hi")})
        error = await client.notification("error", threadId=thread_id)
        done = await client.notification("turn/completed", threadId=thread_id)
        client.close()
    turn = done["params"]["turn"]
    assert turn["status"] == "failed" and "the provider broke" in turn["error"]["message"]
    assert turn["error"]["codexErrorInfo"] == {"httpConnectionFailed": {"httpStatusCode": 500}}
    assert error["params"]["willRetry"] is False


async def test_bad_input_gets_typed_errors_and_the_server_goes_on(protocol_schema: Path) -> None:
    model = ScriptedModel(["fine"])
    client = Client(ProtocolChecker(protocol_schema))
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_server, AppServer(model), client)
        before = await client.request("thread/start", {})
        assert before["error"]["code"] == -32600 and "initialize" in before["error"]["message"]
        await client.send_raw("{not json")
        parse = await client.next(lambda m: "error" in m and m["id"] is None)
        assert parse["error"]["code"] == -32700
        await client.send_raw("[1, 2]")
        invalid = await client.next(lambda m: "error" in m and m["id"] is None)
        assert invalid["error"]["code"] == -32600
        await client.initialize()
        again = await client.request("initialize", {"clientInfo": {"name": "x", "version": "1"}})
        assert again["error"]["code"] == -32600 and "Already initialized" in again["error"]["message"]
        unknown = await client.request("thread/fork", {"threadId": "x"})
        assert unknown["error"]["code"] == -32601 and "thread/fork" in unknown["error"]["message"]
        missing = await client.request("turn/start", {"input": text("x")})
        assert missing["error"]["code"] == -32602 and "`threadId`" in missing["error"]["message"]
        thread_id = await _thread(client)
        wrong_type = await client.request("turn/start", {"threadId": thread_id, "input": [{"type": "image"}]})
        assert wrong_type["error"]["code"] == -32602 and "`input[0].type`" in wrong_type["error"]["message"]
        no_text = await client.request("turn/start", {"threadId": thread_id, "input": [{"type": "text"}]})
        assert "`input[0].text`" in no_text["error"]["message"]
        not_object = await client.request("thread/read", [1])
        assert not_object["error"]["code"] == -32602
        no_thread = await client.request("thread/read", {"threadId": "nope"})
        assert no_thread["error"]["code"] == -32600 and "thread not found" in no_thread["error"]["message"]
        steer = await client.request(
            "turn/steer", {"threadId": thread_id, "expectedTurnId": "t", "input": text("x")}
        )
        assert steer["error"]["code"] == -32600 and "no active turn" in steer["error"]["message"]
        # after all that, a turn still runs
        await client.request("turn/start", {"threadId": thread_id, "input": text("hi")})
        done = await client.notification("turn/completed", threadId=thread_id)
        assert done["params"]["turn"]["status"] == "completed"
        client.close()


async def test_a_client_gone_mid_turn_interrupts_it_and_runs_end_hooks(
    protocol_schema: Path, server: RecordingServer
) -> None:
    key = _key()
    model = ScriptedModel([ToolCall("apps__block", {"key": key})])
    ends = EndRecorder()
    app = AppServer(model, servers=[ServerConfig(name="apps", url=server.url)], hooks=lambda: [ends])
    client = Client(ProtocolChecker(protocol_schema))
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server, app, client)
            await client.initialize()
            thread_id = await _thread(client)
            await client.request("turn/start", {"threadId": thread_id, "input": text("block")})
            await server.wait_for_calls("block", 1)
            client.close()  # the client disappears: serve() must end by itself
    assert [state for _, state in ends.ended] == ["aborted"]
    await server.wait_for(lambda s: s.tool_calls("block")[0].outcome == "cancelled")


async def test_threads_run_turns_at_once_and_a_scripted_session_of_100_turns_matches_the_schema(
    protocol_schema: Path, server: RecordingServer
) -> None:
    def step(request: Any) -> Any:
        from codex_runtime import ModelResponse

        last = request.messages[-1]
        if last.role == "user":
            return ModelResponse(tool_calls=(ToolCall("apps__echo", {"text": last.content}),))
        return ModelResponse(text=f"done: {last.content[:40]}")

    class Endless(ScriptedModel):
        async def respond(self, request: Any) -> Any:
            self._steps.append(step)
            return await super().respond(request)

    model = Endless([])
    app = AppServer(model, servers=[ServerConfig(name="apps", url=server.url, apps=True)])
    client = Client(ProtocolChecker(protocol_schema))
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_server, app, client)
        await client.initialize()
        threads = [await _thread(client) for _ in range(4)]
        for round_ in range(25):
            ids = [
                await client.request("turn/start", {"threadId": t, "input": text(f"r{round_}")}, wait=False)
                for t in threads
            ]
            for request_id in ids:
                answer = await client.answer(request_id)
                assert "result" in answer, answer
            for _ in threads:
                done = await client.notification("turn/completed")
                assert done["params"]["turn"]["status"] == "completed"
        client.close()
    completed = [m for m in client.messages if m.get("method") == "turn/completed"]
    assert len(completed) == 100
    assert len(server.requests("tools/call")) == 100
    assert client.checker is not None and client.checker.checked == len(client.messages) > 1000


async def test_an_mcp_elicitation_is_asked_of_the_client(
    protocol_schema: Path, server: RecordingServer
) -> None:
    model = ScriptedModel(
        [
            ToolCall("rec__ask", {"question": "Who?"}),
            ToolCall("rec__ask", {}),
            ToolCall("rec__progress", {"steps": 2}),
            "thanks",
        ]
    )
    app = AppServer(model, servers=[ServerConfig(name="rec", url=server.url)])
    client = Client(ProtocolChecker(protocol_schema))
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_server, app, client)
        await client.initialize()
        thread_id = await _thread(client)
        answer = await client.request("turn/start", {"threadId": thread_id, "input": text("ask me")})
        turn_id = answer["result"]["turn"]["id"]
        asked = await client.next(lambda m: m.get("method") == "mcpServer/elicitation/request")
        params = asked["params"]
        assert (params["threadId"], params["turnId"], params["serverName"], params["mode"]) == (
            thread_id,
            turn_id,
            "rec",
            "form",
        )
        assert "name" in params["requestedSchema"]["properties"]
        await client.send(
            {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": "Ada"}}}
        )
        again = await client.next(lambda m: m.get("method") == "mcpServer/elicitation/request")
        await client.send(
            {"jsonrpc": "2.0", "id": again["id"], "result": {"action": "decline", "content": None}}
        )
        done = await client.notification("turn/completed", threadId=thread_id)
        assert done["params"]["turn"]["status"] == "completed"
        client.close()
    tools = [i for i in done["params"]["turn"]["items"] if i["type"] == "mcpToolCall"]
    outputs = [json.loads(t["result"]["content"][0]["text"]) for t in tools[:2]]
    progress = [m["params"] for m in client.messages if m.get("method") == "item/mcpToolCall/progress"]
    assert len(progress) == 2 and {p["itemId"] for p in progress} == {tools[2]["id"]}
    assert outputs == [{"action": "accept", "data": {"name": "Ada"}}, {"action": "decline", "data": None}]
    # what the server's tool really got back
    assert [c.outcome for c in server.tool_calls("ask")] == ["ok", "ok"]


async def test_threads_are_stored_sessions_resumed_by_a_later_server(
    protocol_schema: Path, tmp_path: Path, server: RecordingServer
) -> None:
    from codex_runtime import SqliteStore

    first_model = ScriptedModel([ToolCall("apps__echo", {"text": "remember me"}), "noted"])
    servers = [ServerConfig(name="apps", url=server.url, apps=True)]
    async with SqliteStore(tmp_path / "threads.db") as store:
        client = Client(ProtocolChecker(protocol_schema))
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server, AppServer(first_model, servers=servers, store=store), client)
            await client.initialize()
            started = await client.request("thread/start", {})
            thread_id = started["result"]["thread"]["id"]
            assert started["result"]["thread"]["ephemeral"] is False
            answer = await client.request("turn/start", {"threadId": thread_id, "input": text("remember me")})
            first_turn = answer["result"]["turn"]["id"]
            await client.notification("turn/completed", threadId=thread_id)
            client.close()

    second_model = ScriptedModel(["I remember"])
    async with SqliteStore(tmp_path / "threads.db") as store:
        client = Client(ProtocolChecker(protocol_schema))
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server, AppServer(second_model, servers=servers, store=store), client)
            await client.initialize()
            listed = await client.request("thread/list", {})
            [entry] = listed["result"]["data"]
            assert (entry["id"], entry["status"], entry["preview"]) == (
                thread_id,
                {"type": "notLoaded"},
                "remember me",
            )
            not_loaded = await client.request("turn/start", {"threadId": thread_id, "input": text("x")})
            assert "thread/resume" in not_loaded["error"]["message"]
            resumed = await client.request("thread/resume", {"threadId": thread_id})
            [turn] = resumed["result"]["thread"]["turns"]
            assert (turn["id"], turn["status"]) == (first_turn, "completed")
            assert [i["type"] for i in turn["items"]] == ["userMessage", "mcpToolCall", "agentMessage"]
            assert turn["items"][1]["status"] == "completed" and turn["items"][2]["text"] == "noted"
            await client.request("turn/start", {"threadId": thread_id, "input": text("what did I say?")})
            await client.notification("turn/completed", threadId=thread_id)
            client.close()
    # the resumed thread's model got the stored conversation back
    [request] = second_model.requests
    assert [m.content for m in request.messages if m.role == "user"] == ["remember me", "what did I say?"]
    metadata = [json.loads(r.header("x-codex-turn-metadata") or "{}") for r in server.requests("tools/call")]
    assert [m["thread_id"] for m in metadata] == [thread_id]

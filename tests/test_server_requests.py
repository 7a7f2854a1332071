"""Requests a server makes of the client (elicitation, sampling, roots, log messages) and
progress, in both protocol eras, against real loopback servers.

Each test asserts on what the server received (its recorded requests and what its tools
got back) and on the `ServerRequest` the handlers were given.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import anyio
import mcp_types as t
import pytest

from codex_runtime import (
    ClientHandlers,
    ConfigError,
    InvalidHeaderError,
    McpClient,
    ServerConfig,
    ServerRequest,
    Session,
    TurnHeaders,
    request_headers,
)
from codex_runtime._testing_features import CONFIRM_STATE
from codex_runtime.testing import RecordingServer, StdioRecording, stdio_server_config

pytestmark = pytest.mark.anyio

PROTOCOLS = pytest.mark.parametrize("protocol", ["auto", "legacy"])
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"


def text_of(result: t.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, t.TextContent)
    return block.text


class Recorder:
    """Handlers that record every `ServerRequest` they get."""

    def __init__(self) -> None:
        self.seen: list[ServerRequest] = []

    async def elicit(self, request: ServerRequest) -> t.ElicitResult:
        self.seen.append(request)
        return t.ElicitResult(action="accept", content={"name": f"answer-{request.tool}"})

    async def sample(self, request: ServerRequest) -> t.CreateMessageResult:
        self.seen.append(request)
        return t.CreateMessageResult(
            role="assistant", content=t.TextContent(type="text", text="sampled"), model="stub-model"
        )

    async def log(self, request: ServerRequest) -> None:
        self.seen.append(request)

    def handlers(self, **extra: Any) -> ClientHandlers:
        return ClientHandlers(
            elicitation=self.elicit,
            sampling=self.sample,
            roots=("file:///repo", t.Root(uri="file:///other", name="other")),  # type: ignore[arg-type]
            **extra,
        )


def advertised(server: RecordingServer) -> dict[str, Any]:
    """The client capabilities the server was told (initialize, or the 2026-07-28 _meta)."""
    [init] = server.requests("initialize") or [None]
    if init is not None:
        caps = init.params.get("capabilities")
        assert isinstance(caps, dict)
        return caps
    [call, *_] = server.requests("tools/call")
    caps = call.meta[CAPABILITIES_KEY]
    assert isinstance(caps, dict)
    return caps


@PROTOCOLS
async def test_only_capabilities_with_a_handler_are_advertised(
    server: RecordingServer, protocol: str
) -> None:
    cfg = ServerConfig(name="rec", url=server.url, protocol=protocol)
    async with McpClient(cfg) as client:
        await client.call_tool("echo", {"text": "x"})
    caps = advertised(server)
    assert not {"elicitation", "sampling", "roots"} & set(caps)

    server.clear()
    async with McpClient(cfg, handlers=ClientHandlers(roots=("file:///repo",))) as client:
        await client.call_tool("echo", {"text": "x"})
    caps = advertised(server)
    assert "roots" in caps
    assert not {"elicitation", "sampling"} & set(caps)

    server.clear()
    async with McpClient(cfg, handlers=Recorder().handlers()) as client:
        await client.call_tool("echo", {"text": "x"})
    assert {"elicitation", "sampling", "roots"} <= set(advertised(server))


@PROTOCOLS
async def test_elicitation_sampling_roots_round_trips_name_the_turn_and_tool(
    server: RecordingServer, protocol: str
) -> None:
    rec = Recorder()
    cfg = ServerConfig(name="rec", url=server.url, protocol=protocol)
    async with Session([cfg], handlers=rec.handlers()) as session:
        async with session.turn() as turn:
            asked = await turn.call_tool("rec", "ask", {"question": "Who?"})
            sampled = await turn.call_tool("rec", "sample", {"prompt": "hi"})
            roots = await turn.call_tool("rec", "roots", {})
    assert json.loads(text_of(asked)) == {"action": "accept", "data": {"name": "answer-ask"}}
    assert json.loads(text_of(sampled)) == {"model": "stub-model", "text": "sampled"}
    assert json.loads(text_of(roots)) == ["file:///repo", "file:///other"]
    [elicit, sample] = rec.seen
    assert (elicit.server, elicit.turn_id, elicit.tool, elicit.method) == (
        "rec",
        turn.id,
        "ask",
        "elicitation/create",
    )
    assert isinstance(elicit.params, t.ElicitRequestFormParams)
    assert elicit.params.message == "Who?"
    assert (sample.turn_id, sample.tool, sample.method) == (turn.id, "sample", "sampling/createMessage")
    assert isinstance(sample.params, t.CreateMessageRequestParams)
    # The tools really ran once each with the client's answers.
    assert [c.outcome for c in server.tool_calls()] == ["ok", "ok", "ok"]
    if protocol == "auto":
        # 2026-07-28: each answer came back in a second tools/call round, not over a session.
        assert [r.tool_name for r in server.requests("tools/call")] == [
            *("ask", "ask", "sample", "sample", "roots", "roots")
        ]


@PROTOCOLS
async def test_concurrent_turns_get_their_own_requests(server: RecordingServer, protocol: str) -> None:
    """Four sessions share one client; each elicitation is tied to the turn that caused it."""
    rec = Recorder()
    cfg = ServerConfig(name="rec", url=server.url, protocol=protocol)
    turns: dict[str, str] = {}
    async with McpClient(cfg, handlers=rec.handlers()) as client:

        async def ask(question: str) -> None:
            async with Session(clients=[client]) as session, session.turn() as turn:
                turns[question] = turn.id
                await turn.call_tool("rec", "ask", {"question": question})

        async with anyio.create_task_group() as tg:
            for index in range(4):
                tg.start_soon(ask, f"q{index}")
    assert len(rec.seen) == 4
    for request in rec.seen:
        assert request.turn_id == turns[request.params.message]
        assert request.tool == "ask"


async def test_request_outside_a_turn_has_no_turn(server: RecordingServer) -> None:
    rec = Recorder()
    async with McpClient(ServerConfig(name="rec", url=server.url), handlers=rec.handlers()) as client:
        await client.call_tool("ask", {})
    [request] = rec.seen
    assert (request.turn_id, request.tool) == (None, "ask")


@PROTOCOLS
async def test_no_handler_gets_a_clean_error_and_the_connection_goes_on(
    server: RecordingServer, protocol: str
) -> None:
    async with McpClient(ServerConfig(name="rec", url=server.url, protocol=protocol)) as client:
        with anyio.fail_after(20):
            try:
                result = await client.call_tool("ask", {})
            except Exception as exc:  # the server decides how its tool fails
                assert type(exc).__module__.startswith("codex_runtime"), exc
            else:
                assert result.is_error
        echoed = await client.call_tool("echo", {"text": "still here"})
    assert json.loads(text_of(echoed))["arguments"] == {"text": "still here"}


@PROTOCOLS
async def test_a_failing_handler_costs_only_its_request(
    server: RecordingServer, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: ServerRequest) -> t.ElicitResult:
        raise RuntimeError("secret-token-123")

    async def wrong(request: ServerRequest) -> Any:
        return "not a result"

    cfg = ServerConfig(name="rec", url=server.url, protocol=protocol)
    for handler in (broken, wrong):
        async with McpClient(cfg, handlers=ClientHandlers(elicitation=handler)) as client:
            try:
                result = await client.call_tool("ask", {})
            except Exception as exc:
                assert "secret-token-123" not in str(exc)
                assert type(exc).__module__.startswith("codex_runtime")
            else:
                assert result.is_error
                assert "secret-token-123" not in text_of(result)
            assert json.loads(text_of(await client.call_tool("echo", {"text": "ok"})))["arguments"]
    # Nothing the handler raised reached the server.
    assert all("secret-token-123" not in json.dumps(r.body) for r in server.requests())


async def test_input_required_request_state_is_echoed_verbatim_and_never_reused(
    server: RecordingServer,
) -> None:
    rec = Recorder()
    async with McpClient(ServerConfig(name="rec", url=server.url), handlers=rec.handlers()) as client:
        assert client.protocol_version == "2026-07-28"
        first = await client.call_tool("confirm", {})
        second = await client.call_tool("confirm", {})
    for result in (first, second):
        body = json.loads(text_of(result))
        assert body["state"] == CONFIRM_STATE  # what the tool got back is what it handed out
        assert body["answer"]["action"] == "accept"
    rounds = server.requests("tools/call")
    assert len(rounds) == 4
    # Each call starts without state; only its own retry carries the state and the answer.
    assert ["requestState" in r.params for r in rounds] == [False, True, False, True]
    assert all("inputResponses" in r.params for r in rounds[1::2])
    # The SDK server seals each state it hands out (a MAC over it and the request), so a
    # state that came back altered would have been refused; each call got its own.
    first_state, second_state = (r.params["requestState"] for r in rounds[1::2])
    assert first_state and second_state and first_state != second_state
    assert [(r.tool, r.turn_id) for r in rec.seen] == [("confirm", None), ("confirm", None)]


@PROTOCOLS
async def test_progress_reaches_sync_and_async_callbacks(server: RecordingServer, protocol: str) -> None:
    cfg = ServerConfig(name="rec", url=server.url, protocol=protocol)
    seen: list[tuple[float, float | None, str | None]] = []
    async_seen: list[float] = []

    async def async_progress(progress: float, total: float | None, message: str | None) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append(progress)

    def broken(progress: float, total: float | None, message: str | None) -> None:
        raise ValueError("boom")

    async with Session([cfg]) as session:
        async with session.turn() as turn:
            result = await turn.call_tool(
                "rec", "progress", {"steps": 3}, on_progress=lambda p, tot, m: seen.append((p, tot, m))
            )
            await session.clients["rec"].call_tool("progress", {"steps": 2}, on_progress=async_progress)
            # A failing callback costs only its own output.
            assert (
                text_of(await turn.call_tool("rec", "progress", {"steps": 1}, on_progress=broken)) == "done 1"
            )
    assert text_of(result) == "done 3"
    assert sorted(seen) == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert sorted(async_seen) == [1.0, 2.0]
    [first, *_] = server.requests("tools/call")
    assert "progressToken" in first.meta  # the server was asked for progress


@PROTOCOLS
async def test_server_log_messages_go_to_python_logging_by_default(
    server: RecordingServer, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    # 2026-07-28 servers log only to requests that opt in (`log_level`).
    handlers = ClientHandlers(log_level="debug")
    cfg = ServerConfig(name="rec", url=server.url, protocol=protocol)
    arrived = anyio.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            arrived.set()

    signal = Signal()
    logging.getLogger("codex_runtime.server.rec").addHandler(signal)
    try:
        with caplog.at_level(logging.DEBUG, logger="codex_runtime.server.rec"):
            async with McpClient(cfg, handlers=handlers) as client:
                await client.call_tool("log", {"message": "disk almost full", "level": "warning"})
                with anyio.fail_after(10):
                    await arrived.wait()  # the notification may trail the result
    finally:
        logging.getLogger("codex_runtime.server.rec").removeHandler(signal)
    [record] = [r for r in caplog.records if r.name == "codex_runtime.server.rec"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "recording: disk almost full"


async def test_a_logging_handler_replaces_python_logging(server: RecordingServer) -> None:
    rec = Recorder()
    got = anyio.Event()

    async def log(request: ServerRequest) -> None:
        await rec.log(request)
        got.set()

    handlers = ClientHandlers(logging=log, log_level="info")
    async with Session([ServerConfig(name="rec", url=server.url)], handlers=handlers) as session:
        async with session.turn() as turn:
            await turn.call_tool("rec", "log", {"message": "m1"})
            with anyio.fail_after(10):
                await got.wait()
    [request] = rec.seen
    assert isinstance(request.params, t.LoggingMessageNotificationParams)
    assert (request.params.data, request.turn_id, request.tool) == ("m1", turn.id, "log")


def running(recording: StdioRecording) -> bool:
    return any(c.outcome == "running" for c in recording.tool_calls("block"))


async def test_stdio_ties_a_request_only_to_the_only_call_in_flight(tmp_path: Path) -> None:
    rec = Recorder()
    record = tmp_path / "stdio.jsonl"
    cfg = stdio_server_config("io", record, protocol="legacy")
    key = uuid.uuid4().hex
    async with Session([cfg], handlers=rec.handlers()) as session:
        async with session.turn() as turn:
            await turn.call_tool("io", "ask", {})
            assert (rec.seen[-1].turn_id, rec.seen[-1].tool) == (turn.id, "ask")
            # With another call in flight nothing on the wire says which call asked.
            async with anyio.create_task_group() as tg:
                tg.start_soon(turn.call_tool, "io", "block", {"key": key})
                with anyio.fail_after(10):
                    # The record file is written by another process: nothing to wait on but time.
                    while not running(StdioRecording(record)):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                await turn.call_tool("io", "ask", {})
                await turn.call_tool("io", "echo", {"text": key})
                tg.cancel_scope.cancel()
    assert (rec.seen[-1].turn_id, rec.seen[-1].tool) == (None, None)


def test_mcp_headers_are_protected_everywhere() -> None:
    for name in ("Mcp-Param-Region", "mcp-method", "MCP-Whatever"):
        with pytest.raises(InvalidHeaderError):
            with request_headers({name: "x"}):
                pass
        with pytest.raises(ConfigError):
            ServerConfig(name="s", url="http://127.0.0.1:1/mcp", headers={name: "x"})
        client = McpClient(ServerConfig(name="s", url="http://127.0.0.1:1/mcp"))
        with pytest.raises(InvalidHeaderError):
            client.set_turn_headers("turn-1", {name: "x"})
        assert client.turn_entry_ids() == frozenset()


async def test_a_call_header_cannot_override_mcp_param_headers(server: RecordingServer) -> None:
    async with McpClient(ServerConfig(name="rec", url=server.url)) as client:
        server.clear()
        with pytest.raises(InvalidHeaderError):
            await client.call_tool("echo", {"text": "x"}, headers={"Mcp-Param-Region": "eu"})
        with pytest.raises(InvalidHeaderError):
            await client.read_resource("res://readme", headers={"mcp-name": "other"})
    assert server.requests("tools/call") == [] and server.requests("resources/read") == []


async def test_session_handlers_reach_every_owned_client(
    server: RecordingServer, other_server: RecordingServer
) -> None:
    rec = Recorder()
    configs = [
        ServerConfig(name="apps", url=server.url, apps=True),
        ServerConfig(name="other", url=other_server.url, protocol="legacy"),
    ]
    async with Session(configs, hooks=[TurnHeaders()], handlers=rec.handlers()) as session:
        assert session.clients["apps"].handlers is session.handlers
        async with session.turn() as turn:
            await turn.call_tool("apps", "ask", {})
            await turn.call_tool("other", "ask", {})
    assert [(r.server, r.turn_id, r.tool) for r in rec.seen] == [
        ("apps", turn.id, "ask"),
        ("other", turn.id, "ask"),
    ]
    # Turn entries still reach only the Apps server's tools/call.
    assert all(r.header("x-codex-turn-metadata") for r in server.requests("tools/call"))
    assert not [r for r in other_server.requests() if r.header("x-codex-turn-metadata")]


def test_bad_handlers_are_refused() -> None:
    with pytest.raises(ConfigError):
        ClientHandlers(elicitation="nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ClientHandlers(roots="file:///repo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ClientHandlers(roots=("not a uri",))
    with pytest.raises(ConfigError):
        ClientHandlers(log_level="loud")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        McpClient(ServerConfig(name="s", url="http://127.0.0.1:1/mcp"), handlers=object())  # type: ignore[arg-type]


def test_a_configuration_file_cannot_set_mcp_headers(tmp_path: Path) -> None:
    from codex_runtime import load_config

    path = tmp_path / "config.toml"
    path.write_text(
        '[mcp_servers.s]\nurl = "http://127.0.0.1:1/mcp"\nhttp_headers = { "Mcp-Param-Region" = "eu" }\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="mcp-param-region"):
        load_config(path)


async def test_a_call_timeout_does_not_count_the_time_a_person_takes(server: RecordingServer) -> None:
    """2026-07-28: the call's deadline bounds each round of the call; the client answers an
    elicitation between rounds, so a person's slow answer does not time the call out."""
    protocol = "auto"

    async def slow_person(request: ServerRequest) -> t.ElicitResult:
        await anyio.sleep(1.5)  # longer than the call's whole timeout
        return t.ElicitResult(action="accept", content={"name": "late"})

    cfg = ServerConfig(name="rec", url=server.url, protocol=protocol)
    async with McpClient(cfg, handlers=ClientHandlers(elicitation=slow_person)) as client:
        asked = await client.call_tool("ask", {"question": "Who?"}, timeout=1.0)
    assert json.loads(text_of(asked)) == {"action": "accept", "data": {"name": "late"}}
    assert [c.outcome for c in server.tool_calls()] == ["ok"]

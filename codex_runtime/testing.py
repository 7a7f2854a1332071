"""Real MCP servers on loopback that record everything they receive.

`RecordingServer` is an MCP server built with the SDK's own `MCPServer`, served over
streamable HTTP on ``127.0.0.1`` by uvicorn. It records every HTTP request (method, path,
headers, parsed JSON-RPC body) and every tool invocation with its ``_meta`` and headers,
so tests assert on what a server *received*, not on what a client meant to send::

    async with RecordingServer("apps") as server:
        async with McpClient(ServerConfig(name="apps", url=server.url)) as client:
            await client.call_tool("echo", {"x": 1}, headers={"x-tenant": "t1"})
        [call] = server.requests("tools/call")
        assert call.header("x-tenant") == "t1"

Forms:

- in-process (default): uvicorn runs in its own thread with its own asyncio loop, so the
  code under test may run on asyncio or trio;
- `RecordingServer.subprocess()`: a child process, which tests can `kill` and `restart`
  on the same port (server crashes, session expiry);
- `stdio_server_config()`: a stdio server that records into a file, read back with
  `StdioRecording`.

Tools: ``echo`` (returns its arguments and what it saw), ``sleep(seconds)`` (records
start, end or cancellation), ``fail`` (returns a tool error), ``headers`` (returns the
request headers it saw), ``block(key)`` (waits until `RecordingServer.release` is called,
for tests that need a call in flight without timing), ``reject(code, message)`` (answers
with that JSON-RPC error), ``unstructured`` (declares an output schema but returns no
structured content) and ``shapeless`` (over HTTP, its result lacks ``resultType``); the
child-process forms also have ``crash`` (the process exits at once, as a crashing server
would). Every form also has
the client-feature tools, resources and prompts of `codex_runtime._testing_features`
(``ask``, ``sample``, ``roots``, ``progress``, ``log``, ``link``, ``confirm``;
``res://readme``; ``greet``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Self

import anyio
import attrs
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent, ToolAnnotations

from ._loopback import ReceivedHeaders, ThreadServer, listen_socket
from ._oauth_stub import AuthRecord, OAuthGate, approve_in_browser
from ._provider_stub import ProviderRequest, ProviderStub, StubReply
from ._testing_features import add_client_feature_tools

__all__ = [
    "AuthRecord",
    "OAuthServer",
    "ProviderRequest",
    "ProviderStub",
    "RecordedRequest",
    "RecordedToolCall",
    "RecordingServer",
    "StdioRecording",
    "StubReply",
    "approve_in_browser",
    "stdio_server_config",
]


@attrs.frozen
class RecordedRequest(ReceivedHeaders):
    """One HTTP request as the server received it."""

    server: str
    http_method: str
    path: str
    header_pairs: tuple[tuple[str, str], ...]
    body: Any
    time: float

    @property
    def method(self) -> str | None:
        """The JSON-RPC method, or None (GET, DELETE, responses)."""
        if isinstance(self.body, dict):
            method = self.body.get("method")
            return method if isinstance(method, str) else None
        return None

    @property
    def params(self) -> dict[str, Any]:
        """The JSON-RPC params (empty when absent)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("params"), dict):
            return dict(self.body["params"])
        return {}

    @property
    def meta(self) -> dict[str, Any]:
        """``params._meta`` (empty when absent)."""
        meta = self.params.get("_meta")
        return dict(meta) if isinstance(meta, dict) else {}

    @property
    def tool_name(self) -> str | None:
        """For ``tools/call``, the tool's name."""
        name = self.params.get("name") if self.method == "tools/call" else None
        return name if isinstance(name, str) else None

    @property
    def arguments(self) -> dict[str, Any]:
        """For ``tools/call``, the arguments (empty otherwise)."""
        args = self.params.get("arguments")
        return dict(args) if isinstance(args, dict) else {}

    @classmethod
    def _from_json(cls, data: Mapping[str, Any]) -> RecordedRequest:
        return cls(
            server=data["server"],
            http_method=data["http_method"],
            path=data["path"],
            header_pairs=tuple((k, v) for k, v in data["headers"]),
            body=data["body"],
            time=data["time"],
        )


@attrs.frozen
class RecordedToolCall:
    """One tool invocation as the server ran it."""

    server: str
    tool: str
    arguments: dict[str, Any]
    meta: dict[str, Any]
    headers: dict[str, str]
    call_id: str
    started_at: float
    ended_at: float | None
    #: ``"running"``, ``"ok"``, ``"error"`` (the tool raised or returned a tool error) or
    #: ``"cancelled"``.
    outcome: str

    @classmethod
    def _from_json(cls, data: Mapping[str, Any]) -> RecordedToolCall:
        return cls(**{f.name: data[f.name] for f in attrs.fields(cls)})


class _Recorder:
    """Thread-safe record store, in memory or appended to a JSON-lines file."""

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._path = path
        self._requests: list[dict[str, Any]] = []
        self._calls: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.released: set[str] = set()
        # HTTP statuses for the next requests, in order, each for any method (None) or one.
        self.failures: list[tuple[int, str | None]] = []
        # URIs given to resources/subscribe ("-URI" for resources/unsubscribe), in order.
        self.subscriptions: list[str] = []

    def next_failure(self, method: str | None) -> int | None:
        with self._lock:
            for index, (status, only) in enumerate(self.failures):
                if only is None or only == method:
                    del self.failures[index]
                    return status
            return None

    def _write(self, kind: str, data: dict[str, Any]) -> None:
        if self._path is None:
            return
        # One append per record (O_APPEND): lines from this process and the `clear`
        # markers a test process appends never interleave.
        line = (json.dumps({"kind": kind, "data": data}) + "\n").encode("utf-8")
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def add_request(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(data)
            self._write("request", data)
            self._changed.notify_all()

    def update_call(self, data: dict[str, Any]) -> None:
        with self._lock:
            if data["call_id"] not in self._calls:
                self._order.append(data["call_id"])
            self._calls[data["call_id"]] = data
            self._write("call", data)
            self._changed.notify_all()

    def snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with self._lock:
            return list(self._requests), [self._calls[c] for c in self._order]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._calls.clear()
            self._order.clear()
            self.subscriptions.clear()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    requests: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    if not path.exists():
        return requests, []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # a record still being written
            item = json.loads(line)
            if item["kind"] == "request":
                requests.append(item["data"])
            elif item["kind"] == "call":
                data = item["data"]
                if data["call_id"] not in calls:
                    order.append(data["call_id"])
                calls[data["call_id"]] = data
            elif item["kind"] == "clear":
                requests.clear()
                calls.clear()
                order.clear()
    return requests, [calls[c] for c in order]


def _filter_requests(raw: list[dict[str, Any]], method: str | None) -> list[RecordedRequest]:
    out = [RecordedRequest._from_json(r) for r in raw]
    if method is None:
        return out
    if method in ("GET", "DELETE", "POST"):
        return [r for r in out if r.http_method == method]
    return [r for r in out if r.method == method]


def _filter_calls(raw: list[dict[str, Any]], tool: str | None) -> list[RecordedToolCall]:
    out = [RecordedToolCall._from_json(c) for c in raw]
    return out if tool is None else [c for c in out if c.tool == tool]


# -- the MCP server ------------------------------------------------------------------------


@contextlib.contextmanager
def _root_logging_untouched() -> Iterator[None]:
    """Undo any configuration of the root logger made inside the block.

    `MCPServer()` calls `logging.basicConfig`; a test helper must leave the logging
    configuration of the process that uses it alone.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


def build_mcp_server(name: str, recorder: _Recorder, *, crashable: bool = False) -> Any:
    """Build the recording `MCPServer` (the SDK's own server API) with the test tools.

    ``crashable`` adds the ``crash`` tool, which ends the server's process: only for
    the child-process forms.
    """
    with _root_logging_untouched():
        server = MCPServer(name=name, log_level="WARNING")
    counter = iter(range(1, 1 << 62))
    # Unique per server instance: a restarted subprocess appends to the same record file.
    instance = uuid.uuid4().hex[:8]

    def seen(ctx: Context[Any, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        meta_obj = ctx.request_context.meta
        meta: dict[str, Any]
        if meta_obj is None:
            meta = {}
        elif isinstance(meta_obj, dict):
            meta = dict(meta_obj)
        else:
            meta = dict(meta_obj.model_dump(by_alias=True, exclude_none=True))
        headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
        return meta, headers

    async def run(
        tool: str, arguments: dict[str, Any], ctx: Context[Any, Any], body: Callable[[], Awaitable[Any]]
    ) -> Any:
        meta, headers = seen(ctx)
        call_id = f"{name}-{instance}-{next(counter)}"
        record: dict[str, Any] = {
            "server": name,
            "tool": tool,
            "arguments": arguments,
            "meta": meta,
            "headers": headers,
            "call_id": call_id,
            "started_at": time.time(),
            "ended_at": None,
            "outcome": "running",
        }
        recorder.update_call(dict(record))
        outcome = "error"
        try:
            result = await body()
            outcome = "error" if isinstance(result, CallToolResult) and result.is_error else "ok"
            return result
        except BaseException as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                outcome = "cancelled"
            raise
        finally:
            record["ended_at"] = time.time()
            record["outcome"] = outcome
            recorder.update_call(record)

    @server.tool(name="echo", description="Return the arguments, and the _meta and headers the server saw.")
    async def echo_tool(ctx: Context[Any, Any], text: str = "", data: dict[str, Any] | None = None) -> str:
        arguments = {"text": text, **({"data": data} if data is not None else {})}

        async def body() -> str:
            meta, headers = seen(ctx)
            return json.dumps({"arguments": arguments, "meta": meta, "headers": headers}, sort_keys=True)

        result: str = await run("echo", arguments, ctx, body)
        return result

    @server.tool(name="sleep", description="Sleep for `seconds`, then return; records cancellation.")
    async def sleep_tool(ctx: Context[Any, Any], seconds: float = 0.1) -> str:
        async def body() -> str:
            await anyio.sleep(seconds)
            return f"slept {seconds}"

        result: str = await run("sleep", {"seconds": seconds}, ctx, body)
        return result

    @server.tool(name="block", description="Wait until the test releases `key`.")
    async def block_tool(ctx: Context[Any, Any], key: str = "default") -> str:
        async def body() -> str:
            gate = recorder.gates.setdefault(key, asyncio.Event())
            if key in recorder.released:
                gate.set()
            await gate.wait()
            return f"released {key}"

        result: str = await run("block", {"key": key}, ctx, body)
        return result

    @server.tool(name="fail", description="Return a tool error.")
    async def fail_tool(ctx: Context[Any, Any], message: str = "requested failure") -> CallToolResult:
        async def body() -> CallToolResult:
            return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)

        result: CallToolResult = await run("fail", {"message": message}, ctx, body)
        return result

    first_seen: set[str] = set()

    @server.tool(
        name="lookup",
        description="An idempotent read: return `key`; the first call with a key waits `seconds` first.",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True),
    )
    async def lookup_tool(ctx: Context[Any, Any], key: str = "", seconds: float = 0.0) -> str:
        async def body() -> str:
            if key not in first_seen:
                first_seen.add(key)
                await anyio.sleep(seconds)
            return f"found {key}"

        result: str = await run("lookup", {"key": key, "seconds": seconds}, ctx, body)
        return result

    @server.tool(name="headers", description="Return the request headers the server saw.")
    async def headers_tool(ctx: Context[Any, Any]) -> str:
        async def body() -> str:
            return json.dumps(seen(ctx)[1], sort_keys=True)

        result: str = await run("headers", {}, ctx, body)
        return result

    @server.tool(name="reject", description="Answer with a JSON-RPC error `code` / `message`, not a result.")
    async def reject_tool(
        ctx: Context[Any, Any], code: int = -32600, message: str = "user session 42 is invalid"
    ) -> str:
        async def body() -> str:
            raise MCPError(code=code, message=message)

        result: str = await run("reject", {"code": code, "message": message}, ctx, body)
        return result

    @server.tool(name="unstructured", description="Declare an output schema, return no structured content.")
    async def unstructured_tool(ctx: Context[Any, Any]) -> CallToolResult:
        async def body() -> CallToolResult:
            return CallToolResult(content=[TextContent(type="text", text="no structured content")])

        result: CallToolResult = await run("unstructured", {}, ctx, body)
        return result

    # Published without a model, the schema is advertised but not enforced by the server.
    unstructured = server._tool_manager.get_tool("unstructured")
    assert unstructured is not None
    unstructured.fn_metadata.output_schema = {
        "type": "object",
        "properties": {"value": {"type": "integer"}},
        "required": ["value"],
    }

    @server.tool(name="shapeless", description="Return a result without its `resultType` (over HTTP).")
    async def shapeless_tool(ctx: Context[Any, Any]) -> str:
        async def body() -> str:
            return "the HTTP layer strips this result's resultType"

        result: str = await run("shapeless", {}, ctx, body)
        return result

    add_client_feature_tools(server, name, run, recorder.subscriptions)

    if crashable:

        @server.tool(name="crash", description="End the server process at once (exit status 70).")
        async def crash_tool(ctx: Context[Any, Any]) -> str:
            async def body() -> str:
                os._exit(70)

            result: str = await run("crash", {}, ctx, body)
            return result

    return server


def _recording_app(
    name: str, recorder: _Recorder, *, json_response: bool = False, crashable: bool = False
) -> Any:
    """The MCP Starlette app wrapped in an ASGI layer that records each HTTP request."""
    mcp_server = build_mcp_server(name, recorder, crashable=crashable)
    inner = mcp_server.streamable_http_app(json_response=json_response, session_idle_timeout=None)

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        recorder.add_request(
            {
                "server": name,
                "http_method": scope["method"],
                "path": scope["path"],
                "headers": [[k.decode("latin-1").lower(), v.decode("latin-1")] for k, v in scope["headers"]],
                "body": body,
                "time": time.time(),
            }
        )
        rpc_method = body.get("method") if isinstance(body, dict) else None
        status = recorder.next_failure(rpc_method if isinstance(rpc_method, str) else None)
        if status is not None:
            await send(
                {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        params = body.get("params") if isinstance(body, dict) and rpc_method == "tools/call" else None
        if isinstance(params, dict) and params.get("name") == "shapeless":
            send = _without_result_type(send)
        await inner(scope, replay, send)

    return app


def _without_result_type(send: Any) -> Any:
    """Wrap an ASGI ``send``: the JSON-RPC result of the response loses its ``resultType``."""
    start: dict[str, Any] = {}
    chunks: list[bytes] = []

    def strip(text: str) -> str:
        try:
            message = json.loads(text)
        except ValueError:
            return text
        if isinstance(message, dict) and isinstance(message.get("result"), dict):
            message["result"].pop("resultType", None)
        return json.dumps(message)

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        raw = b"".join(chunks).decode()
        if raw.lstrip().startswith("{"):
            out = strip(raw)
        else:  # an SSE stream: one JSON-RPC message per data line
            out = "\n".join(
                f"data: {strip(line[6:])}" if line.startswith("data: ") else line for line in raw.split("\n")
            )
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(out.encode())).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": out.encode()})

    return wrapped


class _LoopbackServer:
    """What both forms of the recording server share: address, lifetime, queries."""

    def __init__(self, name: str, *, port: int = 0, json_response: bool = False) -> None:
        self.name = name
        self._port = port
        self._json_response = json_response

    @property
    def port(self) -> int:
        """The bound port (after the first start; kept by a restart)."""
        return self._port

    @property
    def url(self) -> str:
        """The MCP endpoint, ``http://127.0.0.1:PORT/mcp``."""
        if not self._port:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._port}/mcp"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _before_stop(self) -> None:
        """Called before the context managers stop the server."""

    def _records(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._before_stop()
        await anyio.to_thread.run_sync(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._before_stop()
        self.stop()

    def requests(self, method: str | None = None) -> list[RecordedRequest]:
        """Recorded HTTP requests; ``method`` filters by JSON-RPC method or HTTP verb."""
        return _filter_requests(self._records()[0], method)

    def tool_calls(self, tool: str | None = None) -> list[RecordedToolCall]:
        """Recorded tool invocations (the latest state of each)."""
        return _filter_calls(self._records()[1], tool)

    async def wait_for_calls(
        self, tool: str, count: int = 1, *, outcome: str | None = None, timeout: float = 10.0
    ) -> list[RecordedToolCall]:
        """Wait until ``count`` calls of ``tool`` (optionally with ``outcome``) were recorded."""

        def matching() -> list[RecordedToolCall]:
            return [c for c in self.tool_calls(tool) if outcome is None or c.outcome == outcome]

        await self.wait_for(lambda _: len(matching()) >= count, timeout=timeout)
        return matching()

    async def wait_for(self, predicate: Callable[[Self], bool], *, timeout: float = 10.0) -> None:
        raise NotImplementedError


class RecordingServer(_LoopbackServer):
    """A real MCP server on ``127.0.0.1`` that records what it receives.

    Args:
        name: The server's name (also recorded with every request).
        port: Port to listen on; 0 picks a free one (see `url`).
        json_response: Answer with JSON instead of SSE.
    """

    def __init__(self, name: str = "recording", *, port: int = 0, json_response: bool = False) -> None:
        super().__init__(name, port=port, json_response=json_response)
        self._recorder = _Recorder()
        self._thread: ThreadServer | None = None

    @classmethod
    def subprocess(
        cls, name: str = "recording", *, port: int = 0, json_response: bool = False
    ) -> SubprocessRecordingServer:
        """A recording server in a child process, which can be killed and restarted."""
        return SubprocessRecordingServer(name, port=port, json_response=json_response)

    def start(self) -> None:
        """Start serving (blocking until the socket accepts)."""
        sock = listen_socket(self._port)
        self._port = sock.getsockname()[1]
        self._thread = ThreadServer(
            partial(_recording_app, self.name, self._recorder, json_response=self._json_response), sock
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop()
            thread.sock.close()

    def _before_stop(self) -> None:
        self.release_all()

    def _records(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self._recorder.snapshot()

    def clear(self) -> None:
        """Forget everything recorded so far, and any `fail_next` still pending."""
        self._recorder.clear()
        with self._recorder._lock:
            self._recorder.failures.clear()

    async def wait_for(self, predicate: Callable[[Self], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds (checked whenever a record arrives)."""
        ok = await anyio.to_thread.run_sync(
            lambda: self._recorder.wait(lambda: predicate(self), timeout), abandon_on_cancel=True
        )
        if not ok:
            raise TimeoutError(f"recording server {self.name!r}: condition not met within {timeout} s")

    def subscriptions(self) -> list[str]:
        """URIs given to ``resources/subscribe`` (``"-URI"`` for ``resources/unsubscribe``), in order."""
        with self._recorder._lock:
            return list(self._recorder.subscriptions)

    def fail_next(self, count: int = 1, *, status: int = 503, method: str | None = None) -> None:
        """Answer the next ``count`` HTTP requests (of JSON-RPC ``method``, when given) with
        ``status`` and an empty body.

        They are still recorded. For tests of retries and error mapping.
        """
        with self._recorder._lock:
            self._recorder.failures.extend([(status, method)] * count)

    def release(self, key: str = "default") -> None:
        """Let every ``block(key)`` call, current and future, return."""
        thread = self._thread
        self._recorder.released.add(key)
        gate = self._recorder.gates.get(key)
        if gate is not None and thread is not None and thread.loop is not None:
            thread.loop.call_soon_threadsafe(gate.set)

    def release_all(self) -> None:
        """Release every blocked call."""
        for key in list(self._recorder.gates):
            self.release(key)


class OAuthServer(RecordingServer):
    """A `RecordingServer` whose MCP endpoint needs OAuth, with its own authorization server.

    On the same loopback origin it serves protected resource metadata, authorization server
    metadata, dynamic client registration, an authorization endpoint that approves at once
    (redirecting to the client's redirect URI with a code) and a token endpoint
    (authorization code with PKCE S256; refresh). MCP requests need a bearer token it
    issued; the tools in ``tool_scopes`` need their scope as well (else ``403
    insufficient_scope``). `auth_requests` lists what every endpoint received.

    Args:
        scopes: The scopes every MCP request needs.
        tool_scopes: Tool name to the extra scope a call of it needs.
        first_token_lifetime: ``expires_in`` of the first access token (0: expired at once,
            so the client refreshes it on its next request).
        authorization_server: The issuer the resource metadata names (default: this
            server itself), e.g. an address nothing listens on.
    """

    def __init__(
        self,
        name: str = "oauth",
        *,
        port: int = 0,
        scopes: tuple[str, ...] = ("mcp",),
        tool_scopes: Mapping[str, str] | None = None,
        first_token_lifetime: int = 3600,
        authorization_server: str | None = None,
    ) -> None:
        super().__init__(name, port=port)
        self._gate_options: dict[str, Any] = {
            "scopes": scopes,
            "tool_scopes": tool_scopes,
            "first_token_lifetime": first_token_lifetime,
            "authorization_server": authorization_server,
        }
        self._gate: OAuthGate | None = None

    @property
    def gate(self) -> OAuthGate:
        """The authorization server (its issued secrets, `OAuthGate.revoke_all`)."""
        if self._gate is None:
            raise RuntimeError("the server is not started")
        return self._gate

    def start(self) -> None:
        sock = listen_socket(self._port)
        self._port = sock.getsockname()[1]

        def make_app() -> Any:
            inner = _recording_app(self.name, self._recorder)
            self._gate = OAuthGate(inner, lambda: f"http://127.0.0.1:{self._port}", **self._gate_options)
            return self._gate

        self._thread = ThreadServer(make_app, sock)
        self._thread.start()

    def auth_requests(self, path: str | None = None) -> list[AuthRecord]:
        """Every HTTP request the server received (``path`` filters), rejected ones included."""
        return self.gate.requests(path)

    def secrets(self) -> set[str]:
        """Every client secret, code and token the server handed out."""
        return self.gate.secrets()


class SubprocessRecordingServer(_LoopbackServer):
    """A `RecordingServer` in a child process; records go through a JSON-lines file.

    `kill` ends it abruptly (SIGKILL); `restart` starts it again on the same port, with
    no memory of earlier MCP sessions.
    """

    def __init__(self, name: str, *, port: int = 0, json_response: bool = False) -> None:
        super().__init__(name, port=port, json_response=json_response)
        self._dir = tempfile.TemporaryDirectory(prefix="codex-runtime-rec-")
        self._record = Path(self._dir.name) / "records.jsonl"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the child on `port` (a free one the first time if 0); blocks until it serves."""
        if self.running:
            raise RuntimeError("already running")
        sock = listen_socket(self._port)
        self._port = sock.getsockname()[1]
        args = [sys.executable, "-m", "codex_runtime.testing", "serve", "--fd", str(sock.fileno())]
        args += ["--name", self.name, "--record", str(self._record)]
        if self._json_response:
            args.append("--json-response")
        env = {**os.environ, **_child_pythonpath(os.environ)}
        self._proc = subprocess.Popen(
            args, pass_fds=(sock.fileno(),), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
        )
        sock.close()
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith(b"ready"):
            self._proc.kill()
            raise RuntimeError("recording server subprocess failed to start")

    def kill(self) -> None:
        """End the process abruptly (SIGKILL) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def stop(self) -> None:
        """End the process gracefully."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    def restart(self) -> None:
        """Kill (if running) and start again on the same port."""
        self.kill()
        self.start()

    def _records(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        # The record file outlives the process (it goes with this object), so tests can
        # assert on what the server received after the block.
        return _read_jsonl(self._record)

    def clear(self) -> None:
        with open(self._record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": "clear", "data": {}}) + "\n")

    async def wait_for(self, predicate: Callable[[Self], bool], *, timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds (the record file is re-read as it grows)."""
        with anyio.move_on_after(timeout):
            # Records arrive by a file another process appends to: nothing to wait on but time.
            while not predicate(self):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            return
        raise TimeoutError(f"recording server {self.name!r}: condition not met within {timeout} s")


def _child_pythonpath(environ: Mapping[str, str]) -> dict[str, str]:
    """``PYTHONPATH`` for a child ``python -m codex_runtime.testing``, wherever this copy lives."""
    root = str(Path(__file__).resolve().parent.parent)
    existing = environ.get("PYTHONPATH")
    return {"PYTHONPATH": root if not existing else os.pathsep.join((root, existing))}


def stdio_server_config(name: str, record_file: str | os.PathLike[str], **config: Any) -> Any:
    """A `ServerConfig` that runs the recording server over stdio, recording into a file.

    Extra keyword arguments go to `ServerConfig` (e.g. ``headers``, ``apps``).
    """
    from .client import ServerConfig

    env = {**_child_pythonpath(os.environ), **dict(config.pop("env", None) or {})}
    return ServerConfig(
        name=name,
        command=sys.executable,
        args=("-m", "codex_runtime.testing", "stdio", "--name", name, "--record", str(record_file)),
        env=env,
        **config,
    )


class StdioRecording:
    """Reads what a stdio recording server wrote into its record file."""

    def __init__(self, record_file: str | os.PathLike[str]) -> None:
        self.path = Path(record_file)

    def requests(self, method: str | None = None) -> list[RecordedRequest]:
        """Recorded JSON-RPC messages (HTTP fields are empty on stdio)."""
        return _filter_requests(_read_jsonl(self.path)[0], method)

    def tool_calls(self, tool: str | None = None) -> list[RecordedToolCall]:
        return _filter_calls(_read_jsonl(self.path)[1], tool)


# -- command line: the child-process forms ----------------------------------------------------


def _serve_fd(fd: int, name: str, record: Path, json_response: bool) -> None:
    recorder = _Recorder(record)
    sock = socket.socket(fileno=fd)
    app = partial(_recording_app, name, recorder, json_response=json_response, crashable=True)
    server = ThreadServer(app, sock)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        while not stop.wait(0.5) and server.alive:
            pass
    server.stop()


def _serve_stdio(name: str, record: Path) -> None:
    recorder = _Recorder(record)
    mcp_server = build_mcp_server(name, recorder, crashable=True)

    async def record_messages(ctx: Any, call_next: Any) -> Any:
        recorder.add_request(
            {
                "server": name,
                "http_method": "STDIO",
                "path": "",
                "headers": [],
                "body": {
                    "jsonrpc": "2.0",
                    "method": ctx.method,
                    "params": dict(ctx.params) if ctx.params is not None else {},
                    **({"id": ctx.request_id} if ctx.request_id is not None else {}),
                },
                "time": time.time(),
            }
        )
        return await call_next(ctx)

    mcp_server._lowlevel_server.middleware.insert(0, record_messages)
    anyio.run(mcp_server.run_stdio_async)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m codex_runtime.testing")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve over HTTP on an inherited socket")
    serve.add_argument("--fd", type=int, required=True)
    serve.add_argument("--name", default="recording")
    serve.add_argument("--record", type=Path, required=True)
    serve.add_argument("--json-response", action="store_true")
    stdio = sub.add_parser("stdio", help="serve over stdio")
    stdio.add_argument("--name", default="recording")
    stdio.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve_fd(args.fd, args.name, args.record, args.json_response)
    else:
        _serve_stdio(args.name, args.record)


if __name__ == "__main__":
    main()

"""`ProviderStub`: a stand-in OpenAI-compatible model provider on loopback.

It answers ``POST /v1/chat/completions`` (Chat Completions) and ``POST /v1/responses``
(the Responses API) with scripted replies (text, tool calls, HTTP errors, malformed
bodies), streamed as server-sent events when the request says ``"stream": true`` and as
one JSON body otherwise, and records every request it receives (method, path, headers,
JSON body), so tests and examples can check what a model provider was sent::

    async with ProviderStub([
        StubReply.tool_calls(("apps__echo", {"text": "hi"})),
        StubReply.text("done"),
    ]) as provider:
        model = OpenAIChatModel(provider.base_url, "stub-model", api_key="sk-test")
        ...
        first, second = provider.chat_requests()
        assert first.header("authorization") == "Bearer sk-test"
        assert second.messages[-1]["role"] == "tool"

It is a Starlette app served by uvicorn on ``127.0.0.1`` in its own thread with its own
asyncio loop, so the code under test may run on asyncio or trio (or in another process:
``base_url`` is a real address). Replies are used in order, one per chat request; when
none is left the stub answers HTTP 500 with a message saying so. A reply may also be a
function of the recorded request (``lambda request: StubReply.text(...)``). A reply made
with ``hold="key"`` is sent only after `ProviderStub.release` ("key"): a model call in
flight, without timing; a streamed reply made with ``stall="key"`` sends its first text
delta and then waits for ``release("key")`` (a stream in flight). A streamed reply whose
client went away before its end is counted in `ProviderStub.closed_streams`.
``GET /v1/models`` lists the stub's model.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import anyio.to_thread
import attrs

from ._loopback import ReceivedHeaders, ThreadServer, listen_socket

__all__ = ["ProviderRequest", "ProviderStub", "StubReply"]


@attrs.frozen
class ProviderRequest(ReceivedHeaders):
    """One HTTP request as the stub received it."""

    http_method: str
    path: str
    header_pairs: tuple[tuple[str, str], ...]
    body: Any
    text: str
    time: float
    query: str = ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of a chat request (empty otherwise)."""
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return list(messages) if isinstance(messages, list) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The ``tools`` of a chat request (empty otherwise)."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        return list(tools) if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        """The function names of the request's ``tools`` (either API's shape)."""
        names = []
        for tool in self.tools:
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
                names.append(tool["function"]["name"])
            elif isinstance(tool, dict) and isinstance(tool.get("name"), str):
                names.append(tool["name"])
        return names

    @property
    def input(self) -> list[dict[str, Any]]:
        """The ``input`` items of a Responses API request (empty otherwise)."""
        items = self.body.get("input") if isinstance(self.body, dict) else None
        return list(items) if isinstance(items, list) else []

    @property
    def streamed(self) -> bool:
        """Whether the request asked for a streamed answer."""
        return isinstance(self.body, dict) and self.body.get("stream") is True


@attrs.frozen
class StubReply:
    """One scripted answer of the stub: a status, a JSON body (or raw bytes), a gate.

    Build them with the class methods: `text`, `tool_calls`, `error`, `raw`.
    """

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    hold: str | None = None
    stall: str | None = None

    @classmethod
    def text(
        cls, text: str, *, finish_reason: str = "stop", hold: str | None = None, stall: str | None = None
    ) -> StubReply:
        """An assistant answer without tool calls (streamed a word at a time)."""
        message = {"role": "assistant", "content": text}
        return cls(body=_completion(message, finish_reason), hold=hold, stall=stall)

    @classmethod
    def tool_calls(
        cls,
        *calls: tuple[str, Mapping[str, Any] | str] | tuple[str, Mapping[str, Any] | str, str],
        text: str | None = None,
        hold: str | None = None,
    ) -> StubReply:
        """An assistant answer asking for tool calls: ``(name, arguments[, id])`` each.

        ``arguments`` given as a mapping are sent as JSON text (as providers do); given as
        a `str` they are sent verbatim, e.g. to send invalid JSON.
        """
        wire = []
        for index, call in enumerate(calls):
            name, arguments = call[0], call[1]
            call_id = call[2] if len(call) > 2 else f"call_stub_{index + 1}"
            encoded = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
            wire.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}})
        message = {"role": "assistant", "content": text, "tool_calls": wire}
        return cls(body=_completion(message, "tool_calls"), hold=hold)

    @classmethod
    def error(
        cls, status: int, message: str, *, type: str = "invalid_request_error", hold: str | None = None
    ) -> StubReply:
        """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""
        return cls(status=status, body={"error": {"message": message, "type": type, "code": None}}, hold=hold)

    @classmethod
    def raw_body(
        cls,
        content: str | bytes,
        *,
        status: int = 200,
        content_type: str = "application/json",
        hold: str | None = None,
    ) -> StubReply:
        """Exactly these bytes (e.g. malformed JSON)."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        return cls(status=status, raw=data, content_type=content_type, hold=hold)


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text) or [text]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def _message_of(body: Any) -> dict[str, Any]:
    choices = body.get("choices") if isinstance(body, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message
    return {"role": "assistant", "content": None}


def _response_output(message: dict[str, Any], ids: Any) -> list[dict[str, Any]]:
    """The Responses API output items of a chat-completion message."""
    output: list[dict[str, Any]] = []
    if message.get("content"):
        output.append(
            {
                "type": "message",
                "id": f"msg_stub_{next(ids)}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": message["content"], "annotations": []}],
            }
        )
    for call in message.get("tool_calls") or ():
        output.append(
            {
                "type": "function_call",
                "id": f"fc_stub_{next(ids)}",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            }
        )
    return output


def _response_object(
    response_id: str, model: str, output: list[dict[str, Any]], created: int
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "completed",
        "model": model,
        "output": output,
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }


def _completion(message: dict[str, Any], finish_reason: str) -> dict[str, Any]:
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


ReplySource = StubReply | str | Callable[[ProviderRequest], StubReply]


class _State:
    """Records and the reply queue, shared by the test's thread and the server's loop."""

    def __init__(self, replies: Iterable[ReplySource], model: str) -> None:
        self.lock = threading.Condition()
        self.requests: list[ProviderRequest] = []
        self.replies: list[ReplySource] = list(replies)
        self.model = model
        self.ids = itertools.count(1)
        self.gates: dict[str, asyncio.Event] = {}
        self.released: set[str] = set()
        self.closed_streams = 0
        self.first_bytes: list[float] = []

    def gate(self, key: str) -> asyncio.Event:
        gate = self.gates.setdefault(key, asyncio.Event())
        if key in self.released:
            gate.set()
        return gate


def _build_app(state: _State) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def record(request: Request) -> ProviderRequest:
        raw = await request.body()
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        pairs = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers.raw)
        recorded = ProviderRequest(
            request.method, request.url.path, pairs, body, text, time.time(), request.url.query
        )
        with state.lock:
            state.requests.append(recorded)
            state.lock.notify_all()
        return recorded

    async def chat(request: Request) -> Response:
        return await answer(request, "chat")

    async def responses(request: Request) -> Response:
        return await answer(request, "responses")

    def chat_events(reply: StubReply, body: dict[str, Any]) -> list[tuple[bytes, bool]]:
        """(bytes, stall-after) for a streamed chat completion."""
        message = _message_of(body)
        base = {"id": body.get("id"), "object": "chat.completion.chunk", "model": body.get("model")}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return _sse({**base, "choices": [choice]})

        events = [(chunk({"role": "assistant", "content": ""}), False)]
        for i, piece in enumerate(_pieces(message["content"]) if message.get("content") else []):
            events.append((chunk({"content": piece}), i == 0 and reply.stall is not None))
        for index, call in enumerate(message.get("tool_calls") or ()):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {"index": index, "id": call["id"], "type": "function"}
            events.append(
                (
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    **head,
                                    "function": {
                                        "name": call["function"]["name"],
                                        "arguments": arguments[:half],
                                    },
                                }
                            ]
                        }
                    ),
                    False,
                )
            )
            events.append(
                (
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}),
                    False,
                )
            )
        finish = body["choices"][0].get("finish_reason") if body.get("choices") else "stop"
        events.append((chunk({}, finish), False))
        events.append((_sse({**base, "choices": [], "usage": body.get("usage")}), False))
        events.append((_sse("[DONE]"), False))
        return events

    def response_events(reply: StubReply, response: dict[str, Any]) -> list[tuple[bytes, bool]]:
        """(bytes, stall-after) for a streamed Responses API answer."""
        seq = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, "sequence_number": next(seq), **fields}, kind)

        started = {**response, "status": "in_progress", "output": []}
        events = [(event("response.created", response=started), False)]
        for index, item in enumerate(response["output"]):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                events.append(
                    (
                        event(
                            "response.output_item.added",
                            output_index=index,
                            item={**item, "status": "in_progress", "content": []},
                        ),
                        False,
                    )
                )
                part = {"type": "output_text", "text": "", "annotations": []}
                events.append(
                    (
                        event(
                            "response.content_part.added",
                            item_id=item["id"],
                            output_index=index,
                            content_index=0,
                            part=part,
                        ),
                        False,
                    )
                )
                for i, piece in enumerate(_pieces(text)):
                    delta = event(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                    )
                    events.append((delta, i == 0 and reply.stall is not None))
                events.append(
                    (
                        event(
                            "response.output_text.done",
                            item_id=item["id"],
                            output_index=index,
                            content_index=0,
                            text=text,
                        ),
                        False,
                    )
                )
            else:
                events.append(
                    (
                        event(
                            "response.output_item.added",
                            output_index=index,
                            item={**item, "status": "in_progress", "arguments": ""},
                        ),
                        False,
                    )
                )
                arguments = item["arguments"]
                half = len(arguments) // 2
                for piece in (arguments[:half], arguments[half:]):
                    events.append(
                        (
                            event(
                                "response.function_call_arguments.delta",
                                item_id=item["id"],
                                output_index=index,
                                delta=piece,
                            ),
                            False,
                        )
                    )
                events.append(
                    (
                        event(
                            "response.function_call_arguments.done",
                            item_id=item["id"],
                            output_index=index,
                            arguments=arguments,
                        ),
                        False,
                    )
                )
            events.append((event("response.output_item.done", output_index=index, item=item), False))
        events.append((event("response.completed", response=response), False))
        return events

    def stream(reply: StubReply, events: list[tuple[bytes, bool]]) -> Response:
        async def body() -> Any:
            finished = False
            try:
                for i, (data, stall) in enumerate(events):
                    if i == 0:
                        with state.lock:
                            state.first_bytes.append(time.time())
                    yield data
                    if stall and reply.stall is not None:
                        await state.gate(reply.stall).wait()
                finished = True
            finally:
                if not finished:
                    with state.lock:
                        state.closed_streams += 1
                        state.lock.notify_all()

        return StreamingResponse(
            body(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    async def answer(request: Request, api: str) -> Response:
        recorded = await record(request)
        with state.lock:
            source = state.replies.pop(0) if state.replies else None
        if source is None:
            reply = StubReply.error(
                500, "ProviderStub: no scripted reply left for this request", type="stub_error"
            )
        elif isinstance(source, StubReply):
            reply = source
        elif isinstance(source, str):
            reply = StubReply.text(source)
        else:
            reply = source(recorded)
        if reply.hold is not None:
            await state.gate(reply.hold).wait()
        if reply.raw is not None:
            return Response(reply.raw, status_code=reply.status, media_type=reply.content_type)
        body = reply.body
        if not (isinstance(body, dict) and body.get("object") == "chat.completion"):
            return JSONResponse(body, status_code=reply.status)
        requested = recorded.body.get("model") if isinstance(recorded.body, dict) else None
        model = requested if isinstance(requested, str) else state.model
        body = {
            "id": f"chatcmpl-stub-{next(state.ids)}",
            "created": int(recorded.time),
            "model": model,
            **body,
        }
        if api == "responses":
            output = _response_output(_message_of(body), state.ids)
            response = _response_object(f"resp_stub_{next(state.ids)}", model, output, int(recorded.time))
            if recorded.streamed:
                return stream(reply, response_events(reply, response))
            return JSONResponse(response, status_code=reply.status)
        if recorded.streamed:
            return stream(reply, chat_events(reply, body))
        return JSONResponse(body, status_code=reply.status)

    async def models(request: Request) -> Response:
        await record(request)
        return JSONResponse({"object": "list", "data": [{"id": state.model, "object": "model"}]})

    async def other(request: Request) -> Response:
        await record(request)
        return JSONResponse({"error": {"message": f"no route {request.url.path}", "type": "not_found"}}, 404)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/chat/completions", chat, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/responses", responses, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/{path:path}", other, methods=methods),
        ]
    )


class ProviderStub:
    """A stand-in OpenAI-compatible server on ``127.0.0.1`` (see the module docstring).

    Args:
        replies: Scripted replies, used in order: `StubReply` objects, plain strings
            (a text answer) or functions of the `ProviderRequest`.
        port: Port to listen on; 0 picks a free one.
        model: The model name ``GET /v1/models`` lists (answers echo the requested one).
    """

    def __init__(
        self, replies: Iterable[ReplySource] = (), *, port: int = 0, model: str = "stub-model"
    ) -> None:
        self._state = _State(replies, model)
        self._port = port
        self._server: ThreadServer | None = None

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after start)."""
        return self._port

    @property
    def base_url(self) -> str:
        """The API base, ``http://127.0.0.1:PORT/v1`` (what `OpenAIChatModel` takes)."""
        if self._server is None:
            raise RuntimeError("the provider stub is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    # -- script and records ------------------------------------------------------------

    def add(self, *replies: ReplySource) -> None:
        """Append replies to the script."""
        with self._state.lock:
            self._state.replies.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are left."""
        with self._state.lock:
            return len(self._state.replies)

    def requests(self, path: str | None = None) -> list[ProviderRequest]:
        """Every recorded request, optionally only those to ``path``."""
        with self._state.lock:
            found = list(self._state.requests)
        return found if path is None else [r for r in found if r.path == path]

    def chat_requests(self) -> list[ProviderRequest]:
        """The recorded model requests (Chat Completions and Responses API alike)."""
        return [r for r in self.requests() if r.path.endswith(("/chat/completions", "/responses"))]

    @property
    def closed_streams(self) -> int:
        """Streamed replies whose client closed the connection before their end."""
        with self._state.lock:
            return self._state.closed_streams

    @property
    def first_bytes(self) -> list[float]:
        """When (``time.time()``) each streamed reply sent its first byte, in order."""
        with self._state.lock:
            return list(self._state.first_bytes)

    async def wait_for_closed_streams(self, count: int = 1, *, timeout: float = 10.0) -> None:
        """Wait until ``count`` streamed replies were cut off by their client."""

        def wait() -> bool:
            with self._state.lock:
                return self._state.lock.wait_for(lambda: self._state.closed_streams >= count, timeout)

        if not await anyio.to_thread.run_sync(wait, abandon_on_cancel=True):
            raise TimeoutError(f"provider stub: {count} stream(s) not closed early within {timeout} s")

    def clear(self) -> None:
        """Forget the recorded requests and the remaining replies."""
        with self._state.lock:
            self._state.requests.clear()
            self._state.replies.clear()
            self._state.closed_streams = 0
            self._state.first_bytes.clear()

    async def wait_for_requests(self, count: int = 1, *, timeout: float = 10.0) -> list[ProviderRequest]:
        """Wait until ``count`` chat requests were received; return them."""

        def wait() -> bool:
            with self._state.lock:
                return self._state.lock.wait_for(lambda: len(self.chat_requests()) >= count, timeout)

        if not await anyio.to_thread.run_sync(wait, abandon_on_cancel=True):
            raise TimeoutError(f"provider stub: {count} chat request(s) not received within {timeout} s")
        return self.chat_requests()

    def release(self, key: str) -> None:
        """Let every reply held on ``key`` (current and future) be sent."""
        self._state.released.add(key)
        gate = self._state.gates.get(key)
        loop = self._server.loop if self._server is not None else None
        if gate is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(gate.set)

    def release_all(self) -> None:
        """Release every held reply."""
        for key in list(self._state.gates):
            self.release(key)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start serving; returns once the socket accepts connections."""
        if self._server is not None:
            raise RuntimeError("the provider stub is already started")
        sock = listen_socket(self._port)
        self._port = sock.getsockname()[1]
        state = self._state
        server = ThreadServer(lambda: _build_app(state), sock, name="the provider stub", lifespan="off")
        try:
            server.start()
        except BaseException:
            sock.close()
            raise
        self._server = server

    def stop(self) -> None:
        """Release held replies and stop serving."""
        self.release_all()
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            server.sock.close()

    def __enter__(self) -> ProviderStub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> ProviderStub:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await anyio.to_thread.run_sync(self.stop)

"""`AppServer`: threads and turns driven over JSON-RPC, as Codex's app-server protocol v2.

A thread is a `Session` (its id is the session id) with an `AgentLoop`; a turn is an agent
turn of that loop, so turn hooks, tool hooks, turn headers, forwarding and tracing behave
exactly as in-process. One turn at a time per thread; any number of threads at once.
Requests are handled one after another in arrival order; turns run in tasks of their
thread, and responses from the client (to server-to-client requests) are routed as soon as
they are read, even while a request is being handled.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.abc

from .._session_store import SessionStore
from .._version import __version__
from ..agent import (
    AgentError,
    AgentEvent,
    AgentLoop,
    Model,
    ModelStep,
    TextDelta,
    ToolCallFinished,
    ToolCallProgress,
    ToolCallStarted,
)
from ..client import ClientHandlers, ServerConfig, ServerRequest
from ..hooks import TurnHeaders
from ..session import Session, Turn, TurnOutcome, TurnState
from ._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    Params,
    RpcError,
)

__all__ = ["AppServer"]

logger = logging.getLogger("codex_runtime.app_server")

MAX_LINE = 16 * 1024 * 1024
Send = Callable[[str], Awaitable[None]]


def _now() -> int:
    return int(time.time())


def _now_ms() -> int:
    return int(time.time() * 1000)


def _item_id() -> str:
    return f"item_{uuid.uuid4().hex[:20]}"


class _TurnRecord:
    """One turn of a thread as the protocol shows it (``Turn``)."""

    def __init__(self, turn_id: str) -> None:
        self.id = turn_id
        self.items: list[dict[str, Any]] = []
        self.status = "inProgress"
        self.error: dict[str, Any] | None = None
        self.started_at = time.time()
        self.completed_at: float | None = None
        self.open_message: dict[str, Any] | None = None
        self.open_tools: dict[str, dict[str, Any]] = {}

    def to_json(self, *, items: bool = True) -> dict[str, Any]:
        done = self.completed_at
        return {
            "id": self.id,
            "items": list(self.items) if items else [],
            "itemsView": "full" if items else "notLoaded",
            "status": self.status,
            "error": self.error,
            "startedAt": int(self.started_at),
            "completedAt": None if done is None else int(done),
            "durationMs": None if done is None else int((done - self.started_at) * 1000),
        }


class _Thread:
    """A thread: its session, agent loop, turns, and the task hosting them."""

    def __init__(self, thread_id: str, instructions: str | None) -> None:
        self.id = thread_id
        self.instructions = instructions
        self.created_at = _now()
        self.updated_at = self.created_at
        self.preview = ""
        self.turns: list[_TurnRecord] = []
        self.session: Session | None = None
        self.loop: AgentLoop | None = None
        self.tg: anyio.abc.TaskGroup | None = None
        self.closing = anyio.Event()
        self.closed = anyio.Event()
        self.loaded = False
        self.busy = False
        self.current: _TurnRecord | None = None
        self.pending_start: tuple[Any, list[dict[str, Any]], anyio.Event] | None = None


class AppServer:
    """Serves Codex's app-server protocol (v2 subset) over a line-delimited JSON stream.

    Args:
        model: The `Model` every thread's turns use (shared; not closed by the server).
        servers: The MCP servers each thread's `Session` connects.
        hooks: A function returning the hooks of a new thread's session (default:
            ``[TurnHeaders()]``, as ``codex-runtime run``).
        model_name: The model name reported to clients (default: ``model.model``).
        model_provider: The provider id reported to clients.
        max_steps: Model calls allowed per turn.
        instructions: A system message for every thread (``baseInstructions`` /
            ``developerInstructions`` of ``thread/start`` override it).
        store: A `SessionStore`: threads are stored sessions (their turns, tool calls and
            conversation), listed by ``thread/list`` and resumed by ``thread/resume``,
            also by a later process. Without one, threads live in memory.

    `serve` runs until the input ends (the client went away): then every running turn is
    interrupted, its end hooks run, and every thread's session is closed.
    """

    def __init__(
        self,
        model: Model,
        *,
        servers: Iterable[ServerConfig] = (),
        hooks: Callable[[], Sequence[object]] | None = None,
        model_name: str | None = None,
        model_provider: str = "custom",
        max_steps: int = 20,
        instructions: str | None = None,
        store: SessionStore | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.servers = list(servers)
        self.hooks = hooks or (lambda: [TurnHeaders()])
        self.model_name = model_name or str(getattr(model, "model", None) or type(model).__name__)
        self.model_provider = model_provider
        self.max_steps = max_steps
        self.instructions = instructions
        self.cwd = os.path.abspath(os.getcwd())
        self._threads: dict[str, _Thread] = {}
        self._send: Send | None = None
        self._send_lock = anyio.Lock()
        self._gone = False
        self._input_ended = False
        self._initialized = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._pending: dict[Any, Any] = {}
        self._next_id = 0

    # -- output ------------------------------------------------------------------------

    async def _write(self, message: dict[str, Any]) -> None:
        if self._gone or self._send is None:
            return
        line = json.dumps({"jsonrpc": "2.0", **message}, separators=(",", ":"), ensure_ascii=False)
        async with self._send_lock:
            try:
                await self._send(line)
            except (OSError, ValueError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._gone = True  # the client went away: the reader sees the end next

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification."""
        await self._write({"method": method, "params": params})

    async def _respond(self, request_id: Any, result: dict[str, Any]) -> None:
        await self._write({"id": request_id, "result": result})

    async def _error(self, request_id: Any, error: RpcError) -> None:
        await self._write({"id": request_id, "error": error.to_json()})

    async def request_client(self, method: str, params: dict[str, Any]) -> Any:
        """Send a server-to-client request and wait for its result.

        Raises `RpcError` with the client's error, or when the client went away.
        """
        self._next_id += 1
        request_id = self._next_id
        done = anyio.Event()
        slot: dict[str, Any] = {"event": done}
        self._pending[request_id] = slot
        try:
            await self._write({"id": request_id, "method": method, "params": params})
            if self._gone or self._input_ended:
                raise RpcError(INTERNAL_ERROR, "the client went away")
            await done.wait()
        finally:
            self._pending.pop(request_id, None)
        if "error" in slot:
            error = slot["error"]
            raise RpcError(error.get("code", INTERNAL_ERROR), str(error.get("message", "client error")))
        return slot.get("result")

    # -- input -------------------------------------------------------------------------

    async def serve(self, lines: AsyncIterator[str | bytes], send: Send) -> None:
        """Read requests from ``lines`` and write messages with ``send`` until input ends."""
        self._send = send
        requests_in, requests_out = anyio.create_memory_object_stream[dict[str, Any]](1000)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._dispatch, requests_out)
            try:
                async with requests_in:
                    async for raw in lines:
                        await self._take(raw, requests_in)
            finally:
                # No answer can come any more; what is still written (the end of interrupted
                # turns) reaches a client that only closed its side of the pipe.
                self._input_ended = True
                for slot in list(self._pending.values()):
                    slot["error"] = {"code": INTERNAL_ERROR, "message": "the client went away"}
                    slot["event"].set()
        # the client is gone: every thread's host interrupted its turn and closed its session

    async def _take(self, raw: str | bytes, requests: Any) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            return
        try:
            message = json.loads(text)
        except ValueError as exc:
            await self._error(None, RpcError(PARSE_ERROR, f"parse error: {exc}"))
            return
        if not isinstance(message, dict):
            await self._error(
                None, RpcError(INVALID_REQUEST, "invalid request: a message must be a JSON object")
            )
            return
        method = message.get("method")
        request_id = message.get("id")
        if method is None and ("result" in message or "error" in message):
            slot = self._pending.get(request_id)
            if slot is not None:
                if isinstance(message.get("error"), dict):
                    slot["error"] = message["error"]
                else:
                    slot["result"] = message.get("result")
                slot["event"].set()
            return
        if not isinstance(method, str):
            await self._error(
                request_id if _valid_id(request_id) else None,
                RpcError(INVALID_REQUEST, "invalid request: `method` must be a string"),
            )
            return
        if "id" in message and not _valid_id(request_id):
            await self._error(
                None, RpcError(INVALID_REQUEST, "invalid request: `id` must be a string or an integer")
            )
            return
        await requests.send(message)

    async def _dispatch(self, requests: Any) -> None:
        async with requests:
            async for message in requests:
                request_id = message.get("id")
                is_request = "id" in message
                try:
                    result = await self._handle(
                        message["method"], message.get("params"), request_id, is_request
                    )
                except RpcError as error:
                    if is_request:
                        await self._error(request_id, error)
                except Exception as exc:  # a bug: answer it, keep serving
                    logger.exception("app-server: %s failed", message["method"])
                    if is_request:
                        await self._error(
                            request_id, RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
                        )
                else:
                    if is_request and result is not None:
                        await self._respond(request_id, result)
        await self._close_threads()

    async def _close_threads(self) -> None:
        loaded = [t for t in self._threads.values() if t.loaded]
        for thread in loaded:
            thread.closing.set()
        for thread in loaded:
            await thread.closed.wait()

    # -- methods ---------------------------------------------------------------------

    async def _handle(
        self, method: str, raw: Any, request_id: Any, is_request: bool
    ) -> dict[str, Any] | None:
        if not is_request:
            if method in ("initialized", "notifications/initialized"):
                return None
            logger.debug("app-server: ignoring notification %s", method)
            return None
        handler = _METHODS.get(method)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {method}")
        if method == "initialize":
            if self._initialized:
                raise RpcError(INVALID_REQUEST, "Already initialized")
        elif not self._initialized:
            raise RpcError(INVALID_REQUEST, "Not initialized: send `initialize` first")
        params = Params(raw)
        return await handler(self, params, request_id)

    async def _initialize(self, params: Params, request_id: Any) -> dict[str, Any]:
        info = params.raw.get("clientInfo")
        if not isinstance(info, dict):
            raise RpcError(
                -32602, "invalid params: missing field `clientInfo` (an object with `name` and `version`)"
            )
        client = Params(info)
        name, version = client.string("name"), client.string("version")
        self._initialized = True
        return {"userAgent": f"codex-runtime/{__version__} ({name}; {version})"}

    def _thread(self, params: Params) -> _Thread:
        thread_id = params.string("threadId")
        thread = self._threads.get(thread_id)
        if thread is None or not thread.loaded:
            hint = "; resume it with thread/resume" if thread is not None else ""
            raise RpcError(INVALID_REQUEST, f"thread not found: {thread_id}{hint}")
        return thread

    async def _known_thread(self, params: Params) -> _Thread:
        """A loaded thread, or one rebuilt from the store (not loaded)."""
        thread_id = params.string("threadId")
        thread = self._threads.get(thread_id)
        if thread is None and self.store is not None:
            stored = await self.store.get_session(thread_id)
            if stored is not None:
                thread = await self._from_store(stored)
                self._threads[thread_id] = thread
        if thread is None:
            raise RpcError(INVALID_REQUEST, f"thread not found: {thread_id}")
        return thread

    async def _from_store(self, stored: Any) -> _Thread:
        assert self.store is not None
        thread = _Thread(stored.session_id, self.instructions)
        thread.created_at, thread.updated_at = int(stored.created_at), int(stored.updated_at)
        # The conversation, cut where a user message follows the model's final answer: one
        # piece per turn whose body ran, in order (turns stored with their input match it).
        pieces: list[tuple[str, str | None]] = []
        answered = True
        for message in await self.store.load_messages(stored.session_id):
            role, content = message.get("role"), message.get("content")
            if role == "user" and answered:
                pieces.append((str(content or ""), None))
                answered = False
            elif role == "assistant" and pieces:
                answered = not message.get("tool_calls")
                if answered and content:
                    pieces[-1] = (pieces[-1][0], str(content))
        inputs: dict[str, tuple[str, str | None]] = {}
        for turn, piece in zip(sorted(stored.turns, key=lambda t: t.index), pieces, strict=False):
            inputs[turn.turn_id] = (turn.input or piece[0], piece[1])
        for turn in stored.turns:
            record = _TurnRecord(turn.turn_id)
            record.started_at = turn.started_at
            record.completed_at = turn.ended_at if turn.ended_at is not None else turn.started_at
            record.status = {"completed": "completed", "failed": "failed"}.get(turn.state, "interrupted")
            if record.status == "failed":
                record.error = {"message": turn.error or "the turn failed", "codexErrorInfo": "other"}
            user_input, final = inputs.get(turn.turn_id, (turn.input, None))
            if user_input is not None:
                content = [{"type": "text", "text": user_input, "text_elements": []}]
                record.items.append({"type": "userMessage", "id": _item_id(), "content": content})
                thread.preview = thread.preview or user_input[:200]
            for call in await self.store.tool_calls(turn.turn_id):
                ok = call.status == "ok"
                record.items.append(
                    {
                        "type": "mcpToolCall",
                        "id": f"call_{turn.turn_id[:8]}_{call.seq}",
                        "server": call.server,
                        "tool": call.tool,
                        "status": "completed" if ok else "failed",
                        "arguments": dict(call.arguments or {}),
                        "result": {"content": [{"type": "text", "text": call.result}]}
                        if call.result
                        else None,
                        "error": None if ok else {"message": call.error or call.status},
                        "durationMs": None
                        if call.ended_at is None
                        else int((call.ended_at - call.started_at) * 1000),
                        "mcpAppResourceUri": None,
                    }
                )
            if final is not None:
                record.items.append({"type": "agentMessage", "id": _item_id(), "text": final})
            thread.turns.append(record)
        return thread

    async def _load(self, thread: _Thread) -> None:
        """Start the task hosting ``thread``'s session (connecting its servers)."""
        assert self._tg is not None
        try:
            await self._tg.start(self._host, thread)
        except Exception as exc:
            raise RpcError(SERVER_ERROR, f"the thread could not start: {exc}") from None
        thread.loaded = True

    def thread_json(self, thread: _Thread, *, turns: bool = False) -> dict[str, Any]:
        status: dict[str, Any] = {"type": "active", "activeFlags": []} if thread.busy else {"type": "idle"}
        if not thread.loaded:
            status = {"type": "notLoaded"}
        return {
            "id": thread.id,
            "sessionId": thread.id,
            "preview": thread.preview,
            "ephemeral": self.store is None,
            "modelProvider": self.model_provider,
            "createdAt": thread.created_at,
            "updatedAt": thread.updated_at,
            "status": status,
            "path": None,
            "cwd": self.cwd,
            "cliVersion": __version__,
            "source": "appServer",
            "threadSource": None,
            "agentNickname": None,
            "agentRole": None,
            "gitInfo": None,
            "name": None,
            "turns": [t.to_json() for t in thread.turns] if turns else [],
        }

    def _thread_response(self, thread: _Thread, *, turns: bool) -> dict[str, Any]:
        return {
            "thread": self.thread_json(thread, turns=turns),
            "model": self.model_name,
            "modelProvider": self.model_provider,
            "serviceTier": None,
            "cwd": self.cwd,
            "instructionSources": [],
            "approvalPolicy": "never",
            "approvalsReviewer": "user",
            "sandbox": {"type": "dangerFullAccess"},
            "reasoningEffort": None,
        }

    async def _thread_start(self, params: Params, request_id: Any) -> dict[str, Any] | None:
        instructions = (
            params.optional_string("developerInstructions")
            or params.optional_string("baseInstructions")
            or self.instructions
        )
        for name in ("model", "modelProvider", "cwd"):
            params.optional_string(name)
        thread = _Thread(uuid.uuid4().hex, instructions)
        await self._load(thread)
        self._threads[thread.id] = thread
        response = self._thread_response(thread, turns=False)
        await self._respond(request_id, response)
        await self.notify("thread/started", {"thread": self.thread_json(thread)})
        return None

    async def _host(self, thread: _Thread, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own a thread's session for its whole life (structured: turns run inside)."""
        started = False
        try:
            hooks = [_Reporter(self, thread), *self.hooks()]

            async def elicit(request: ServerRequest) -> Any:
                return await self._elicit(thread, request)

            handlers = ClientHandlers(elicitation=elicit)
            async with Session(
                self.servers,
                session_id=thread.id,
                hooks=hooks,
                on_busy="reject",
                handlers=handlers,
                store=self.store,
            ) as session:
                for name, error in session.startup_errors.items():
                    logger.warning("app-server: server %r failed to start: %s", name, error)
                thread.session = session
                thread.loop = AgentLoop(
                    session,
                    self.model,
                    max_steps=self.max_steps,
                    instructions=thread.instructions,
                    on_event=lambda event: self._on_event(thread, event),
                )
                async with anyio.create_task_group() as tg:
                    thread.tg = tg
                    task_status.started()
                    started = True
                    await thread.closing.wait()
                    thread.loop.interrupt()  # the turn ends (end hooks run) before the session closes
        except Exception:
            if not started:
                raise  # thread/start answers the error
            # a fault while closing one thread costs that thread, never the server
            logger.exception("app-server: thread %s ended with an error", thread.id)
        finally:
            thread.loaded = False
            thread.closed.set()

    async def _elicit(self, thread: _Thread, request: ServerRequest) -> Any:
        """An MCP server asks the user: forward it as ``mcpServer/elicitation/request``."""
        import mcp_types

        raw = request.params.model_dump(mode="json", by_alias=True, exclude_none=True)
        params: dict[str, Any] = {
            "threadId": thread.id,
            "turnId": request.turn_id,
            "serverName": request.server,
            "_meta": raw.get("_meta"),
            "message": raw.get("message", ""),
        }
        if isinstance(request.params, mcp_types.ElicitRequestURLParams):
            params.update(mode="url", url=raw.get("url", ""), elicitationId=raw.get("elicitationId", ""))
        else:
            params.update(mode="form", requestedSchema=raw.get("requestedSchema", {"type": "object"}))
        try:
            answer = await self.request_client("mcpServer/elicitation/request", params)
        except RpcError as exc:
            logger.info("app-server: elicitation from %r not answered: %s", request.server, exc.message)
            return mcp_types.ElicitResult(action="cancel")
        action = answer.get("action") if isinstance(answer, dict) else None
        content = answer.get("content") if isinstance(answer, dict) else None
        if action not in ("accept", "decline", "cancel") or not (
            content is None or isinstance(content, dict)
        ):
            logger.info("app-server: the client's elicitation answer is malformed; the server gets cancel")
            return mcp_types.ElicitResult(action="cancel")
        try:
            return mcp_types.ElicitResult(action=action, content=content if action == "accept" else None)
        except ValueError:
            return mcp_types.ElicitResult(action="cancel")

    async def _thread_resume(self, params: Params, request_id: Any) -> dict[str, Any]:
        thread = await self._known_thread(params)
        if not thread.loaded:
            await self._load(thread)  # the session resumes: turn indexes go on, the conversation is back
        return self._thread_response(thread, turns=True)

    async def _thread_read(self, params: Params, request_id: Any) -> dict[str, Any]:
        thread = await self._known_thread(params)
        return {"thread": self.thread_json(thread, turns=params.boolean("includeTurns"))}

    async def _thread_list(self, params: Params, request_id: Any) -> dict[str, Any]:
        limit = params.count("limit") or 50
        cursor = params.optional_string("cursor")
        if self.store is not None:
            for stored in await self.store.list_sessions():
                if stored.session_id not in self._threads:
                    self._threads[stored.session_id] = await self._from_store(stored)
        threads = sorted(self._threads.values(), key=lambda t: (t.created_at, t.id), reverse=True)
        start = 0
        if cursor:
            if not cursor.isdigit():
                raise RpcError(-32602, "invalid params: `cursor` is not a cursor this server returned")
            start = int(cursor)
        page = threads[start : start + limit]
        more = start + limit < len(threads)
        return {
            "data": [self.thread_json(t) for t in page],
            "nextCursor": str(start + limit) if more else None,
            "backwardsCursor": None,
        }

    async def _turn_start(self, params: Params, request_id: Any) -> dict[str, Any] | None:
        thread = self._thread(params)
        items = params.user_input()
        if thread.busy:
            current = thread.current.id if thread.current else "starting"
            raise RpcError(
                INVALID_REQUEST,
                f"thread {thread.id} already has a turn in progress ({current}); "
                "use turn/steer to add input or turn/interrupt to end it",
            )
        assert thread.tg is not None
        thread.busy = True
        answered = anyio.Event()
        thread.pending_start = (request_id, items, answered)
        thread.tg.start_soon(self._run_turn, thread, items, request_id, answered)
        await answered.wait()  # the turn started (and was answered) or could not start
        return None

    async def _run_turn(
        self, thread: _Thread, items: list[dict[str, Any]], request_id: Any, answered: anyio.Event
    ) -> None:
        assert thread.loop is not None
        text = "\n".join(i["text"] for i in items)
        if not thread.preview:
            thread.preview = text[:200]
        try:
            await thread.loop.run_turn(text)
        except AgentError:
            pass  # the turn failed: turn/completed carries the error
        except Exception as exc:
            if thread.pending_start is not None:  # no turn was made
                thread.pending_start = None
                await self._error(request_id, RpcError(INTERNAL_ERROR, f"the turn could not start: {exc}"))
            elif not isinstance(exc, anyio.get_cancelled_exc_class()):
                logger.warning("app-server: turn on thread %s ended with %s", thread.id, type(exc).__name__)
        finally:
            thread.busy = False
            thread.current = None
            thread.pending_start = None
            thread.updated_at = _now()
            answered.set()

    async def _turn_steer(self, params: Params, request_id: Any) -> dict[str, Any]:
        thread = self._thread(params)
        expected = params.string("expectedTurnId")
        items = params.user_input()
        current = thread.current
        if current is None or current.status != "inProgress":
            raise RpcError(INVALID_REQUEST, f"no active turn to steer on thread {thread.id}")
        if current.id != expected:
            raise RpcError(
                INVALID_REQUEST, f"expectedTurnId {expected} does not match the active turn {current.id}"
            )
        assert thread.loop is not None
        thread.loop.steer("\n".join(i["text"] for i in items))
        await self._user_message(thread, current, items)
        return {"turnId": current.id}

    async def _turn_interrupt(self, params: Params, request_id: Any) -> dict[str, Any]:
        thread = self._thread(params)
        turn_id = params.string("turnId")
        current = thread.current
        if current is None or current.id != turn_id:
            raise RpcError(INVALID_REQUEST, f"turn {turn_id} is not the active turn of thread {thread.id}")
        assert thread.loop is not None
        thread.loop.interrupt()
        return {}

    # -- turn reporting --------------------------------------------------------------

    async def _user_message(
        self, thread: _Thread, record: _TurnRecord, content: list[dict[str, Any]]
    ) -> None:
        item = {"type": "userMessage", "id": _item_id(), "content": content}
        base = {"threadId": thread.id, "turnId": record.id}
        await self.notify("item/started", {**base, "item": item, "startedAtMs": _now_ms()})
        record.items.append(item)
        await self.notify("item/completed", {**base, "item": item, "completedAtMs": _now_ms()})

    async def turn_started(self, thread: _Thread, turn: Turn) -> None:
        record = _TurnRecord(turn.id)
        thread.turns.append(record)
        thread.current = record
        pending, thread.pending_start = thread.pending_start, None
        items: list[dict[str, Any]] = []
        if pending is not None:
            request_id, items, answered = pending
            await self._respond(request_id, {"turn": record.to_json(items=False)})
            answered.set()
        await self.notify("turn/started", {"threadId": thread.id, "turn": record.to_json(items=False)})
        if items:
            await self._user_message(thread, record, items)

    async def turn_ended(self, thread: _Thread, turn: Turn, outcome: TurnOutcome) -> None:
        record = next((r for r in thread.turns if r.id == turn.id), None)
        if record is None:
            return
        base = {"threadId": thread.id, "turnId": record.id}
        interrupted = outcome.state is TurnState.ABORTED
        if record.open_message is not None:
            await self._finish_message(thread, record, None)
        for item in list(record.open_tools.values()):
            reason = "the turn was interrupted" if interrupted else "the turn ended before the call finished"
            done = {**item, "status": "failed", "error": {"message": reason}}
            await self._finish_item(thread, record, done)
        record.completed_at = time.time()
        if outcome.state is TurnState.COMPLETED:
            record.status = "completed"
        elif interrupted:
            record.status = "interrupted"
        else:
            record.status = "failed"
            error = outcome.error
            message = f"{error}" if error is not None else "the turn failed"
            status = getattr(error, "status", None)
            info: Any = (
                {"httpConnectionFailed": {"httpStatusCode": status}} if isinstance(status, int) else "other"
            )
            record.error = {"message": message, "codexErrorInfo": info, "additionalDetails": None}
            await self.notify("error", {**base, "error": record.error, "willRetry": False})
        await self.notify("turn/completed", {"threadId": thread.id, "turn": record.to_json()})

    async def _finish_item(self, thread: _Thread, record: _TurnRecord, item: dict[str, Any]) -> None:
        record.open_tools.pop(item["id"], None)
        record.items.append(item)
        payload = {"threadId": thread.id, "turnId": record.id, "item": item, "completedAtMs": _now_ms()}
        await self.notify("item/completed", payload)

    async def _finish_message(self, thread: _Thread, record: _TurnRecord, text: str | None) -> None:
        item, record.open_message = record.open_message, None
        assert item is not None
        final = {"type": "agentMessage", "id": item["id"], "text": text if text is not None else item["text"]}
        record.items.append(final)
        payload = {"threadId": thread.id, "turnId": record.id, "item": final, "completedAtMs": _now_ms()}
        await self.notify("item/completed", payload)

    async def _open_message(self, thread: _Thread, record: _TurnRecord) -> dict[str, Any]:
        if record.open_message is None:
            record.open_message = {"type": "agentMessage", "id": _item_id(), "text": ""}
            payload = {"threadId": thread.id, "turnId": record.id, "startedAtMs": _now_ms()}
            await self.notify("item/started", {**payload, "item": dict(record.open_message)})
        return record.open_message

    async def _delta(self, thread: _Thread, record: _TurnRecord, text: str) -> None:
        item = await self._open_message(thread, record)
        item["text"] += text
        await self.notify(
            "item/agentMessage/delta",
            {"threadId": thread.id, "turnId": record.id, "itemId": item["id"], "delta": text},
        )

    async def _on_event(self, thread: _Thread, event: AgentEvent) -> None:
        record = thread.current
        if record is None:
            return
        base = {"threadId": thread.id, "turnId": record.id}
        if isinstance(event, TextDelta):
            await self._delta(thread, record, event.text)
        elif isinstance(event, ModelStep):
            text = event.response.text
            if text and record.open_message is None:
                await self._delta(thread, record, text)  # a model that does not stream: one delta
            if record.open_message is not None:
                await self._finish_message(thread, record, text or None)
        elif isinstance(event, ToolCallStarted):
            server, _, tool = event.call.name.partition("__")
            item = {
                "type": "mcpToolCall",
                "id": event.call.id,
                "server": event.server or server,
                "tool": event.tool or tool or event.call.name,
                "status": "inProgress",
                "arguments": dict(event.call.arguments),
                "result": None,
                "error": None,
                "durationMs": None,
                "mcpAppResourceUri": None,
                "_started": time.monotonic(),
            }
            record.open_tools[event.call.id] = item
            shown = {k: v for k, v in item.items() if not k.startswith("_")}
            await self.notify("item/started", {**base, "item": shown, "startedAtMs": _now_ms()})
        elif isinstance(event, ToolCallProgress):
            if event.call.id in record.open_tools:
                total = f"/{event.total:g}" if event.total is not None else ""
                message = event.message or f"{event.progress:g}{total}"
                await self.notify(
                    "item/mcpToolCall/progress", {**base, "itemId": event.call.id, "message": message}
                )
        elif isinstance(event, ToolCallFinished):
            result = event.result
            opened = record.open_tools.get(result.call_id)
            if opened is None:
                return
            started = opened.pop("_started", time.monotonic())
            done = {**opened, "durationMs": int((time.monotonic() - started) * 1000)}
            if result.result is not None and not result.is_error:
                done["status"] = "completed"
                done["result"] = _tool_result(result.result)
            else:
                done["status"] = "failed"
                done["error"] = {"message": result.output}
                if result.result is not None:
                    done["result"] = _tool_result(result.result)
            await self._finish_item(thread, record, done)


def _tool_result(result: Any) -> dict[str, Any]:
    content = [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]
    out: dict[str, Any] = {"content": content}
    if result.structured_content is not None:
        out["structuredContent"] = result.structured_content
    return out


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class _Reporter:
    """The first hook of every thread's session: reports turn start and end to the client.

    First, so that it runs before every other start hook and, in reverse order, after every
    other end hook: ``turn/completed`` is sent once the turn's end hooks all ran.
    """

    def __init__(self, server: AppServer, thread: _Thread) -> None:
        self._server = server
        self._thread = thread

    async def on_turn_start(self, turn: Turn) -> None:
        await self._server.turn_started(self._thread, turn)

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        await self._server.turn_ended(self._thread, turn, outcome)


_METHODS: dict[str, Callable[[AppServer, Params, Any], Awaitable[dict[str, Any] | None]]] = {
    "initialize": AppServer._initialize,
    "thread/start": AppServer._thread_start,
    "thread/resume": AppServer._thread_resume,
    "thread/read": AppServer._thread_read,
    "thread/list": AppServer._thread_list,
    "turn/start": AppServer._turn_start,
    "turn/steer": AppServer._turn_steer,
    "turn/interrupt": AppServer._turn_interrupt,
}

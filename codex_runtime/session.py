"""`Session` and `Turn`: long-lived MCP clients and a sequential turn state machine.

A `Session` owns (or borrows) `McpClient`s and runs one turn at a time. Every turn has
an id and a state (``PENDING -> RUNNING -> COMPLETED | FAILED | ABORTED``), runs its
body inside `bind_turn` and a cancel scope, and always ends cleanly: the end hooks of
every started hook run, shielded from cancellation and bounded in time, whatever
happened (success, error, interrupt, replacement, shutdown, timeout).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, Protocol, runtime_checkable

import anyio
import anyio.abc
import attrs
from mcp_types import CallToolResult, Tool

from ._context import bind_turn
from .client import McpClient, ServerConfig, ServerUnavailableError, ToolCallError
from .headers import CodexRuntimeError, Headers, HeadersInput

__all__ = [
    "AbortReason",
    "HookFailure",
    "Session",
    "SessionTool",
    "ToolCallRecord",
    "Turn",
    "TurnAbortedError",
    "TurnHandle",
    "TurnHook",
    "TurnInProgressError",
    "TurnOutcome",
    "TurnState",
    "TurnStateError",
]

logger = logging.getLogger("codex_runtime.session")


class TurnInProgressError(CodexRuntimeError):
    """A turn was started while another runs, and the session was made with ``on_busy="reject"``."""


class TurnStateError(CodexRuntimeError):
    """An operation is not allowed in the turn's current state (or an illegal transition)."""


class TurnAbortedError(CodexRuntimeError):
    """Raised inside an aborted turn's body by its in-flight ``turn.call_tool`` calls.

    The turn context swallows it: ``async with session.turn()`` exits without raising
    and the turn ends ``ABORTED``.
    """

    def __init__(self, reason: AbortReason) -> None:
        super().__init__(f"the turn was aborted ({reason.value})")
        self.reason = reason


class TurnState(enum.Enum):
    """States of a turn. ``PENDING -> RUNNING -> COMPLETED | FAILED | ABORTED`` only."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        return self in (TurnState.COMPLETED, TurnState.FAILED, TurnState.ABORTED)


_TRANSITIONS: dict[TurnState, frozenset[TurnState]] = {
    TurnState.PENDING: frozenset({TurnState.RUNNING, TurnState.FAILED, TurnState.ABORTED}),
    TurnState.RUNNING: frozenset({TurnState.COMPLETED, TurnState.FAILED, TurnState.ABORTED}),
    TurnState.COMPLETED: frozenset(),
    TurnState.FAILED: frozenset(),
    TurnState.ABORTED: frozenset(),
}


class AbortReason(enum.Enum):
    """Why a turn was aborted."""

    INTERRUPTED = "interrupted"
    REPLACED = "replaced"
    SHUTDOWN = "shutdown"
    TIMEOUT = "timeout"


@attrs.frozen
class HookFailure:
    """A hook that raised (or timed out) at turn start or end."""

    hook: str
    phase: Literal["start", "end"]
    error: BaseException

    def __str__(self) -> str:
        return f"{self.hook} ({self.phase}): {type(self.error).__name__}: {self.error}"


@attrs.frozen
class TurnOutcome:
    """How a turn ended. There is exactly one per turn."""

    state: TurnState
    abort_reason: AbortReason | None = None
    error: BaseException | None = None
    hook_errors: tuple[HookFailure, ...] = ()
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the turn completed and no hook failed."""
        return self.state is TurnState.COMPLETED and not self.hook_errors


@attrs.frozen
class ToolCallRecord:
    """One ``turn.call_tool`` as the turn saw it."""

    server: str
    tool: str
    arguments: Mapping[str, Any] | None
    started_at: float
    ended_at: float
    ok: bool
    is_error: bool = False
    error: str | None = None

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.ended_at - self.started_at


@attrs.frozen
class SessionTool:
    """A tool of one of the session's servers, with its qualified name ``server__tool``."""

    name: str
    server: str
    tool: Tool

    @property
    def description(self) -> str:
        return self.tool.description or ""

    @property
    def input_schema(self) -> dict[str, Any]:
        return dict(self.tool.input_schema)


@runtime_checkable
class TurnHook(Protocol):
    """Runs around every turn. A hook may define either method, or both.

    Start hooks run in order, in the task that runs the turn body, before the turn is
    ``RUNNING``: context variables they set (e.g. the current OpenTelemetry span) are
    visible to the body. End hooks run in reverse order, in the same task, shielded from
    cancellation and bounded by the session's ``end_hook_timeout``. Optional extra
    methods: ``on_client_added(turn, client)`` (a server added during a running turn),
    ``on_session_start(session)`` and ``on_session_end(session)``.
    """

    async def on_turn_start(self, turn: Turn) -> None: ...

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None: ...


StartFn = Callable[["Turn"], Awaitable[None]]
EndFn = Callable[["Turn", TurnOutcome], Awaitable[None]]


class _FunctionHook:
    def __init__(self, start: StartFn | None = None, end: EndFn | None = None) -> None:
        self._start = start
        self._end = end
        fn: Any = start or end
        self.name = getattr(fn, "__qualname__", repr(fn))

    async def on_turn_start(self, turn: Turn) -> None:
        if self._start is not None:
            await self._start(turn)

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        if self._end is not None:
            await self._end(turn, outcome)

    def __repr__(self) -> str:
        return f"<hook {self.name}>"


def _hook_name(hook: object) -> str:
    if isinstance(hook, _FunctionHook):
        return hook.name
    return type(hook).__name__


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError("turn metadata must be a mapping of string keys to JSON values")
    out = dict(metadata)
    for key in out:
        if not isinstance(key, str):
            raise TypeError("turn metadata keys must be strings")
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"turn metadata must be JSON-serializable ({exc})") from None
    return out


def _is_abort_error(exc: BaseException) -> bool:
    """An error that only says "this turn was aborted" (possibly grouped by a task group)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_abort_error(e) for e in exc.exceptions)
    return isinstance(exc, TurnAbortedError | anyio.get_cancelled_exc_class())


class Turn:
    """One turn of a `Session`. Created by `Session.turn` / `Session.start_turn`."""

    def __init__(
        self,
        session: Session,
        index: int,
        metadata: dict[str, Any],
        forwarded_headers: Headers,
        timeout: float | None,
    ) -> None:
        self.id: str = uuid.uuid4().hex
        self.index = index
        self.session = session
        self.metadata = metadata
        self.forwarded_headers = forwarded_headers
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.outcome: TurnOutcome | None = None
        self._state = TurnState.PENDING
        self._tool_calls: list[ToolCallRecord] = []
        self._scope: anyio.CancelScope | None = None
        self._call_scopes: set[anyio.CancelScope] = set()
        self._abort_reason: AbortReason | None = None
        self._ended = anyio.Event()
        self._timeout = timeout
        self._t0 = time.monotonic()
        self._start_failure: HookFailure | None = None

    @property
    def session_id(self) -> str:
        """The owning session's id."""
        return self.session.session_id

    @property
    def state(self) -> TurnState:
        """The current state."""
        return self._state

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """Records of the tool calls made through `call_tool` so far."""
        return list(self._tool_calls)

    @property
    def abort_reason(self) -> AbortReason | None:
        """Why the turn is being (or was) aborted, if it is."""
        return self._abort_reason

    def __repr__(self) -> str:
        return f"<Turn #{self.index} {self.id} {self._state.value}>"

    def _transition(self, new: TurnState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise TurnStateError(f"illegal turn transition {self._state.value} -> {new.value} (turn {self.id})")
        self._state = new

    async def call_tool(
        self,
        server: str,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        headers: HeadersInput | None = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> CallToolResult:
        """Call ``tool`` on ``server`` as part of this turn, and record it.

        Raises `TurnStateError` when the turn is not running, `TurnAbortedError` when it
        is aborted meanwhile (the server is told to cancel), and the client's errors
        (`ToolCallError`, `ServerUnavailableError`, `InvalidHeaderError`).
        """
        if self._state is not TurnState.RUNNING:
            raise TurnStateError(f"turn {self.id} is {self._state.value}; tools can be called only while running")
        if self._abort_reason is not None:
            raise TurnAbortedError(self._abort_reason)
        client = self.session.clients.get(server)
        if client is None:
            raise ToolCallError(server, tool, "no such server in this session")
        started = time.time()
        ok = False
        is_error = False
        error: str | None = None
        scope = anyio.CancelScope()
        self._call_scopes.add(scope)
        try:
            with scope, bind_turn(self.id):
                result = await client.call_tool(tool, arguments, headers=headers, meta=meta, timeout=timeout)
                ok = True
                is_error = bool(result.is_error)
                return result
            # Only reached when `scope` absorbed a cancellation: this turn was aborted.
            error = "aborted"
            raise TurnAbortedError(self._abort_reason or AbortReason.INTERRUPTED)
        except BaseException as exc:
            if error is None:
                error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._call_scopes.discard(scope)
            self._tool_calls.append(
                ToolCallRecord(
                    server=server,
                    tool=tool,
                    arguments=dict(arguments) if arguments is not None else None,
                    started_at=started,
                    ended_at=time.time(),
                    ok=ok,
                    is_error=is_error,
                    error=error,
                )
            )

    def interrupt(self) -> None:
        """Abort the turn with reason ``interrupted``. A no-op once it is ending or ended."""
        self.abort(AbortReason.INTERRUPTED)

    def abort(self, reason: AbortReason) -> None:
        """Abort the turn: cancel its in-flight tool calls, then, after the session's grace
        period, the body. Aborting twice (or an ended turn) is a no-op."""
        if self._abort_reason is not None or self._state.is_terminal:
            return
        self._abort_reason = reason
        for call_scope in list(self._call_scopes):
            call_scope.cancel()
        scope = self._scope
        if scope is None:
            return
        grace = self.session.abort_grace
        if grace <= 0:
            scope.cancel()
        else:
            scope.deadline = min(scope.deadline, anyio.current_time() + grace)

    async def wait_ended(self) -> TurnOutcome:
        """Wait until the turn has ended (its end hooks included) and return its outcome."""
        await self._ended.wait()
        assert self.outcome is not None
        return self.outcome


class TurnHandle:
    """A turn running in a task owned by the session (see `Session.start_turn`)."""

    def __init__(self) -> None:
        self._turn: Turn | None = None
        self._done = anyio.Event()
        self._started = anyio.Event()
        self._error: BaseException | None = None

    @property
    def turn(self) -> Turn:
        """The turn."""
        if self._turn is None:
            raise TurnStateError("the turn has not been created yet")
        return self._turn

    @property
    def done(self) -> bool:
        """Whether the turn has ended."""
        return self._done.is_set()

    def interrupt(self) -> None:
        """Abort the turn with reason ``interrupted``."""
        if self._turn is not None:
            self._turn.interrupt()

    async def wait(self) -> TurnOutcome:
        """Wait for the turn to end; return its `TurnOutcome`."""
        await self._done.wait()
        if self._turn is None or self._turn.outcome is None:
            raise TurnStateError(f"the turn could not start: {self._error!r}")
        return self._turn.outcome


OnBusy = Literal["replace", "reject"]


class Session:
    """MCP clients plus a one-turn-at-a-time state machine with lifecycle hooks.

    Args:
        servers: `ServerConfig`s whose clients the session owns (connects on enter,
            closes on exit).
        clients: Already-connected shared `McpClient`s the session uses but never closes.
        session_id: Defaults to a random id.
        hooks: `TurnHook`s, run in order at turn start and in reverse at turn end.
        on_busy: ``"replace"`` aborts a running turn (reason ``replaced``) and waits for
            its end hooks before the new one starts; ``"reject"`` raises
            `TurnInProgressError`.
        end_hook_timeout: Seconds allowed for each end hook (default 5).
        abort_grace: Seconds an aborted turn's body gets, after its in-flight tool calls
            are cancelled, before it is cancelled itself (default 0.1).
        turn_timeout: Default seconds a turn may run before it is aborted (``timeout``).
    """

    def __init__(
        self,
        servers: Iterable[ServerConfig] = (),
        *,
        clients: Iterable[McpClient] = (),
        session_id: str | None = None,
        hooks: Iterable[object] = (),
        on_busy: OnBusy = "replace",
        end_hook_timeout: float = 5.0,
        abort_grace: float = 0.1,
        turn_timeout: float | None = None,
    ) -> None:
        self._configs = list(servers)
        self._shared = list(clients)
        for cfg in self._configs:
            if not isinstance(cfg, ServerConfig):
                raise TypeError("Session(servers=...) takes ServerConfig objects")
        for client in self._shared:
            if not isinstance(client, McpClient):
                raise TypeError("Session(clients=...) takes McpClient objects")
        names = [c.name for c in self._configs] + [c.name for c in self._shared]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"server names must be unique in a session; repeated: {', '.join(duplicates)}")
        if on_busy not in ("replace", "reject"):
            raise ValueError("on_busy must be 'replace' or 'reject'")
        for label, value in (("end_hook_timeout", end_hook_timeout), ("abort_grace", abort_grace)):
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{label} must be a finite number of seconds >= 0")
        if session_id is not None and (not isinstance(session_id, str) or not session_id):
            raise ValueError("session_id must be a non-empty string")
        self.session_id: str = session_id or uuid.uuid4().hex
        self.on_busy: OnBusy = on_busy
        self.end_hook_timeout = float(end_hook_timeout)
        self.abort_grace = float(abort_grace)
        self.turn_timeout = turn_timeout
        self._hooks: list[object] = []
        for hook in hooks:
            self.add_hook(hook)
        self._clients: dict[str, McpClient] = {}
        self.startup_errors: dict[str, BaseException] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = anyio.Event()
        self._host_done: dict[str, anyio.Event] = {}
        self._current: Turn | None = None
        self._begin_lock = anyio.Lock()
        self._turn_count = 0
        self._entered = False

    # -- configuration -------------------------------------------------------------

    def add_hook(self, hook: object) -> None:
        """Register a `TurnHook` (an object with ``on_turn_start`` and/or ``on_turn_end``)."""
        if not (hasattr(hook, "on_turn_start") or hasattr(hook, "on_turn_end")):
            raise TypeError(f"{hook!r} is not a turn hook: it has neither on_turn_start nor on_turn_end")
        self._hooks.append(hook)

    def on_turn_start(self, fn: StartFn) -> StartFn:
        """Decorator: run ``async def fn(turn)`` at every turn start."""
        self.add_hook(_FunctionHook(start=fn))
        return fn

    def on_turn_end(self, fn: EndFn) -> EndFn:
        """Decorator: run ``async def fn(turn, outcome)`` at every turn end."""
        self.add_hook(_FunctionHook(end=fn))
        return fn

    @property
    def hooks(self) -> tuple[object, ...]:
        """The registered hooks, in start order."""
        return tuple(self._hooks)

    @property
    def clients(self) -> Mapping[str, McpClient]:
        """Connected clients by server name (owned and shared)."""
        return dict(self._clients)

    @property
    def apps_clients(self) -> list[McpClient]:
        """Clients of servers configured with ``apps=True``."""
        return [c for c in self._clients.values() if c.config.apps]

    @property
    def current_turn(self) -> Turn | None:
        """The turn that is running or ending, if any."""
        return self._current

    def __repr__(self) -> str:
        return f"<Session {self.session_id} servers={sorted(self._clients)}>"

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Session:
        if self._entered:
            raise RuntimeError("a Session can be entered only once")
        self._entered = True
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            for client in self._shared:
                self._clients[client.name] = client
            async with anyio.create_task_group() as starting:
                for cfg in self._configs:
                    starting.start_soon(self._start_owned, cfg, False)
            failed_required = [n for n, _ in self.startup_errors.items() if self._config_of(n).required]
            if failed_required:
                name = failed_required[0]
                raise ServerUnavailableError(
                    name, f"required server failed to start: {self.startup_errors[name]}"
                )
            for hook in self._hooks:
                starter = getattr(hook, "on_session_start", None)
                if starter is not None:
                    await starter(self)
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()

    def _config_of(self, name: str) -> ServerConfig:
        for cfg in self._configs:
            if cfg.name == name:
                return cfg
        raise KeyError(name)

    async def _start_owned(self, cfg: ServerConfig, raise_errors: bool) -> None:
        ready = anyio.Event()
        error: list[BaseException] = []
        assert self._tg is not None
        done = anyio.Event()
        self._host_done[cfg.name] = done
        self._tg.start_soon(self._host_client, cfg, ready, error, done)
        await ready.wait()
        if error:
            self.startup_errors[cfg.name] = error[0]
            logger.warning("MCP server %r failed to start: %s", cfg.name, error[0])
            if raise_errors:
                raise error[0]

    async def _host_client(
        self, cfg: ServerConfig, ready: anyio.Event, error: list[BaseException], done: anyio.Event
    ) -> None:
        """Owner task of one owned client: connect, serve until the session closes, close."""
        client = McpClient(cfg)
        try:
            await client.connect()
        except Exception as exc:
            error.append(exc)
            ready.set()
            done.set()
            return
        self._clients[cfg.name] = client
        ready.set()
        try:
            await self._closing.wait()
        finally:
            # `aclose` shields its own cleanup; it must exit the client's task group
            # from this task, outside any other cancel scope.
            try:
                await client.aclose()
            finally:
                done.set()

    async def _shutdown(self) -> None:
        with anyio.CancelScope(shield=True):
            current = self._current
            if current is not None and not current.state.is_terminal:
                current.abort(AbortReason.SHUTDOWN)
                with anyio.move_on_after(self.end_hook_timeout * (len(self._hooks) + 1) + 1):
                    await current._ended.wait()
            for hook in reversed(self._hooks):
                ender = getattr(hook, "on_session_end", None)
                if ender is not None:
                    try:
                        with anyio.move_on_after(self.end_hook_timeout):
                            await ender(self)
                    except Exception:
                        logger.exception("on_session_end of %s failed", _hook_name(hook))
        self._closing.set()
        tg, self._tg = self._tg, None
        if tg is not None:
            try:
                await tg.__aexit__(None, None, None)
            finally:
                self._clients.clear()

    async def add_server(self, config: ServerConfig) -> McpClient:
        """Connect another server for the rest of the session (its client is owned).

        A turn that is running gets it through the same hook paths (``on_client_added``).
        Raises `ServerUnavailableError` when it cannot connect, `ValueError` on a name clash.
        """
        if not isinstance(config, ServerConfig):
            raise TypeError("add_server() takes a ServerConfig")
        if self._tg is None:
            raise RuntimeError("the session is not open")
        if config.name in self._clients or config.name in self._host_done:
            raise ValueError(f"a server named {config.name!r} is already in this session")
        self._configs.append(config)
        try:
            await self._start_owned(config, True)
        except BaseException:
            self._configs.remove(config)
            self._host_done.pop(config.name, None)
            self.startup_errors.pop(config.name, None)
            raise
        client = self._clients[config.name]
        turn = self._current
        if turn is not None and turn.state is TurnState.RUNNING:
            for hook in self._hooks:
                added = getattr(hook, "on_client_added", None)
                if added is not None:
                    await added(turn, client)
        return client

    async def list_tools(self) -> list[SessionTool]:
        """Every tool of every connected server, named ``server__tool``."""
        out: list[SessionTool] = []
        for name, client in list(self._clients.items()):
            try:
                tools = await client.list_tools()
            except ServerUnavailableError as exc:
                logger.warning("listing tools of %r failed: %s", name, exc)
                continue
            out.extend(SessionTool(name=f"{name}__{t.name}", server=name, tool=t) for t in tools)
        return out

    # -- turns ---------------------------------------------------------------------

    def turn(
        self,
        *,
        metadata: Mapping[str, Any] | None = None,
        forwarded_headers: HeadersInput | None = None,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[Turn]:
        """Run a turn around the ``async with`` block, yielding the `Turn`.

        Leaving the block normally completes the turn; an exception fails it and
        propagates after the end hooks ran; an abort cancels the block, which then exits
        without raising (``turn.outcome.state`` is ``ABORTED``). A failing start hook
        fails the turn before the block runs: its error is raised. ``metadata`` is a
        JSON-serializable mapping the body may update; ``forwarded_headers`` are the
        incoming request's headers (`Headers`, a mapping, or (name, value) pairs).
        """
        return self._turn_context(metadata, forwarded_headers, timeout, None)

    @asynccontextmanager
    async def _turn_context(
        self,
        metadata: Mapping[str, Any] | None,
        forwarded_headers: HeadersInput | None,
        timeout: float | None,
        on_created: Callable[[Turn], None] | None,
    ) -> AsyncIterator[Turn]:
        turn = await self._begin(metadata, forwarded_headers, timeout)
        if on_created is not None:
            on_created(turn)
        started = await self._run_start_hooks(turn)
        if turn.outcome is not None or turn.state is TurnState.FAILED:
            # A start hook failed: the turn never ran.
            await self._finish(turn, started)
            assert turn.outcome is not None and turn.outcome.error is not None
            raise turn.outcome.error
        error: BaseException | None = None
        outer_cancel = False
        scope = anyio.CancelScope()
        if turn._timeout is not None:
            scope.deadline = anyio.current_time() + turn._timeout
        turn._scope = scope
        try:
            with scope, bind_turn(turn.id):
                if turn._abort_reason is not None:
                    scope.cancel()
                try:
                    yield turn
                except TurnAbortedError:
                    if turn._abort_reason is None:
                        raise
        except anyio.get_cancelled_exc_class():
            outer_cancel = True
            if turn._abort_reason is None:
                turn._abort_reason = AbortReason.INTERRUPTED
            with anyio.CancelScope(shield=True):
                await self._finish(turn, started)
            raise
        except BaseException as exc:
            error = exc
        finally:
            turn._scope = None
        if not outer_cancel:
            if error is None and scope.cancelled_caught and turn._abort_reason is None:
                turn._abort_reason = AbortReason.TIMEOUT
            with anyio.CancelScope(shield=True):
                await self._finish(turn, started, error)
            if error is not None and turn.state is TurnState.FAILED:
                raise error

    async def start_turn(
        self,
        body: Callable[[Turn], Awaitable[Any]],
        *,
        metadata: Mapping[str, Any] | None = None,
        forwarded_headers: HeadersInput | None = None,
        timeout: float | None = None,
    ) -> TurnHandle:
        """Run ``await body(turn)`` as a turn in a task owned by the session.

        Returns once the turn is ``RUNNING`` (or has already failed to start). Errors of
        the body are recorded in the outcome, not raised here.
        """
        if self._tg is None:
            raise RuntimeError("the session is not open")
        # Validate eagerly so that bad input raises here, before any task starts.
        _check_metadata(metadata)
        if forwarded_headers is not None and not isinstance(forwarded_headers, Headers):
            forwarded_headers = Headers(forwarded_headers)
        if self.on_busy == "reject" and self._current is not None:
            raise TurnInProgressError(f"turn {self._current.id} is still in progress")
        handle = TurnHandle()

        def created(turn: Turn) -> None:
            handle._turn = turn

        async def runner() -> None:
            try:
                async with self._turn_context(metadata, forwarded_headers, timeout, created) as turn:
                    handle._started.set()
                    await body(turn)
            except anyio.get_cancelled_exc_class():
                raise
            except BaseException as exc:
                handle._error = exc
                logger.debug("turn body ended with %s", type(exc).__name__)
            finally:
                handle._started.set()
                handle._done.set()

        self._tg.start_soon(runner)
        await handle._started.wait()
        return handle

    async def _begin(
        self, metadata: Mapping[str, Any] | None, forwarded: HeadersInput | None, timeout: float | None
    ) -> Turn:
        if self._tg is None:
            raise RuntimeError("the session is not open (use `async with Session(...)`)")
        meta = _check_metadata(metadata)
        headers = forwarded if isinstance(forwarded, Headers) else Headers(forwarded or ())
        if timeout is None:
            timeout = self.turn_timeout
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise ValueError("turn timeout must be a positive number of seconds")
        async with self._begin_lock:
            current = self._current
            if current is not None:
                if self.on_busy == "reject":
                    raise TurnInProgressError(
                        f"turn {current.id} is still in progress (the session rejects concurrent turns)"
                    )
                current.abort(AbortReason.REPLACED)
                await current._ended.wait()
            self._turn_count += 1
            turn = Turn(self, self._turn_count, meta, headers, timeout)
            self._current = turn
            return turn

    async def _run_start_hooks(self, turn: Turn) -> list[object]:
        started: list[object] = []
        turn.started_at = time.time()
        for hook in self._hooks:
            start = getattr(hook, "on_turn_start", None)
            started.append(hook)
            if start is None:
                continue
            try:
                await start(turn)
            except Exception as exc:
                logger.warning("on_turn_start of %s failed: %s: %s", _hook_name(hook), type(exc).__name__, exc)
                turn._start_failure = HookFailure(_hook_name(hook), "start", exc)
                turn._transition(TurnState.FAILED)
                return started
            if turn._abort_reason is not None:
                # Replaced or shut down while starting: never run the body.
                return started
        turn._transition(TurnState.RUNNING)
        return started

    async def _finish(self, turn: Turn, started: list[object], error: BaseException | None = None) -> None:
        """Settle the state, run end hooks (reverse order, each shielded and bounded)."""
        start_failure = turn._start_failure
        failures: list[HookFailure] = [start_failure] if start_failure is not None else []
        if start_failure is not None:
            state = TurnState.FAILED
            error = start_failure.error
        elif turn._abort_reason is not None and (error is None or _is_abort_error(error)):
            state = TurnState.ABORTED
            error = None
        elif error is not None:
            state = TurnState.FAILED
        else:
            state = TurnState.COMPLETED
        if turn.state is not state:
            turn._transition(state)
        turn.ended_at = time.time()
        duration = time.monotonic() - turn._t0
        reason = turn._abort_reason if state is TurnState.ABORTED else None
        draft = TurnOutcome(state, reason, error, tuple(failures), duration)
        for hook in reversed(started):
            end = getattr(hook, "on_turn_end", None)
            if end is None:
                continue
            try:
                with anyio.CancelScope(shield=True) as guard:
                    guard.deadline = anyio.current_time() + self.end_hook_timeout
                    await end(turn, draft)
                if guard.cancelled_caught:
                    raise TimeoutError(f"on_turn_end took longer than {self.end_hook_timeout:g} s")
            except Exception as exc:
                logger.warning("on_turn_end of %s failed: %s: %s", _hook_name(hook), type(exc).__name__, exc)
                failures.append(HookFailure(_hook_name(hook), "end", exc))
        turn.outcome = TurnOutcome(state, reason, error, tuple(failures), duration)
        if self._current is turn:
            self._current = None
        turn._ended.set()

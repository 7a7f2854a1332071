"""`Session` and `Turn`: long-lived MCP clients and a sequential turn state machine.

A `Session` owns (or borrows) `McpClient`s and runs one turn at a time. Every turn has
an id and a state (``PENDING -> RUNNING -> COMPLETED | FAILED | ABORTED``), runs its
hooks and body inside `bind_turn` and a cancel scope, and always ends cleanly: the end
hooks of every started hook run, shielded from cancellation and bounded in time,
whatever happened (success, error, interrupt, replacement, shutdown, timeout).

Aborting a turn is two-staged, as in Codex: its in-flight ``turn.call_tool`` calls are
cancelled at once (the SDK tells the server), which raises `TurnAbortedError` in the
body; after a grace period (``abort_grace``, default 0.1 s) the body itself is cancelled.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Literal, cast

import anyio
import anyio.abc
import attrs
from mcp_types import CallToolResult, GetPromptResult, ReadResourceResult, TextContent, Tool

from . import _session_features
from ._context import _TURN_ID, current_turn_id
from ._handlers import ClientHandlers, ProgressCallback
from ._session_features import SessionPrompt, SessionResource
from ._session_store import SessionRecorder, SessionStore
from ._tool_hooks import (
    PromptDecision,
    StopDecision,
    ToolCallDenied,
    ToolCallRequest,
    ToolCallStatus,
    ToolDecision,
)
from ._trace import _TOOL_CALL_ID
from ._turn_model import (
    _TRANSITIONS,
    AbortReason,
    HookFailure,
    HookPhase,
    SessionTool,
    ToolCallRecord,
    TurnAbortedError,
    TurnHook,
    TurnInProgressError,
    TurnOutcome,
    TurnState,
    TurnStateError,
)
from .client import McpClient, ServerConfig, ServerUnavailableError, ToolCallError, ToolTimeoutError
from .headers import (
    MAX_TOTAL_BYTES,
    MAX_VALUE_BYTES,
    CodexRuntimeError,
    Headers,
    HeadersInput,
    InvalidHeaderError,
    _raw_pairs,
    is_valid_name,
    is_valid_value,
)

__all__ = [
    "AbortReason",
    "HookFailure",
    "PromptDecision",
    "Session",
    "SessionPrompt",
    "SessionResource",
    "SessionTool",
    "StopDecision",
    "ToolCallDenied",
    "ToolCallRecord",
    "ToolCallRequest",
    "ToolCallStatus",
    "ToolDecision",
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


StartFn = Callable[["Turn"], Awaitable[None]]
EndFn = Callable[["Turn", TurnOutcome], Awaitable[None]]
ToolStartFn = Callable[["Turn", ToolCallRequest], Awaitable[ToolDecision | None]]
ToolEndFn = Callable[["Turn", ToolCallRequest, ToolCallRecord], Awaitable[None]]

#: The methods that make an object a hook (each optional).
_HOOK_METHODS = (
    "on_turn_start",
    "on_turn_end",
    "on_tool_call_start",
    "on_tool_call_end",
    "on_user_prompt",
    "on_stop",
    "on_session_start",
    "on_session_end",
)


class _FunctionHook:
    """A plain async function registered with ``@session.on_turn_start`` / ``on_turn_end``."""

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


class _ToolStartFunction:
    """A plain async function registered with ``@session.on_tool_call_start``."""

    def __init__(self, fn: ToolStartFn) -> None:
        self.on_tool_call_start = fn
        self.name = getattr(fn, "__qualname__", repr(fn))


class _ToolEndFunction:
    """A plain async function registered with ``@session.on_tool_call_end``."""

    def __init__(self, fn: ToolEndFn) -> None:
        self.on_tool_call_end = fn
        self.name = getattr(fn, "__qualname__", repr(fn))


def _hook_name(hook: object) -> str:
    if isinstance(hook, _FunctionHook | _ToolStartFunction | _ToolEndFunction):
        return hook.name
    return type(hook).__name__


def _call_status(exc: BaseException, aborted: bool) -> tuple[ToolCallStatus, str]:
    """How a call that raised ``exc`` ended, and the error its record gives."""
    if isinstance(exc, ToolCallDenied):
        return ToolCallStatus.DENIED, exc.reason
    if aborted or _is_abort_error(exc):
        return ToolCallStatus.CANCELLED, "aborted"
    if isinstance(exc, ToolTimeoutError):
        status = ToolCallStatus.TIMEOUT
    elif isinstance(exc, ServerUnavailableError):
        status = ToolCallStatus.UNAVAILABLE
    else:
        status = ToolCallStatus.ERROR
    return status, f"{type(exc).__name__}: {exc}"


def _check_json_object(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    out = dict(value)
    if not all(isinstance(k, str) for k in out):
        raise TypeError(f"{what} keys must be strings")
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise TypeError(f"{what} must be a JSON object (JSON-serializable values)") from None
    return out


_NO_HEADERS = Headers(())


def _incoming(forwarded: HeadersInput | None) -> tuple[Headers, HeadersInput]:
    """A turn's incoming headers: (the valid ones, as `Headers`; all of them, as given).

    Only a forwarding policy knows which incoming headers leave the process, so only the
    headers it forwards may refuse a turn (see `ForwardHeaders`): an invalid header here,
    say a 9 KiB cookie, is left out of the `Headers` rather than refusing the turn. The
    input's shape (a mapping or (name, value) pairs) is checked here.
    """
    if forwarded is None:
        return _NO_HEADERS, _NO_HEADERS
    if isinstance(forwarded, Headers):
        return forwarded, forwarded
    # Shape checked; names and values may be anything yet.
    pairs = cast("tuple[tuple[str, str], ...]", tuple(_raw_pairs(forwarded)))
    try:
        return Headers(pairs), pairs
    except InvalidHeaderError:
        kept: list[tuple[str, str]] = []
        size = 0
        for name, value in pairs:
            if not (isinstance(name, str) and is_valid_name(name) and is_valid_value(value)):
                continue
            if len(value) > MAX_VALUE_BYTES or size + len(name) + len(value) > MAX_TOTAL_BYTES:
                continue
            kept.append((name, value))
            size += len(name) + len(value)
        return Headers(kept), pairs


def _as_headers(headers: HeadersInput | None) -> Headers:
    if headers is None:
        return _NO_HEADERS
    return headers if isinstance(headers, Headers) else Headers(headers)


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    # Only the shape: hooks that send metadata (`TurnHeaders`) check what they send.
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError("turn metadata must be a mapping of string keys to JSON values")
    out = dict(metadata)
    for key in out:
        if not isinstance(key, str):
            raise TypeError("turn metadata keys must be strings")
    return out


def _check_timeout(timeout: float | None, what: str) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"{what} must be a positive number of seconds (or None)")
    return float(timeout)


def _only_cancellation(exc: BaseException) -> bool:
    """The backend's cancellation, possibly grouped by task groups."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancellation(e) for e in exc.exceptions)
    return isinstance(exc, anyio.get_cancelled_exc_class())


def _is_abort_error(exc: BaseException) -> bool:
    """An error that only says "this turn was aborted" (possibly grouped by a task group)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_abort_error(e) for e in exc.exceptions)
    return isinstance(exc, TurnAbortedError | anyio.get_cancelled_exc_class())


def _error_text(result: CallToolResult) -> str:
    for item in result.content:
        if isinstance(item, TextContent) and item.text:
            return f"tool error: {item.text[:200]}"
    return "tool error"


class Turn:
    """One turn of a `Session`. Created by `Session.turn` / `Session.start_turn`.

    ``metadata`` is a dict the body may update while the turn runs: hooks that send it
    (`TurnHeaders`) read it when each request is sent. ``forwarded_headers`` holds the
    valid incoming headers; an invalid one is left out of it rather than refusing the turn,
    and only a forwarding policy that forwards it (`ForwardHeaders`, the provider's
    `HeaderPolicy`) refuses it.
    """

    def __init__(
        self,
        session: Session,
        index: int,
        metadata: dict[str, Any],
        forwarded_headers: Headers,
        timeout: float | None,
        turn_id: str | None = None,
    ) -> None:
        self.id: str = turn_id or os.urandom(16).hex()
        self.index = index
        self.session = session
        self.metadata = metadata
        self.forwarded_headers = forwarded_headers
        # The incoming headers as given, invalid ones included, for forwarding policies.
        self._forwarded_input: HeadersInput = forwarded_headers
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.outcome: TurnOutcome | None = None
        self._state = TurnState.PENDING
        self._tool_calls: list[ToolCallRecord] = []
        # What an abort hard-cancels after the grace period: the start hooks and the body.
        self._scope: anyio.CancelScope | None = None
        self._call_scopes: set[anyio.CancelScope] = set()
        self._watchdog: anyio.CancelScope | None = None
        self._abort_reason: AbortReason | None = None
        self._ended: anyio.Event | None = None  # made only when someone waits
        self._timeout = timeout
        self._t0 = time.monotonic()
        self._start_failure: HookFailure | None = None
        self._hook_failures: list[HookFailure] = []
        self._context: list[str] = []

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
        """Records of the tool calls made through `call_tool` that have finished so far."""
        return list(self._tool_calls)

    @property
    def abort_reason(self) -> AbortReason | None:
        """Why the turn is being (or was) aborted, if it is."""
        return self._abort_reason

    def __repr__(self) -> str:
        return f"<Turn #{self.index} {self.id} {self._state.value}>"

    def _transition(self, new: TurnState) -> None:
        """Move to ``new``; raises `TurnStateError` for anything but the legal transitions."""
        if new not in _TRANSITIONS[self._state]:
            raise TurnStateError(
                f"illegal turn transition {self._state.value} -> {new.value} (turn {self.id})"
            )
        self._state = new
        if self.session._recorder is not None:
            self.session._recorder.state_changed(self, new)

    async def call_tool(
        self,
        server: str,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        headers: HeadersInput | None = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        call_id: str | None = None,
    ) -> CallToolResult:
        """Call ``tool`` on ``server`` as part of this turn, and record it.

        ``on_progress(progress, total, message)`` (sync or async) sees the call's
        progress notifications. The session's tool-call hooks run around the call, inside
        the turn: start hooks may deny it (`ToolCallDenied` is raised; the server never
        receives it) or rewrite its arguments, headers and ``_meta``; end hooks see how it
        ended. ``call_id`` names the call for hooks and records (default: a new random id).

        Raises `TurnAbortedError` when the turn is aborted (before or during the call; the
        server is told to cancel), `TurnStateError` when the turn is not running, and the
        client's errors (`ToolCallError`, `ServerUnavailableError`, `InvalidHeaderError`).
        """
        if self._abort_reason is not None:
            raise TurnAbortedError(self._abort_reason)
        if self._state is not TurnState.RUNNING:
            raise TurnStateError(
                f"turn {self.id} is {self._state.value}; tools can be called only while it runs"
            )
        client = self.session._clients.get(server)
        if client is None:
            raise ToolCallError(server, tool, "no such server in this session")
        if call_id is None:
            call_id = os.urandom(8).hex()
        elif not isinstance(call_id, str) or not call_id:
            raise TypeError("call_tool() call_id must be a non-empty string")
        if arguments is not None and not isinstance(arguments, Mapping):
            raise TypeError("call_tool() arguments must be a mapping (a JSON object)")
        starts, ends = self.session._tool_hooks
        request: ToolCallRequest | None = None
        started = time.time()
        status = ToolCallStatus.CANCELLED
        is_error = False
        error: str | None = None
        result: CallToolResult | None = None
        scope = anyio.CancelScope()
        self._call_scopes.add(scope)
        turn_token = _TURN_ID.set(self.id)
        call_token = _TOOL_CALL_ID.set(call_id)  # for the call's span (see `bind_tool_call_id`)
        try:
            with scope:
                if starts or ends:
                    request = ToolCallRequest(
                        call_id,
                        server,
                        tool,
                        dict(arguments) if arguments is not None else {},
                        _as_headers(headers),
                        dict(meta) if meta is not None else {},
                    )
                    if starts:
                        request = await self._run_tool_start_hooks(starts, request)
                        arguments, headers, meta = request.arguments, request.headers, request.meta
                result = await client.call_tool(
                    tool, arguments, headers=headers, meta=meta, timeout=timeout, on_progress=on_progress
                )
                is_error = bool(result.is_error)
                if is_error:
                    status = ToolCallStatus.ERROR
                    error = _error_text(result)
                else:
                    status = ToolCallStatus.OK
                return result
            # Only reached when `scope` absorbed its cancellation: this turn was aborted.
            error = "aborted"
            raise TurnAbortedError(self._abort_reason or AbortReason.INTERRUPTED)
        except BaseException as exc:
            if error is None:
                status, error = _call_status(exc, scope.cancel_called)
            if scope.cancel_called and isinstance(exc, Exception) and not isinstance(exc, TurnAbortedError):
                # The abort made the call fail some other way (e.g. its connection was cut).
                raise TurnAbortedError(self._abort_reason or AbortReason.INTERRUPTED) from exc
            raise
        finally:
            _TOOL_CALL_ID.reset(call_token)
            _TURN_ID.reset(turn_token)
            self._call_scopes.discard(scope)
            record = ToolCallRecord(
                server=server,
                tool=tool,
                arguments=dict(arguments) if arguments is not None else None,
                started_at=started,
                ended_at=time.time(),
                ok=status is ToolCallStatus.OK,
                is_error=is_error,
                error=error,
                status=status,
                call_id=call_id,
                result=result,
            )
            self._tool_calls.append(record)
            if self.session._recorder is not None:
                self.session._recorder.tool_call(self, record, result)
            if request is not None and ends:
                await self._run_tool_end_hooks(ends, request, record)

    async def _run_tool_start_hooks(
        self, hooks: tuple[object, ...], request: ToolCallRequest
    ) -> ToolCallRequest:
        """Run the start hooks in order; return the request as rewritten, or raise
        `ToolCallDenied`. A hook that fails (or returns an invalid rewrite) denies the call:
        it is never sent unchecked."""
        for hook in hooks:
            try:
                decision = await hook.on_tool_call_start(self, request)  # type: ignore[attr-defined]
                if decision is None:
                    continue
                if not isinstance(decision, ToolDecision):
                    raise TypeError(
                        f"on_tool_call_start returned {type(decision).__name__}, not a ToolDecision or None"
                    )
                if decision.action == "update":
                    changes: dict[str, Any] = {}
                    if decision.arguments is not None:
                        changes["arguments"] = _check_json_object(decision.arguments, "rewritten arguments")
                    if decision.headers is not None:
                        changes["headers"] = decision.headers
                    if decision.meta is not None:
                        changes["meta"] = _check_json_object(decision.meta, "rewritten _meta")
                    request = attrs.evolve(request, **changes)
                    continue
            except Exception as exc:
                name = _hook_name(hook)
                logger.warning("on_tool_call_start of %s failed; the call is denied", name, exc_info=exc)
                self.report_hook_failure(name, "tool_call_start", exc)
                raise ToolCallDenied(
                    request.server, request.tool, f"the hook {name} failed ({type(exc).__name__})", hook=name
                ) from None
            assert decision.reason is not None
            raise ToolCallDenied(request.server, request.tool, decision.reason, hook=_hook_name(hook))
        return request

    async def _run_tool_end_hooks(
        self, hooks: tuple[object, ...], request: ToolCallRequest, record: ToolCallRecord
    ) -> None:
        """Run every end hook in reverse order, each shielded and bounded; failures are
        reported in the turn's outcome and never stop the others."""
        bound = self.session.end_hook_timeout
        for hook in hooks:
            try:
                with anyio.CancelScope(shield=True, deadline=anyio.current_time() + bound) as guard:
                    await hook.on_tool_call_end(self, request, record)  # type: ignore[attr-defined]
                if guard.cancelled_caught:
                    raise TimeoutError(f"on_tool_call_end took longer than {bound:g} s")
            except Exception as exc:
                logger.warning("on_tool_call_end of %s failed", _hook_name(hook), exc_info=exc)
                self.report_hook_failure(_hook_name(hook), "tool_call_end", exc)

    def report_hook_failure(self, hook: str, phase: HookPhase, error: BaseException) -> None:
        """Record a hook's failure that did not stop the turn; it is listed in the turn's
        ``outcome.hook_errors``. (`CodexHooks` reports its failed commands here.)"""
        self._hook_failures.append(HookFailure(hook, phase, error))

    def add_context(self, text: str) -> None:
        """Add text the model sees before its next step (the agent loop reads it with
        `drain_context`); hooks use it for the context they add."""
        if not isinstance(text, str):
            raise TypeError("add_context() takes a string")
        if text:
            self._context.append(text)

    def drain_context(self) -> list[str]:
        """Take the context added since the last call (oldest first)."""
        taken, self._context = self._context, []
        return taken

    async def read_resource(
        self,
        server: str,
        uri: str,
        *,
        headers: HeadersInput | None = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ReadResourceResult:
        """Read resource ``uri`` of ``server`` as part of this turn (cancelled by its abort)."""
        return await _session_features.read_resource(
            self, server, uri, headers=headers, meta=meta, timeout=timeout
        )

    async def get_prompt(
        self,
        server: str,
        name: str,
        arguments: Mapping[str, str] | None = None,
        *,
        headers: HeadersInput | None = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> GetPromptResult:
        """Get prompt ``name`` of ``server`` as part of this turn (cancelled by its abort)."""
        args = dict(arguments) if arguments is not None else None
        return await _session_features.get_prompt(
            self, server, name, args, headers=headers, meta=meta, timeout=timeout
        )

    def interrupt(self) -> None:
        """Abort the turn with reason ``interrupted``. A no-op once it is aborting or ended."""
        self.abort(AbortReason.INTERRUPTED)

    def abort(self, reason: AbortReason) -> None:
        """Abort the turn: cancel its in-flight tool calls now and, after the session's
        grace period, its hooks or body. Aborting twice (or an ended turn) is a no-op."""
        if not isinstance(reason, AbortReason):
            raise TypeError("abort() takes an AbortReason")
        if self._abort_reason is not None or self._state.is_terminal:
            return
        self._abort_reason = reason
        for call_scope in list(self._call_scopes):
            call_scope.cancel()
        scope = self._scope
        if scope is not None:
            grace = self.session.abort_grace
            if grace <= 0:
                scope.cancel()
            else:
                scope.deadline = min(scope.deadline, anyio.current_time() + grace)

    async def wait_ended(self) -> TurnOutcome:
        """Wait until the turn has ended (its end hooks included) and return its outcome."""
        if self.outcome is None:
            if self._ended is None:
                self._ended = anyio.Event()
            await self._ended.wait()
        assert self.outcome is not None
        return self.outcome


class TurnHandle:
    """A turn running in a task owned by the session (see `Session.start_turn`)."""

    def __init__(self, turn: Turn) -> None:
        self._turn = turn

    @property
    def turn(self) -> Turn:
        """The turn."""
        return self._turn

    @property
    def done(self) -> bool:
        """Whether the turn has ended (end hooks included)."""
        return self._turn.outcome is not None

    @property
    def outcome(self) -> TurnOutcome | None:
        """The outcome, once the turn has ended."""
        return self._turn.outcome

    def interrupt(self) -> None:
        """Abort the turn with reason ``interrupted`` (a no-op once it is ending)."""
        self._turn.interrupt()

    async def wait(self) -> TurnOutcome:
        """Wait for the turn to end (end hooks included); return its `TurnOutcome`."""
        return await self._turn.wait_ended()

    def __repr__(self) -> str:
        return f"<TurnHandle {self._turn!r}>"


class _TurnBlock(AbstractAsyncContextManager[Turn]):
    """One turn's life around an ``async with`` block (`Session.turn`, `Session.start_turn`).

    One cancel scope spans the start hooks and the block, so that an abort reaches
    whichever runs; the turn binding spans them and the end hooks, so that everything
    they send is this turn's. (A class rather than a generator: this is the hot path.)
    """

    def __init__(
        self,
        session: Session,
        metadata: Mapping[str, Any] | None,
        forwarded_headers: HeadersInput | None,
        timeout: float | None,
        on_created: Callable[[Turn], None] | None,
    ) -> None:
        self._session = session
        self._args = (metadata, forwarded_headers, timeout)
        self._on_created = on_created
        self._turn: Turn | None = None
        self._started: list[object] = []
        self._token: contextvars.Token[str | None] | None = None

    async def __aenter__(self) -> Turn:
        if self._turn is not None:
            raise RuntimeError("a turn context can be entered only once")
        session = self._session
        turn = self._turn = await session._begin(*self._args)
        if self._on_created is not None:
            self._on_created(turn)
        self._token = _TURN_ID.set(turn.id)
        scope = turn._scope = anyio.CancelScope()
        scope.__enter__()
        try:
            await session._run_start_hooks(turn, self._started)
        except BaseException as exc:  # only a cancellation from outside gets here
            await self._end(exc)
            raise
        if turn._start_failure is not None:
            await self._end(None)  # raises the start hook's error
        if turn._abort_reason is None:
            turn._transition(TurnState.RUNNING)
        else:
            scope.cancel()  # aborted while starting: the block gets no grace
        return turn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return await self._end(exc)

    async def _end(self, exc: BaseException | None) -> bool:
        """Leave the turn's scope with what the block raised (``exc``), end the turn, and
        tell whether ``exc`` is swallowed (an abort); raise what must propagate instead."""
        turn = self._turn
        assert turn is not None and turn._scope is not None and self._token is not None
        scope = turn._scope
        error: BaseException | None = None
        try:
            try:
                if isinstance(exc, TurnAbortedError) and turn._abort_reason is not None:
                    exc = None  # the block was aborted: it exits quietly
                if exc is None:
                    scope.__exit__(None, None, None)
                elif scope.__exit__(type(exc), exc, exc.__traceback__):
                    exc = None  # the turn's own cancellation (an abort), absorbed by its scope
                else:
                    error = exc
            except BaseException as caught:
                error = caught
            finally:
                turn._scope = None
            # A cancellation that escapes the turn's own scope came from outside: the turn
            # is interrupted, its end hooks still run, and the cancellation goes on.
            cancelled = error is not None and _only_cancellation(error)
            await self._session._finish(
                turn, self._started, None if cancelled else error, cancelled=cancelled
            )
        finally:
            _TURN_ID.reset(self._token)
        failure = turn._start_failure
        if failure is not None:
            raise failure.error
        outcome = turn.outcome
        if error is not None and (cancelled or (outcome is not None and outcome.state is TurnState.FAILED)):
            if error is exc:
                return False  # propagates as raised, with its own traceback
            raise error
        return True


OnBusy = Literal["replace", "reject"]


class Session:
    """MCP clients plus a one-turn-at-a-time state machine with lifecycle hooks.

    Args:
        servers: `ServerConfig`s whose clients the session owns (connects them
            concurrently on enter, closes them on exit).
        clients: Shared `McpClient`s the session uses but never connects or closes.
        session_id: Defaults to a random id.
        hooks: `TurnHook`s, run in order at turn start and in reverse at turn end.
        on_busy: ``"replace"`` aborts a running turn (reason ``replaced``) and waits for
            its end hooks before the new one starts; ``"reject"`` raises
            `TurnInProgressError`.
        end_hook_timeout: Seconds allowed for each end hook (default 5).
        abort_grace: Seconds an aborted turn's body gets, after its in-flight tool calls
            are cancelled, before it is cancelled itself (default 0.1, as Codex).
        turn_timeout: Default seconds a turn may run before it is aborted (``timeout``).
        store: A `SessionStore` (e.g. `codex_runtime.store.SqliteStore`) that records
            the session, its turns and tool calls. With the ``session_id`` of a stored
            session, the session resumes it: turn indexes go on, and turns a dead process
            left running are marked ``ABORTED`` (reason ``lost``). Never closed here.
        handlers: `ClientHandlers` for every client the session owns (elicitation,
            sampling, roots, server log messages); shared ``clients`` keep their own.
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
        store: SessionStore | None = None,
        handlers: ClientHandlers | None = None,
    ) -> None:
        if handlers is not None and not isinstance(handlers, ClientHandlers):
            raise TypeError("Session(handlers=...) takes a ClientHandlers")
        self.handlers = handlers
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
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and value >= 0 and math.isfinite(value)
            ):
                raise ValueError(f"{label} must be a finite number of seconds >= 0")
        if session_id is not None and (not isinstance(session_id, str) or not session_id):
            raise ValueError("session_id must be a non-empty string")
        self.session_id: str = session_id or uuid.uuid4().hex
        self.on_busy: OnBusy = on_busy
        self.end_hook_timeout = float(end_hook_timeout)
        self.abort_grace = float(abort_grace)
        self.turn_timeout = _check_timeout(turn_timeout, "turn_timeout")
        self._hooks: list[object] = []
        self._tool_hooks: tuple[tuple[object, ...], tuple[object, ...]] = ((), ())
        for hook in hooks:
            self.add_hook(hook)
        self._clients: dict[str, McpClient] = {}
        self.startup_errors: dict[str, BaseException] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        # Made on first use (an idle session sharing its clients never needs them: each
        # costs ~1 KiB): tells the owner tasks of owned clients to close them; serializes
        # turn starts that must wait.
        self._closing: anyio.Event | None = None
        self._shutting_down = False
        self._host_done: dict[str, anyio.Event] = {}
        self._session_hooks_started: list[object] = []
        self._current: Turn | None = None
        self._begin_lock: anyio.Lock | None = None
        self._turn_count = 0
        self._entered = False
        if store is not None and not isinstance(store, SessionStore):
            raise TypeError("Session(store=...) takes a SessionStore (e.g. codex_runtime.store.SqliteStore)")
        self.store: SessionStore | None = store
        self._recorder = SessionRecorder(store, self) if store is not None else None
        self._next_ident: tuple[str, int, float | None] | None = None  # given (id, index, start)

    # -- configuration -------------------------------------------------------------

    def add_hook(self, hook: object) -> None:
        """Register a `TurnHook`: an object with any of ``on_turn_start``,
        ``on_turn_end``, ``on_tool_call_start``, ``on_tool_call_end``, ``on_user_prompt``,
        ``on_stop``, ``on_session_start``, ``on_session_end``."""
        if not any(hasattr(hook, name) for name in _HOOK_METHODS):
            raise TypeError(f"{hook!r} is not a turn hook: it has none of {', '.join(_HOOK_METHODS)}")
        self._hooks.append(hook)
        # Looked up once here rather than at every tool call (the hot path).
        self._tool_hooks = (
            tuple(h for h in self._hooks if hasattr(h, "on_tool_call_start")),
            tuple(h for h in reversed(self._hooks) if hasattr(h, "on_tool_call_end")),
        )

    def on_tool_call_start(self, fn: ToolStartFn) -> ToolStartFn:
        """Decorator: run ``async def fn(turn, call) -> ToolDecision | None`` before every
        tool call of every turn."""
        if not callable(fn):
            raise TypeError("on_tool_call_start takes an async function fn(turn, call)")
        self.add_hook(_ToolStartFunction(fn))
        return fn

    def on_tool_call_end(self, fn: ToolEndFn) -> ToolEndFn:
        """Decorator: run ``async def fn(turn, call, record)`` after every tool call whose
        start hooks ran (ok, error, denied, cancelled, timed out, unavailable)."""
        if not callable(fn):
            raise TypeError("on_tool_call_end takes an async function fn(turn, call, record)")
        self.add_hook(_ToolEndFunction(fn))
        return fn

    def on_turn_start(self, fn: StartFn) -> StartFn:
        """Decorator: run ``async def fn(turn)`` at every turn start."""
        if not callable(fn):
            raise TypeError("on_turn_start takes an async function fn(turn)")
        self.add_hook(_FunctionHook(start=fn))
        return fn

    def on_turn_end(self, fn: EndFn) -> EndFn:
        """Decorator: run ``async def fn(turn, outcome)`` at every turn end."""
        if not callable(fn):
            raise TypeError("on_turn_end takes an async function fn(turn, outcome)")
        self.add_hook(_FunctionHook(end=fn))
        return fn

    @property
    def hooks(self) -> tuple[object, ...]:
        """The registered hooks, in start order."""
        return tuple(self._hooks)

    @property
    def clients(self) -> Mapping[str, McpClient]:
        """Clients by server name (shared ones first, then owned ones in config order)."""
        return dict(self._clients)

    @property
    def apps_clients(self) -> list[McpClient]:
        """Clients of servers configured with ``apps=True``."""
        return [c for c in self._clients.values() if c.config.apps]

    @property
    def current_turn(self) -> Turn | None:
        """The turn that is starting, running or ending, if any."""
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
            if self._recorder is not None:
                self._turn_count = max(self._turn_count, await self._recorder.open())
            for client in self._shared:
                self._clients[client.name] = client
            async with anyio.create_task_group() as starting:
                for cfg in self._configs:
                    starting.start_soon(self._start_owned, cfg, False)
            # Connections finish in any order: keep the configured one.
            ordered = [c.name for c in self._shared] + [c.name for c in self._configs]
            self._clients = {n: self._clients[n] for n in ordered if n in self._clients}
            failed_required = [n for n in self.startup_errors if self._config_of(n).required]
            if failed_required:
                details = "; ".join(f"{n}: {self.startup_errors[n]}" for n in failed_required)
                raise ServerUnavailableError(
                    failed_required[0],
                    f"required server(s) failed to start ({details}); "
                    "fix the server or its config, or make it optional (required=False)",
                )
            for hook in self._hooks:
                starter = getattr(hook, "on_session_start", None)
                if starter is not None:
                    self._session_hooks_started.append(hook)
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

    def _check_open(self) -> anyio.abc.TaskGroup:
        if self._tg is None or self._shutting_down:
            state = "closing" if self._shutting_down else "not open"
            raise RuntimeError(f"the session is {state} (use `async with Session(...)`)")
        return self._tg

    async def _start_owned(self, cfg: ServerConfig, raise_errors: bool) -> None:
        tg = self._check_open()
        ready = anyio.Event()
        error: list[BaseException] = []
        done = anyio.Event()
        self._host_done[cfg.name] = done
        tg.start_soon(self._host_client, cfg, ready, error, done)
        await ready.wait()
        if error:
            self.startup_errors[cfg.name] = error[0]
            log = logger.error if cfg.required else logger.warning
            log("MCP server %r failed to start: %s", cfg.name, error[0])
            if raise_errors:
                raise error[0]

    async def _host_client(
        self, cfg: ServerConfig, ready: anyio.Event, error: list[BaseException], done: anyio.Event
    ) -> None:
        """Owner task of one owned client: connect, serve until the session closes, close."""
        client = McpClient(cfg, handlers=self.handlers)
        try:
            try:
                await client.connect()
            except Exception as exc:
                error.append(exc)
                return
            self._clients[cfg.name] = client
            ready.set()
            try:
                if self._closing is None:
                    self._closing = anyio.Event()
                await self._closing.wait()
            finally:
                # `aclose` shields its own cleanup; it must exit the client's task group
                # from this task, outside any other cancel scope.
                await client.aclose()
        finally:
            ready.set()
            done.set()

    async def _shutdown(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True  # no new turn from here on
        with anyio.CancelScope(shield=True):
            turn = self._current
            while turn is not None:
                turn.abort(AbortReason.SHUTDOWN)
                bound = self.abort_grace + self.end_hook_timeout * (len(self._hooks) + 1) + 1.0
                with anyio.move_on_after(bound) as waited:
                    await turn.wait_ended()
                if waited.cancelled_caught:
                    logger.warning(
                        "turn %s did not end within %.1f s of the session shutdown", turn.id, bound
                    )
                    break
                turn = self._current
            if self._recorder is not None:
                await self._recorder.flush()  # the queued records of the ended turns
            for hook in reversed(self._session_hooks_started):
                ender = getattr(hook, "on_session_end", None)
                if ender is None:
                    continue
                try:
                    with anyio.move_on_after(self.end_hook_timeout):
                        await ender(self)
                except Exception:
                    logger.warning("on_session_end of %s failed", _hook_name(hook), exc_info=True)
        if self._closing is None:
            self._closing = anyio.Event()
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
        self._check_open()
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
        """Every tool of every connected server, named ``server__tool`` (listed concurrently).

        A server that cannot be listed is left out (and logged).
        """
        clients = list(self._clients.items())
        found: list[list[Tool]] = [[] for _ in clients]

        async def list_one(index: int, name: str, client: McpClient) -> None:
            try:
                found[index] = await client.list_tools()
            except ServerUnavailableError as exc:
                logger.warning("listing the tools of %r failed: %s", name, exc)

        async with anyio.create_task_group() as tg:
            for index, (name, client) in enumerate(clients):
                tg.start_soon(list_one, index, name, client)
        return [
            SessionTool(name=f"{name}__{t.name}", server=name, tool=t)
            for (name, _), tools in zip(clients, found, strict=True)
            for t in tools
        ]

    async def list_resources(self) -> list[SessionResource]:
        """Every resource of every connected server that offers resources (all pages).

        A server that cannot be listed is left out (and logged).
        """
        return await _session_features.list_resources(self)

    async def list_prompts(self) -> list[SessionPrompt]:
        """Every prompt of every connected server, named ``server__prompt``.

        A server that cannot be listed is left out (and logged).
        """
        return await _session_features.list_prompts(self)

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
        without raising (``turn.outcome.state`` is ``ABORTED``); a turn aborted while its
        start hooks ran enters the block still ``PENDING`` and already cancelled, so the
        block stops at its first checkpoint. A failing start hook fails the turn before
        the block runs: its error is raised. ``metadata`` is a
        mapping with string keys (and JSON values, for hooks that send it) that the body
        may update; ``forwarded_headers`` are the
        incoming request's headers (`Headers`, a mapping, or (name, value) pairs; only
        those a forwarding policy forwards can refuse the turn);
        ``timeout`` (default: the session's ``turn_timeout``) aborts the turn with reason
        ``timeout``.
        """
        return _TurnBlock(self, metadata, forwarded_headers, timeout, None)

    async def start_turn(
        self,
        body: Callable[[Turn], Awaitable[Any]],
        *,
        metadata: Mapping[str, Any] | None = None,
        forwarded_headers: HeadersInput | None = None,
        timeout: float | None = None,
    ) -> TurnHandle:
        """Run ``await body(turn)`` as a turn in a task owned by the session.

        Returns once the turn is ``RUNNING`` (or has already failed to start or been
        aborted). Raises here what `turn` raises before a turn exists
        (`TurnInProgressError`, bad arguments); errors of the start hooks and the body
        are recorded in the outcome (``await handle.wait()``), not raised.
        """
        if not callable(body):
            raise TypeError("start_turn() takes an async function body(turn)")
        tg = self._check_open()
        handle: TurnHandle = await tg.start(self._run_body, body, metadata, forwarded_headers, timeout)
        return handle

    async def _run_body(
        self,
        body: Callable[[Turn], Awaitable[Any]],
        metadata: Mapping[str, Any] | None,
        forwarded_headers: HeadersInput | None,
        timeout: float | None,
        *,
        task_status: anyio.abc.TaskStatus[TurnHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        handle: TurnHandle | None = None
        reported = False

        def created(turn: Turn) -> None:
            nonlocal handle
            handle = TurnHandle(turn)

        try:
            async with _TurnBlock(self, metadata, forwarded_headers, timeout, created) as turn:
                assert handle is not None
                task_status.started(handle)
                reported = True
                if turn.state is TurnState.RUNNING:
                    await body(turn)
        except Exception as exc:
            if handle is None:
                raise  # no turn was made: start_turn raises it
            if not reported:
                task_status.started(handle)  # a start hook failed: the outcome tells
            logger.debug("turn %s ended with %s", handle.turn.id, type(exc).__name__)

    async def _begin(
        self, metadata: Mapping[str, Any] | None, forwarded: HeadersInput | None, timeout: float | None
    ) -> Turn:
        self._check_open()
        meta = _check_metadata(metadata)
        headers, incoming = _incoming(forwarded)
        timeout = _check_timeout(timeout, "turn timeout")
        if timeout is None:
            timeout = self.turn_timeout
        if self._current is None and (self._begin_lock is None or not self._begin_lock.locked()):
            return self._new_turn(meta, headers, timeout, incoming)  # nothing to wait for
        self._check_not_inside_current()
        if self._begin_lock is None:
            self._begin_lock = anyio.Lock()
        async with self._begin_lock:
            self._check_open()
            current = self._current
            if current is not None:
                if self.on_busy == "reject" and not current.state.is_terminal:
                    raise TurnInProgressError(
                        f"turn {current.id} is still in progress and this session rejects concurrent "
                        "turns (on_busy='reject'): wait for it, interrupt it, or use on_busy='replace'"
                    )
                current.abort(AbortReason.REPLACED)
                await current.wait_ended()
                self._check_open()
            return self._new_turn(meta, headers, timeout, incoming)

    def _new_turn(
        self, metadata: dict[str, Any], headers: Headers, timeout: float | None, incoming: HeadersInput
    ) -> Turn:
        ident, self._next_ident = self._next_ident, None
        if ident is None:
            self._turn_count += 1
            turn = Turn(self, self._turn_count, metadata, headers, timeout)
        else:
            self._turn_count = max(self._turn_count, ident[1])
            turn = Turn(self, ident[1], metadata, headers, timeout, ident[0])
            turn.started_at = ident[2]
        turn._forwarded_input = incoming
        self._current = turn
        return turn

    def _check_not_inside_current(self) -> None:
        current = self._current
        if current is not None and current_turn_id() == current.id:
            # Replacing would wait for the very turn this code runs in: never.
            raise TurnInProgressError(
                f"a new turn cannot be started from inside turn {current.id} (its body, a task it "
                "spawned, or one of its hooks); start it after that turn, from outside"
            )

    async def _run_start_hooks(self, turn: Turn, started: list[object]) -> None:
        """Run the start hooks in order, appending to ``started`` each hook whose end must run.

        A failing hook is recorded in ``turn._start_failure``; an abort stops the loop.
        A cancellation from outside propagates.
        """
        turn.started_at = turn.started_at or time.time()
        if self._recorder is not None:
            await self._recorder.turn_started(turn)
        if turn._timeout is not None:
            self._arm_timeout(turn, turn._timeout)
        for hook in tuple(self._hooks):
            started.append(hook)
            start = getattr(hook, "on_turn_start", None)
            if start is None:
                continue
            try:
                await start(turn)
            except BaseException as exc:
                if turn._abort_reason is not None and _is_abort_error(exc):
                    # Cancelled by the abort (or from outside meanwhile): the turn's scope
                    # stays cancelled, so an outside cancellation is raised again.
                    return
                if _only_cancellation(exc):
                    raise
                if isinstance(exc, InvalidHeaderError | ValueError) and isinstance(exc, CodexRuntimeError):
                    # Bad caller input (e.g. forwarded headers a gateway received): expected,
                    # and logging a traceback per bad request would let callers flood the log.
                    logger.info("on_turn_start of %s refused the turn: %s", _hook_name(hook), exc)
                else:
                    logger.warning(
                        "on_turn_start of %s failed; the turn fails before its body runs",
                        _hook_name(hook),
                        exc_info=exc,
                    )
                turn._start_failure = HookFailure(_hook_name(hook), "start", exc)
                return
            if turn._abort_reason is not None:
                return  # replaced, interrupted or shut down while starting

    def _arm_timeout(self, turn: Turn, timeout: float) -> None:
        # A watchdog task, so that a timeout aborts like any other abort: tool calls first,
        # the body after the grace period.
        assert self._tg is not None
        scope = anyio.CancelScope()
        turn._watchdog = scope
        self._tg.start_soon(self._watch_timeout, turn, scope, anyio.current_time() + timeout)

    @staticmethod
    async def _watch_timeout(turn: Turn, scope: anyio.CancelScope, deadline: float) -> None:
        with scope:
            await anyio.sleep_until(deadline)
            turn.abort(AbortReason.TIMEOUT)

    async def _finish(
        self,
        turn: Turn,
        started: list[object],
        error: BaseException | None = None,
        *,
        cancelled: bool = False,
    ) -> None:
        """Settle the state (once), then run the end hooks in reverse order.

        Each end hook runs shielded from cancellation and bounded by ``end_hook_timeout``;
        nothing else here awaits, so this is safe to call from a cancelled task.
        """
        if turn.outcome is not None or turn._state.is_terminal:
            return
        if cancelled and turn._abort_reason is None:
            turn._abort_reason = AbortReason.INTERRUPTED
        failures: list[HookFailure] = []
        start_failure = turn._start_failure
        if start_failure is not None:
            state = TurnState.FAILED
            error = start_failure.error
            failures.append(start_failure)
        elif turn._abort_reason is not None and (cancelled or error is None or _is_abort_error(error)):
            state = TurnState.ABORTED
            error = None
        elif error is not None:
            state = TurnState.FAILED
        else:
            state = TurnState.COMPLETED
        failures.extend(turn._hook_failures)
        turn._transition(state)
        turn.ended_at = time.time()
        if turn._watchdog is not None:
            turn._watchdog.cancel()
        duration = time.monotonic() - turn._t0
        reason = turn._abort_reason if state is TurnState.ABORTED else None
        outcome = TurnOutcome(state, reason, error, tuple(failures), duration)
        draft = outcome
        fatal: BaseException | None = None
        for hook in reversed(started):
            end = getattr(hook, "on_turn_end", None)
            if end is None:
                continue
            try:
                with anyio.CancelScope(shield=True) as guard:
                    guard.deadline = anyio.current_time() + self.end_hook_timeout
                    await end(turn, draft)
                # `cancel_called`, not `cancelled_caught`: a hook that swallowed the
                # cancellation still overran its bound.
                if guard.cancel_called:
                    raise TimeoutError(f"on_turn_end took longer than {self.end_hook_timeout:g} s")
            except BaseException as exc:
                # One end hook's failure never stops the others: header clearing must happen.
                logger.warning("on_turn_end of %s failed", _hook_name(hook), exc_info=exc)
                failures.append(HookFailure(_hook_name(hook), "end", exc))
                if not isinstance(exc, Exception) and fatal is None:
                    fatal = exc
        if len(failures) != len(draft.hook_errors):
            outcome = TurnOutcome(state, reason, error, tuple(failures), duration)
        turn.outcome = outcome
        if self._recorder is not None:
            await self._recorder.turn_ended(turn, outcome)
        if self._current is turn:
            self._current = None
        if turn._ended is not None:
            turn._ended.set()
        if fatal is not None:
            raise fatal

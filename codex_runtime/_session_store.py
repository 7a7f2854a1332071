"""The `SessionStore` protocol, the records it keeps, and the recorder a `Session` uses.

This module belongs to the session layer: a `Session` knows only this protocol. The
embedded implementation is `codex_runtime.store.SqliteStore`.

What is stored, and what never is: sessions, turns (id, index, metadata, state changes,
outcome, hook errors), tool calls (server, tool, arguments, status, result text, times)
and an agent loop's conversation. Header values, forwarded headers and tokens are never
given to a store; values under secret-looking keys (`is_secret`: ``authorization``,
``*token*``, ``*key*``, ``*secret*``, ``*password*``...) in metadata and tool arguments are
replaced by ``"[REDACTED]"`` before they are.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import attrs
from mcp_types import CallToolResult, TextContent

from ._turn_model import AbortReason, ToolCallRecord, TurnOutcome, TurnState
from .headers import REDACTED, is_secret

if TYPE_CHECKING:
    from .session import Session, Turn

__all__ = [
    "SessionStore",
    "StoredSession",
    "StoredToolCall",
    "StoredTurn",
    "scrub",
]

logger = logging.getLogger("codex_runtime.store")

_MAX_TEXT = 4000  # characters kept of a tool result or an error
_WRITE_BOUND = 10.0  # seconds a recording write may take at turn end


@attrs.frozen
class StoredToolCall:
    """One tool call of a stored turn (times are Unix seconds).

    ``status`` is a `ToolCallStatus` value (``ok``, ``error``: the tool reported an error,
    ``denied``, ``cancelled``, ``timeout``, ``unavailable``) or ``unknown`` (in flight when
    the process running a durable turn died, and not sent again).
    """

    turn_id: str
    seq: int
    server: str
    tool: str
    arguments: Mapping[str, Any] | None
    status: str
    result: str | None
    error: str | None
    started_at: float
    ended_at: float | None


@attrs.frozen
class StoredTurn:
    """One stored turn. ``state`` is a `TurnState` value (``"completed"``...);
    ``states`` lists ``(state, unix time)`` in order; ``durable`` is the durable turn's
    specification (configuration path, model settings; never a secret) or None."""

    turn_id: str
    session_id: str
    index: int
    state: str
    metadata: Mapping[str, Any]
    started_at: float
    ended_at: float | None = None
    abort_reason: str | None = None
    error: str | None = None
    hook_errors: tuple[str, ...] = ()
    states: tuple[tuple[str, float], ...] = ()
    durable: Mapping[str, Any] | None = None
    input: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in ("completed", "failed", "aborted")


@attrs.frozen
class StoredSession:
    """A stored session and its turns, oldest first."""

    session_id: str
    created_at: float
    updated_at: float
    turns: tuple[StoredTurn, ...] = ()


@runtime_checkable
class SessionStore(Protocol):
    """Where a `Session` records its history, and where it finds it again on resume.

    Every method may be called from any task; an implementation serializes its writes.
    A store is opened lazily and closed by its owner (``await store.aclose()``); a
    `Session` never closes a store it was given.
    """

    async def open_session(self, session_id: str) -> int:
        """Create the session if it is new; mark its turns that were left running by a
        process that died (and that no durable runtime will resume) ``ABORTED`` with
        reason ``lost``; return the highest turn index stored (0 for a new session)."""
        ...

    async def record_turn(self, turn: StoredTurn, tool_calls: Sequence[StoredToolCall] = ()) -> None:
        """Insert or replace the turn, and add ``tool_calls`` (replacing same ``seq``)."""
        ...

    async def save_messages(self, session_id: str, first: int, messages: Sequence[Mapping[str, Any]]) -> None:
        """Replace the conversation from position ``first`` on with ``messages``."""
        ...

    async def load_messages(self, session_id: str) -> list[dict[str, Any]]:
        """The stored conversation of the session, in order (empty when none)."""
        ...

    async def get_session(self, session_id: str) -> StoredSession | None:
        """The session and its turns, or None."""
        ...

    async def list_sessions(self) -> list[StoredSession]:
        """Every stored session with its turns, oldest first."""
        ...

    async def tool_calls(self, turn_id: str) -> list[StoredToolCall]:
        """The recorded tool calls of a turn, in order."""
        ...

    async def aclose(self) -> None:
        """Release the store's resources (it reopens on the next use)."""
        ...


def scrub(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with the values of secret-looking keys redacted."""
    if _depth > 20:
        return "[...]"
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret(str(k)) else scrub(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, _depth + 1) for v in value]
    if isinstance(value, str) and value[:1] in ("{", "["):
        # JSON text (a tool result that echoes what it got, say): redact inside it too.
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, dict | list):
            return json.dumps(scrub(parsed, _depth + 1), ensure_ascii=False)
        return value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= _MAX_TEXT:
        return text
    return text[:_MAX_TEXT] + "..."


def _result_text(result: CallToolResult) -> str:
    parts = [scrub(b.text) for b in result.content if isinstance(b, TextContent)]
    if not parts and result.structured_content is not None:
        return json.dumps(scrub(result.structured_content), ensure_ascii=False)
    return "\n".join(parts)


def _error_text(error: BaseException | None) -> str | None:
    if error is None:
        return None
    return _clip(f"{type(error).__name__}: {error}")


class _TurnLog:
    __slots__ = ("calls", "durable", "input", "states")

    def __init__(self) -> None:
        self.states: list[tuple[str, float]] = []
        self.calls: list[StoredToolCall] = []
        self.durable: Mapping[str, Any] | None = None
        self.input: str | None = None


class SessionRecorder:
    """What a `Session` made with ``store=`` uses to record itself (not public API).

    A turn's start is written before its body runs; its end (outcome, tool calls, collected
    as they finish) and the conversation are queued for a writer task of the session, so
    that a turn never waits for the disk; the session flushes the queue when it closes.
    A failing store is logged and never fails a turn.
    """

    def __init__(self, store: SessionStore, session: Session) -> None:
        self.store = store
        self._session = session
        self._logs: dict[str, _TurnLog] = {}
        self._pending: dict[str, tuple[str, int, Mapping[str, Any] | None, str | None]] = {}
        self._queue: list[tuple[Callable[[], Awaitable[None]], str]] = []
        self._writing = False
        self._idle: anyio.Event | None = None

    def _log(self, turn: Turn) -> _TurnLog:
        log = self._logs.get(turn.id)
        if log is None:
            log = self._logs[turn.id] = _TurnLog()
            log.states.append((TurnState.PENDING.value, time.time()))
            pending = self._pending.pop(turn.id, None)
            if pending is not None:
                log.durable, log.input = pending[2], pending[3]
        return log

    async def open(self) -> int:
        return await self.store.open_session(self._session.session_id)

    def expect_turn(
        self,
        turn_id: str,
        index: int,
        *,
        durable: Mapping[str, Any] | None = None,
        user_input: str | None = None,
        started_at: float | None = None,
    ) -> None:
        """Give the next turn its id, index and start time (a durable turn keeps them when
        it runs again after a crash)."""
        self._pending[turn_id] = (turn_id, index, durable, user_input)
        self._session._next_ident = (turn_id, index, started_at)

    def state_changed(self, turn: Turn, state: TurnState) -> None:
        self._log(turn).states.append((state.value, time.time()))

    def tool_call(self, turn: Turn, record: ToolCallRecord, result: CallToolResult | None) -> None:
        log = self._log(turn)
        # "unknown": a durable turn resumed after a crash did not send this call again.
        status = "unknown" if record.error == "unknown" else record.status.value
        log.calls.append(
            StoredToolCall(
                turn_id=turn.id,
                seq=len(log.calls) + 1,
                server=record.server,
                tool=record.tool,
                arguments=scrub(record.arguments) if record.arguments is not None else None,
                status=status,
                result=_clip(_result_text(result)) if result is not None else None,
                error=_clip(record.error),
                started_at=record.started_at,
                ended_at=record.ended_at,
            )
        )

    def _row(self, turn: Turn, outcome: TurnOutcome | None) -> StoredTurn:
        return self._row_of(turn, outcome, self._log(turn))

    def _row_of(self, turn: Turn, outcome: TurnOutcome | None, log: _TurnLog) -> StoredTurn:
        state = outcome.state if outcome is not None else turn.state
        reason: AbortReason | None = outcome.abort_reason if outcome is not None else None
        return StoredTurn(
            turn_id=turn.id,
            session_id=turn.session_id,
            index=turn.index,
            state=state.value,
            metadata=scrub(turn.metadata),
            started_at=turn.started_at or time.time(),
            ended_at=turn.ended_at if outcome is not None else None,
            abort_reason=reason.value if reason is not None else None,
            error=_error_text(outcome.error) if outcome is not None else None,
            hook_errors=tuple(_clip(str(h)) or "" for h in outcome.hook_errors)
            if outcome is not None
            else (),
            states=tuple(log.states),
            durable=log.durable,
            input=log.input,
        )

    async def turn_started(self, turn: Turn) -> None:
        """Write the turn's start before its body runs (so that a process dying in it leaves a
        turn the next session marks ``lost``)."""
        try:
            await self.store.record_turn(self._row(turn, None))
        except Exception:
            logger.error("recording turn %s in the session store failed", turn.id, exc_info=True)

    async def turn_ended(self, turn: Turn, outcome: TurnOutcome) -> None:
        """Queue the turn's end (outcome, tool calls) for the session's writer: the turn does
        not wait for the disk."""
        log = self._log(turn)
        del self._logs[turn.id]
        row, calls = self._row_of(turn, outcome, log), tuple(log.calls)
        self._enqueue(lambda: self.store.record_turn(row, calls), f"recording turn {turn.id}")

    def save_messages(self, first: int, messages: list[dict[str, Any]]) -> None:
        """Queue a conversation write (``AgentLoop`` after each turn)."""
        session_id = self._session.session_id
        self._enqueue(
            lambda: self.store.save_messages(session_id, first, messages),
            f"storing the conversation of session {session_id}",
        )

    # -- the writer ----------------------------------------------------------------------

    def _enqueue(self, write: Callable[[], Awaitable[None]], what: str) -> None:
        self._queue.append((write, what))
        if self._writing:
            return
        tg = self._session._tg
        if tg is None:
            return  # no task group (closing): `flush` writes it
        self._writing = True
        tg.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while self._queue:
                write, what = self._queue.pop(0)
                try:
                    with anyio.CancelScope(shield=True) as guard:
                        guard.deadline = anyio.current_time() + _WRITE_BOUND
                        await write()
                    if guard.cancelled_caught:
                        logger.error("%s took longer than %g s; given up", what, _WRITE_BOUND)
                except Exception:
                    logger.error("%s in the session store failed", what, exc_info=True)
        finally:
            self._writing = False
            idle, self._idle = self._idle, None
            if idle is not None:
                idle.set()

    async def flush(self) -> None:
        """Wait until every queued write is in the store."""
        while self._queue or self._writing:
            if self._writing:
                if self._idle is None:
                    self._idle = anyio.Event()
                await self._idle.wait()
            else:
                self._writing = True
                await self._drain()

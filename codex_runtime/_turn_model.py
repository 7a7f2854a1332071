"""The values of the turn state machine: states, abort reasons, outcomes, records, errors,
and the `TurnHook` protocol. `codex_runtime.session` re-exports all of them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import attrs
from mcp_types import CallToolResult, Tool

from ._tool_hooks import ToolCallRequest, ToolCallStatus, ToolDecision
from .headers import CodexRuntimeError

if TYPE_CHECKING:
    from .session import Turn

__all__ = [
    "AbortReason",
    "HookFailure",
    "HookPhase",
    "SessionTool",
    "ToolCallHook",
    "ToolCallRecord",
    "TurnAbortedError",
    "TurnHook",
    "TurnInProgressError",
    "TurnOutcome",
    "TurnState",
    "TurnStateError",
]


class TurnInProgressError(CodexRuntimeError):
    """A turn was started while another runs, and the session was made with ``on_busy="reject"``."""


class TurnStateError(CodexRuntimeError):
    """An operation is not allowed in the turn's current state (or an illegal transition)."""


class TurnAbortedError(CodexRuntimeError):
    """Raised inside an aborted turn by its ``turn.call_tool`` calls (in flight or new).

    The turn context swallows it: ``async with session.turn()`` exits without raising
    and the turn ends ``ABORTED``.
    """

    def __init__(self, reason: AbortReason) -> None:
        super().__init__(f"the turn was aborted ({reason.value})")
        self.reason = reason


class TurnState(enum.Enum):
    """States of a turn. ``PENDING -> RUNNING -> COMPLETED | FAILED | ABORTED`` only.

    A turn also ends straight from ``PENDING`` when a start hook fails (``FAILED``) or
    when it is aborted before its body runs (``ABORTED``).
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        """Whether the turn has ended (its end hooks may still be running)."""
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
    #: The process running the turn died; found by the next `Session` on the same store.
    LOST = "lost"


HookPhase = Literal[
    "start", "end", "tool_call_start", "tool_call_end", "user_prompt", "stop", "session_start"
]


@attrs.frozen
class HookFailure:
    """A hook that raised (or timed out): at turn start or end, around a tool call
    (``tool_call_start``, ``tool_call_end``), at the user prompt or the stop of an agent
    turn, or a command hook that failed (reported by `CodexHooks` in the phase it ran)."""

    hook: str
    phase: HookPhase
    error: BaseException

    def __str__(self) -> str:
        return f"{self.hook} ({self.phase}): {type(self.error).__name__}: {self.error}"


@attrs.frozen
class TurnOutcome:
    """How a turn ended. There is exactly one per turn.

    ``error`` is the body's (or failing start hook's) exception for a ``FAILED`` turn;
    ``hook_errors`` lists every hook that failed, start and end; ``duration`` is in
    seconds.
    """

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
    """One ``turn.call_tool`` as the turn saw it (times are Unix seconds).

    ``ok`` is true when the tool returned a result that is not a tool error;
    otherwise ``error`` says what went wrong (``is_error`` marks a tool-level error,
    ``"aborted"`` a call cancelled by the turn's abort, a hook's reason a denied call).
    ``status`` says which way it ended (`ToolCallStatus`); ``arguments`` are the ones
    sent (after any rewrite by a hook); ``call_id`` is the call's id; ``result`` the
    server's `CallToolResult` when there was one.
    """

    server: str
    tool: str
    arguments: Mapping[str, Any] | None
    started_at: float
    ended_at: float
    ok: bool
    is_error: bool = False
    error: str | None = None
    status: ToolCallStatus = ToolCallStatus.OK
    call_id: str = ""
    result: CallToolResult | None = attrs.field(default=None, eq=False, repr=False)

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

    Optional tool-call methods run around every ``turn.call_tool`` (and so every call
    of the agent loop), inside the turn: ``on_tool_call_start(turn, call)`` returns a
    `ToolDecision` (deny or rewrite) or ``None`` (allow); ``on_tool_call_end(turn, call,
    record)`` sees how it ended. Optional agent-loop methods: ``on_user_prompt(turn,
    prompt)`` (a `PromptDecision` or ``None``) and ``on_stop(turn, text)`` (a
    `StopDecision` or ``None``).

    Start hooks run in order, in the task that runs the turn body and bound to the turn
    (`bind_turn`), before the turn is ``RUNNING``: context variables they set (e.g. the
    current OpenTelemetry span) are visible to the body. End hooks run in reverse order,
    in the same task, shielded from cancellation and bounded by the session's
    ``end_hook_timeout``; the end hook of every hook whose start was attempted runs (also
    of the one whose start failed, so that a partial start is undone). Optional extra
    methods: ``on_client_added(turn, client)`` (a server added during a running turn),
    ``on_session_start(session)`` and ``on_session_end(session)``.
    """

    async def on_turn_start(self, turn: Turn) -> None: ...

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None: ...


class ToolCallHook(Protocol):
    """The tool-call methods a `TurnHook` may define (each optional)."""

    async def on_tool_call_start(self, turn: Turn, call: ToolCallRequest) -> ToolDecision | None: ...

    async def on_tool_call_end(self, turn: Turn, call: ToolCallRequest, record: ToolCallRecord) -> None: ...

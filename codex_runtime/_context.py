"""Task-scoped context: which turn a task runs in, and its call-scoped headers.

Both live in `contextvars`, so they follow a task and the tasks it spawns, and the mcp
SDK carries them into the task that sends each HTTP request. Nothing here is shared
mutable state: two tasks never see each other's values.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from .headers import Headers, check_settable

__all__ = ["bind_turn", "current_call_headers", "current_turn_id", "request_headers"]

_TURN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("codex_runtime_turn_id", default=None)
_CALL_HEADERS: contextvars.ContextVar[Headers | None] = contextvars.ContextVar(
    "codex_runtime_call_headers", default=None
)


class bind_turn:
    """Run the block (and every task it spawns) as part of turn ``turn_id``.

    Requests sent from inside carry the turn entries that clients hold for that id
    (`McpClient.set_turn_headers`); requests sent from anywhere else never do.
    `Session` does this for every turn body; code outside a session may use it directly.
    ``with bind_turn(turn_id) as bound:`` gives the turn id.
    """

    __slots__ = ("_token", "_turn_id")

    def __init__(self, turn_id: str) -> None:
        if not isinstance(turn_id, str) or not turn_id:
            raise TypeError("bind_turn() needs a non-empty turn id string")
        self._turn_id = turn_id
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> str:
        self._token = _TURN_ID.set(self._turn_id)
        return self._turn_id

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _TURN_ID.reset(self._token)
            self._token = None


def current_turn_id() -> str | None:
    """The turn id bound to the current task, or None outside any turn."""
    return _TURN_ID.get()


@contextmanager
def request_headers(
    headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]],
) -> Iterator[Headers]:
    """Add call-scoped headers to every MCP request sent from this block's task.

    Nested blocks stack, the innermost winning per name. Invalid or protected names raise
    `InvalidHeaderError` on entry, before anything is sent.
    """
    new = headers if isinstance(headers, Headers) else Headers(headers)
    check_settable(new, layer="call")
    outer = _CALL_HEADERS.get()
    combined = new if outer is None else new | outer
    token = _CALL_HEADERS.set(combined)
    try:
        yield combined
    finally:
        _CALL_HEADERS.reset(token)


def current_call_headers() -> Headers | None:
    """The call-scoped headers of the current task (from `request_headers`), if any."""
    return _CALL_HEADERS.get()


def _reset_for_owner_task() -> None:
    """Give a connection-owner task a clean context: no turn, no call headers, no span."""
    _TURN_ID.set(None)
    _CALL_HEADERS.set(None)

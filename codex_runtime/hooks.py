"""Turn hooks: the `TurnHook` protocol and the built-ins `TurnHeaders` and `ForwardHeaders`.

A hook sets turn entries on clients at turn start (`McpClient.set_turn_headers`) and
clears them at turn end (`McpClient.clear_turn_headers`). End hooks always run, so the
entries are cleared on success, error, interrupt, replacement and shutdown alike; and an
entry travels only on requests sent from tasks bound to its turn.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal

from ._codex_hooks import CodexHooks, CommandHook, HookCommandError, HookConfigWarning
from .client import McpClient
from .headers import CodexRuntimeError, HeaderPolicy, validate_value
from .session import Turn, TurnHook, TurnOutcome
from .tracing import TraceTurns

__all__ = [
    "CodexHooks",
    "CommandHook",
    "ForwardHeaders",
    "HookCommandError",
    "HookConfigWarning",
    "InvalidMetadataError",
    "TraceTurns",
    "TurnHeaders",
    "TurnHook",
    "turn_metadata",
]

logger = logging.getLogger("codex_runtime.hooks")

#: Keys `TurnHeaders` sets itself; turn metadata may not override them.
RESERVED_METADATA_KEYS = frozenset({"session_id", "thread_id", "turn_id", "turn_started_at_unix_ms"})
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_BYTES = 64
MAX_METADATA_VALUE_BYTES = 128
TURN_METADATA_HEADER = "x-codex-turn-metadata"
SESSION_ID_HEADER = "session_id"


class InvalidMetadataError(CodexRuntimeError, ValueError):
    """Turn metadata breaks the limits of `TurnHeaders` (keys, sizes, reserved names)."""


def turn_metadata(turn: Turn) -> dict[str, Any]:
    """The turn-metadata object `TurnHeaders` sends for ``turn``, from its metadata *now*.

    Keys ``session_id``, ``thread_id`` (= the session id), ``turn_id`` and
    ``turn_started_at_unix_ms``, then the turn's own metadata: at most 16 extra keys, each
    key at most 64 bytes and each value (as JSON) at most 128 bytes; reserved keys cannot
    be overridden. Raises `InvalidMetadataError` otherwise.
    """
    extra = turn.metadata
    if not isinstance(extra, dict):
        raise InvalidMetadataError("turn.metadata must stay a dict")
    if len(extra) > MAX_METADATA_KEYS:
        raise InvalidMetadataError(
            f"turn metadata has {len(extra)} keys; at most {MAX_METADATA_KEYS} are sent to Apps servers"
        )
    started_ms = int((turn.started_at or 0.0) * 1000)
    out: dict[str, Any] = {
        "session_id": turn.session_id,
        "thread_id": turn.session_id,
        "turn_id": turn.id,
        "turn_started_at_unix_ms": started_ms,
    }
    for key, value in extra.items():
        if not isinstance(key, str):
            raise InvalidMetadataError("turn metadata keys must be strings")
        if key in RESERVED_METADATA_KEYS:
            raise InvalidMetadataError(f"turn metadata may not override the reserved key {key!r}")
        if not key or len(key.encode("utf-8")) > MAX_METADATA_KEY_BYTES:
            raise InvalidMetadataError(
                f"turn metadata key {key[:20]!r} must be 1 to {MAX_METADATA_KEY_BYTES} bytes long"
            )
        try:
            # A string counts as its own bytes; anything else as its JSON text.
            encoded = (
                value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, allow_nan=False)
            )
        except (TypeError, ValueError, RecursionError):
            raise InvalidMetadataError(
                f"turn metadata value of {key!r} is not JSON-serializable (or is nested too deeply)"
            ) from None
        if len(encoded.encode("utf-8")) > MAX_METADATA_VALUE_BYTES:
            raise InvalidMetadataError(
                f"turn metadata value of {key!r} is larger than {MAX_METADATA_VALUE_BYTES} bytes"
            )
        out[key] = value
    return out


_SCALARS = (str, int, float, bool, type(None))


def _same_json(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` encode to the same JSON (``1``, ``1.0`` and ``True`` differ)."""
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict:
        if len(a) != len(b):
            return False
        # Called on every request of a turn: scalar values are compared in the loop,
        # without a call each.
        for (key_a, value_a), (key_b, value_b) in zip(a.items(), b.items(), strict=True):
            if key_a != key_b:
                return False
            value_kind = type(value_a)
            if value_kind is not type(value_b):
                return False
            if value_kind in _SCALARS:
                if value_a != value_b:
                    return False
            elif not _same_json(value_a, value_b):
                return False
        return True
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class _HeaderJson:
    """The ``x-codex-turn-metadata`` value of a turn, rebuilt only when its metadata changed.

    Compact, ASCII-escaped JSON: any metadata stays a valid header value. Each request
    compares ``turn.metadata`` with a copy of what the current text was built from (much
    cheaper than validating and encoding it again) and returns the same string object
    while nothing changed, so the client does not validate it again either.
    """

    __slots__ = ("_seen", "_text", "_turn")

    def __init__(self, turn: Turn) -> None:
        self._turn = turn
        self._seen: dict[str, Any] | None = None
        self._text = ""

    def __call__(self) -> str:
        metadata = self._turn.metadata
        if self._seen is None or not _same_json(metadata, self._seen):
            text = json.dumps(turn_metadata(self._turn), separators=(",", ":"), ensure_ascii=True)
            self._seen = copy.deepcopy(metadata)
            self._text = text
        return self._text


def _header_json(turn: Turn) -> Callable[[], str]:
    return _HeaderJson(turn)


class TurnHeaders:
    """Codex's turn headers, on Apps clients only (``ServerConfig(apps=True)``).

    At turn start it sets, on every Apps client, a turn entry; at turn end it clears it.
    The metadata is read when each request is sent, so ``turn.metadata`` changes made
    during the turn reach later calls. Wire (only on ``turn_header_methods``, by default
    ``tools/call``):

    - ``mode="headers"``: HTTP headers ``session_id: <session id>`` and
      ``x-codex-turn-metadata: <compact JSON>`` (see `turn_metadata`);
    - ``mode="meta"``: ``params._meta["x-codex-turn-metadata"]`` (the same object, not a
      string) and ``params._meta["threadId"]``; works over stdio;
    - ``mode="both"``.
    """

    def __init__(self, mode: Literal["headers", "meta", "both"] = "headers") -> None:
        if mode not in ("headers", "meta", "both"):
            raise ValueError("TurnHeaders mode must be 'headers', 'meta' or 'both'")
        self.mode = mode
        self._applied: dict[str, list[McpClient]] = {}
        self._checked_session_id: str | None = None

    def __repr__(self) -> str:
        return f"TurnHeaders(mode={self.mode!r})"

    def _entries(self, turn: Turn) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The turn's entries: (headers, ``_meta``), values read at send time."""
        session_id = turn.session_id
        headers: dict[str, Any] | None = None
        meta: dict[str, Any] | None = None
        if self.mode in ("headers", "both"):
            # Checked here rather than by every client (the value is the same for all), and
            # once per session rather than per turn.
            if session_id is not self._checked_session_id:
                validate_value(SESSION_ID_HEADER, session_id)
                self._checked_session_id = session_id
            headers = {SESSION_ID_HEADER: lambda: session_id, TURN_METADATA_HEADER: _header_json(turn)}
        if self.mode in ("meta", "both"):
            meta = {TURN_METADATA_HEADER: lambda: turn_metadata(turn), "threadId": session_id}
        return headers, meta

    def _apply(self, turn: Turn, clients: Iterable[McpClient]) -> None:
        headers, meta = self._entries(turn)
        applied = self._applied.setdefault(turn.id, [])
        for client in clients:
            applied.append(client)  # first, so that a failing set is still cleared at the end
            client.set_turn_headers(turn.id, headers=headers, meta=meta)

    async def on_turn_start(self, turn: Turn) -> None:
        turn_metadata(turn)  # invalid metadata fails the turn here, before its body runs
        self._apply(turn, turn.session.apps_clients)

    async def on_client_added(self, turn: Turn, client: McpClient) -> None:
        if client.config.apps:
            self._apply(turn, [client])

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        for client in self._applied.pop(turn.id, []):
            client.clear_turn_headers(turn.id)


class ForwardHeaders:
    """Forward selected caller headers to MCP tool calls (an SMG-style gateway).

    At turn start it checks the incoming headers that the policy forwards to either side
    (differing repeats of a single-valued header, values that are not visible ASCII:
    `InvalidHeaderError`, and the turn fails before its body; headers it forwards nowhere
    are not checked), keeps what ``policy.for_mcp`` allows, and sets it as
    a turn entry on servers with ``ServerConfig(forward=True)`` only — never on a server
    the caller names at run time. Delivery follows each server's ``header_delivery``.
    The entries are cleared at turn end.
    """

    def __init__(self, policy: HeaderPolicy | None = None) -> None:
        self.policy = policy if policy is not None else HeaderPolicy.smg()
        self._applied: dict[str, list[McpClient]] = {}
        self._values: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"ForwardHeaders(policy={self.policy!r})"

    async def on_turn_start(self, turn: Turn) -> None:
        # The headers as received: only those the policy forwards are checked, so an
        # invalid header that goes nowhere (say a 9 KiB cookie) cannot refuse the turn.
        incoming = turn._forwarded_input
        self.policy.check(incoming)
        selected = self.policy.for_mcp(incoming)
        if not selected:
            return
        self._values[turn.id] = selected
        for client in turn.session.clients.values():
            if client.config.forward:
                client.set_turn_headers(turn.id, headers=selected)
                self._applied.setdefault(turn.id, []).append(client)

    async def on_client_added(self, turn: Turn, client: McpClient) -> None:
        selected = self._values.get(turn.id)
        if selected and client.config.forward:
            client.set_turn_headers(turn.id, headers=selected)
            self._applied.setdefault(turn.id, []).append(client)

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        self._values.pop(turn.id, None)
        for client in self._applied.pop(turn.id, []):
            client.clear_turn_headers(turn.id)


_ = TurnHook  # re-exported protocol

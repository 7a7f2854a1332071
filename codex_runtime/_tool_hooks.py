"""Values of the tool-call and agent-loop hooks: what a hook sees of a tool call, and what
it may decide about it, a prompt, or the end of an agent turn. `codex_runtime.session`
re-exports all of them."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .client import ToolCallError
from .headers import Headers, HeadersInput

__all__ = [
    "PromptDecision",
    "StopDecision",
    "ToolCallDenied",
    "ToolCallRequest",
    "ToolCallStatus",
    "ToolDecision",
]


class ToolCallStatus(enum.Enum):
    """How a tool call ended, as its `ToolCallRecord` tells hooks."""

    OK = "ok"
    """The tool returned a result that is not a tool error."""
    ERROR = "error"
    """The tool reported an error (``isError``), or the server refused the call."""
    DENIED = "denied"
    """A hook denied the call: the server never received it."""
    CANCELLED = "cancelled"
    """The call was cancelled (its turn was aborted, or the caller was cancelled)."""
    TIMEOUT = "timeout"
    """No answer within the tool timeout; the server was asked to cancel it."""
    UNAVAILABLE = "unavailable"
    """The server could not be reached (or its connection died during the call)."""


class ToolCallDenied(ToolCallError):
    """A tool-call hook denied the call; the server never received it.

    ``reason`` is the hook's reason (what the agent loop hands to the model), ``hook``
    the name of the hook that denied it.
    """

    def __init__(self, server: str, tool: str, reason: str, *, hook: str = "") -> None:
        super().__init__(server, tool, f"denied by a hook: {reason}")
        self.reason = reason
        self.hook = hook


def _headers(value: Any) -> Headers:
    if value is None:
        return Headers(())
    return value if isinstance(value, Headers) else Headers(value)


@attrs.frozen
class ToolCallRequest:
    """One tool call as the tool-call hooks see it, before it is sent.

    ``call_id`` is unique per call (the model's tool call id when the agent loop makes
    it); ``arguments`` is the JSON object sent as the tool's arguments; ``headers`` the
    call-scoped headers and ``meta`` the ``params._meta`` entries given for this call
    (turn, static and trace headers are added later, by the client, as for any call).
    Start hooks see the request as the hooks before them rewrote it.
    """

    call_id: str
    server: str
    tool: str
    arguments: dict[str, Any] = attrs.field(factory=dict)
    headers: Headers = attrs.field(factory=lambda: Headers(()))
    meta: dict[str, Any] = attrs.field(factory=dict)

    @property
    def qualified_name(self) -> str:
        """``server__tool``, the name the agent loop gives the model."""
        return f"{self.server}__{self.tool}"


@attrs.frozen
class ToolDecision:
    """What a start hook decided about a tool call (``None`` from the hook allows it).

    Build one with `ToolDecision.deny` or `ToolDecision.update`.
    """

    action: Literal["deny", "update"]
    reason: str | None = None
    arguments: Mapping[str, Any] | None = None
    headers: Headers | None = None
    meta: Mapping[str, Any] | None = None

    @classmethod
    def deny(cls, reason: str) -> ToolDecision:
        """Refuse the call: it is never sent, ``turn.call_tool`` raises `ToolCallDenied`
        and the agent loop gives ``reason`` to the model."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("ToolDecision.deny() needs a non-empty reason (the model and the caller see it)")
        return cls("deny", reason=reason.strip())

    @classmethod
    def update(
        cls,
        arguments: Mapping[str, Any] | None = None,
        headers: HeadersInput | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> ToolDecision:
        """Rewrite the call: each given part replaces the request's (``arguments`` the whole
        JSON object, ``headers`` the call headers, ``meta`` the ``_meta`` entries).

        The rewritten call is checked like any other before it is sent: arguments stay a
        JSON object, headers follow the header rules (protected names refused), reserved
        ``_meta`` keys stay reserved.
        """
        if arguments is None and headers is None and meta is None:
            raise ValueError("ToolDecision.update() needs arguments, headers or meta")
        if arguments is not None and not isinstance(arguments, Mapping):
            raise TypeError("ToolDecision.update(arguments=...) must be a mapping (a JSON object)")
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError("ToolDecision.update(meta=...) must be a mapping")
        return cls(
            "update",
            arguments=dict(arguments) if arguments is not None else None,
            headers=_headers(headers) if headers is not None else None,
            meta=dict(meta) if meta is not None else None,
        )


@attrs.frozen
class PromptDecision:
    """What an ``on_user_prompt`` hook decided about the user's prompt (``None``: go on).

    `PromptDecision.block` stops the turn before the model sees the prompt;
    `PromptDecision.add_context` adds text the model sees after the prompt.
    """

    action: Literal["block", "add_context"]
    text: str

    @classmethod
    def block(cls, reason: str) -> PromptDecision:
        """Do not run the prompt: the turn ends without a model call; ``reason`` is reported."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("PromptDecision.block() needs a non-empty reason")
        return cls("block", reason.strip())

    @classmethod
    def add_context(cls, text: str) -> PromptDecision:
        """Run the prompt with ``text`` added as context the model sees."""
        if not isinstance(text, str) or not text:
            raise ValueError("PromptDecision.add_context() needs a non-empty text")
        return cls("add_context", text)


@attrs.frozen
class StopDecision:
    """What an ``on_stop`` hook decided when the model gave its final answer (``None``: stop)."""

    action: Literal["go_on"]
    reason: str

    @classmethod
    def go_on(cls, reason: str) -> StopDecision:
        """Give the model one more step, with ``reason`` as the next user message.

        Bounded by the agent loop's ``max_steps``: at the last step the turn ends anyway.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("StopDecision.go_on() needs a non-empty reason (the model sees it)")
        return cls("go_on", reason.strip())

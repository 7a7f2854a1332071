"""Low-level OpenTelemetry helpers used by the client (API only; a no-op without an SDK)."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._version import __version__

__all__ = [
    "TOOL_SPAN_OPERATION",
    "TRACER_NAME",
    "AgentInvocation",
    "bind_tool_call_id",
    "clean_otel_context",
    "current_agent",
    "inject_trace_headers",
    "invoking_agent",
    "record_connection",
    "record_tool_result",
    "tool_call_span",
    "tool_span_name",
    "tracer",
]

TRACER_NAME = "codex_runtime"
#: ``gen_ai.operation.name`` of a tool call, and the first word of its span's name.
TOOL_SPAN_OPERATION = "execute_tool"
_W3C = TraceContextTextMapPropagator()

# The model's id for the tool call the current task makes (set by the agent loop).
_TOOL_CALL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "codex_runtime_tool_call_id", default=None
)


class AgentInvocation:
    """The agent a turn being started belongs to: its name and model provider, if known."""

    __slots__ = ("name", "provider")

    def __init__(self, name: str | None, provider: str | None) -> None:
        self.name = name
        self.provider = provider


_AGENT: contextvars.ContextVar[AgentInvocation | None] = contextvars.ContextVar(
    "codex_runtime_agent", default=None
)


class bind_tool_call_id:
    """``with bind_tool_call_id(id):`` tool calls made inside get ``gen_ai.tool.call.id`` = ``id``."""

    __slots__ = ("_call_id", "_token")

    def __init__(self, call_id: str | None) -> None:
        self._call_id = call_id
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        self._token = _TOOL_CALL_ID.set(self._call_id)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _TOOL_CALL_ID.reset(self._token)
            self._token = None


@contextmanager
def invoking_agent(name: str | None, provider: str | None) -> Iterator[None]:
    """A turn started inside the block is an agent invocation (see `current_agent`)."""
    token = _AGENT.set(AgentInvocation(name, provider))
    try:
        yield
    finally:
        _AGENT.reset(token)


def current_agent() -> AgentInvocation | None:
    """The agent invocation the calling task is starting a turn for, if any."""
    return _AGENT.get()


@functools.lru_cache(maxsize=1024)
def tool_span_name(tool: str) -> str:
    """``execute_tool {tool}``: the GenAI conventions' name of a tool call span."""
    return f"{TOOL_SPAN_OPERATION} {tool}"


_TRACER: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """The package's tracer.

    Made on first use and kept: asking the SDK's provider for a tracer costs more than
    a span. Made before any provider is installed, it is OpenTelemetry's proxy tracer,
    which uses the provider installed later.
    """
    global _TRACER
    if _TRACER is None:
        _TRACER = trace.get_tracer(TRACER_NAME, __version__)
    return _TRACER


def inject_trace_headers(carrier: MutableMapping[str, str]) -> None:
    """Put ``traceparent`` / ``tracestate`` of the current span into ``carrier``.

    Only W3C trace context is injected, never baggage: baggage is opt-in and goes only
    to Apps servers (see `TraceTurns`).
    """
    _W3C.inject(carrier)


def clean_otel_context() -> None:
    """Detach from any span for the rest of the current task (connection owner tasks)."""
    otel_context.attach(otel_context.Context())


def _endpoint(url: str | None) -> tuple[str | None, int | None]:
    if url is None:
        return None, None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname, port


@functools.lru_cache(maxsize=1024)
def _span_attributes(
    server: str,
    tool: str,
    transport: str,
    url: str | None,
    connection: tuple[str | None, str | None] | None = None,
) -> Mapping[str, Any]:
    # Computed once per server, tool and connection, shared by their spans (the SDK
    # copies them).
    address, port = _endpoint(url)
    attributes: dict[str, Any] = {
        "mcp.server.name": server,
        "tool.name": tool,
        "mcp.transport": transport,
        "mcp.method.name": "tools/call",
        "gen_ai.operation.name": TOOL_SPAN_OPERATION,
        "gen_ai.tool.name": tool,
        "network.transport": "tcp" if transport == "streamable-http" else "pipe",
    }
    if transport == "streamable-http":
        attributes["network.protocol.name"] = "http"
    if address is not None:
        attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    if connection is not None:
        protocol_version, session_id = connection
        if protocol_version:
            attributes["mcp.protocol.version"] = protocol_version
        if session_id:
            attributes["mcp.session.id"] = session_id
    return MappingProxyType(attributes)


def active_tracer() -> trace.Tracer | None:
    """The package's tracer, or None while no tracer provider can record (only the API).

    Without an SDK every span would be a no-op; skipping it saves its cost and changes
    nothing that leaves the process (a no-op span carries its parent's context).
    """
    global _ACTIVE
    if _ACTIVE is not None:
        return _ACTIVE
    if getattr(trace, "_TRACER_PROVIDER", True) is None:
        return None  # no provider installed yet (OpenTelemetry's own global): the cheap check
    proxy = tracer()
    # A proxy tracer resolves to the real one once a provider is installed (its private
    # ``_tracer``; without that attribute, spans are simply always made).
    real = getattr(proxy, "_tracer", proxy)
    if isinstance(real, trace.NoOpTracer):
        return None
    # A process's tracer provider is set once for good: so is its real tracer.
    _ACTIVE = real
    return real


_ACTIVE: trace.Tracer | None = None


#: What `tool_call_span` gives while nothing records: no span object at all.
_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def tool_call_span(
    server: str,
    tool: str,
    *,
    transport: str,
    url: str | None,
    connection: tuple[str | None, str | None] | None = None,
) -> AbstractContextManager[Span]:
    """An INTERNAL span ``execute_tool {tool}`` around one tool call, current while it runs.

    Name, kind and attributes follow the OpenTelemetry GenAI conventions for a tool
    execution (``gen_ai.operation.name`` = ``execute_tool``, ``gen_ai.tool.name``,
    ``gen_ai.tool.call.id`` for a call of a turn: its ``call_id``), with the MCP conventions'
    attributes merged in (``mcp.method.name``, ``network.transport``,
    ``network.protocol.name``, ``server.address``, ``server.port``; ``mcp.protocol.version``
    and, in the legacy era, ``mcp.session.id`` — from ``connection``, the connection's
    (protocol version, legacy session id) when known before the call, else via
    `record_connection`; on failure ``error.type`` — the JSON-RPC error code, or
    ``tool_error`` via `record_tool_result` — with status ``ERROR``), plus this package's
    ``mcp.server.name``, ``tool.name`` and ``mcp.transport``. The SDK's own CLIENT span
    ``MCP send tools/call {tool}`` is its child. Without a recording tracer provider it is
    a shared no-op (`INVALID_SPAN`).
    """
    active = active_tracer()
    if active is None:
        return _NO_SPAN
    attributes = _span_attributes(server, tool, transport, url, connection)
    call_id = _TOOL_CALL_ID.get()
    if call_id is not None:
        attributes = {**attributes, "gen_ai.tool.call.id": call_id}
    span = active.start_span(tool_span_name(tool), kind=SpanKind.INTERNAL, attributes=attributes)
    return _CurrentSpan(span)


class _CurrentSpan:
    """Make ``span`` current for a block, mark its failure, end it (one object, no generators)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        span = self._span
        try:
            if exc is not None:
                _record_failure(span, exc)
        finally:
            otel_context.detach(self._token)  # type: ignore[arg-type]
            span.end()


def _record_failure(span: Span, exc: BaseException) -> None:
    code = getattr(exc, "code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        # A JSON-RPC error: the MCP conventions want its code and message.
        span.set_attribute("error.type", str(code))
        span.set_attribute("rpc.response.status_code", str(code))
        span.set_status(Status(StatusCode.ERROR, str(getattr(exc, "reason", exc))))
    else:
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def record_connection(span: Span, protocol_version: str | None, session_id: str | None) -> None:
    """Add what the connection negotiated to a tool call span.

    ``mcp.protocol.version``; ``mcp.session.id`` only for a legacy-era session (the
    conventions forbid it from 2026-07-28 on, where there are no sessions).
    """
    if not span.is_recording():
        return
    if protocol_version:
        span.set_attribute("mcp.protocol.version", protocol_version)
    if session_id:
        span.set_attribute("mcp.session.id", session_id)


def record_tool_result(span: Span, result: Any) -> None:
    """Mark a ``tools/call`` span whose result reports a tool error (``isError``).

    The MCP conventions set ``error.type`` to ``tool_error`` (and status ``ERROR``) when
    the call succeeds at the protocol level but the tool failed.
    """
    if getattr(result, "is_error", False) is True and span.is_recording():
        span.set_attribute("error.type", "tool_error")
        span.set_status(Status(StatusCode.ERROR))

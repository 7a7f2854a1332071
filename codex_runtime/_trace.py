"""Low-level OpenTelemetry helpers used by the client (API only; a no-op without an SDK)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._version import __version__

__all__ = [
    "TRACER_NAME",
    "clean_otel_context",
    "inject_trace_headers",
    "record_tool_result",
    "tool_call_span",
    "tracer",
]

TRACER_NAME = "codex_runtime"
_W3C = TraceContextTextMapPropagator()


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
def _span_attributes(server: str, tool: str, transport: str, url: str | None) -> Mapping[str, Any]:
    # Computed once per server and tool, shared by their spans (the SDK copies them).
    address, port = _endpoint(url)
    attributes: dict[str, Any] = {
        "mcp.server.name": server,
        "tool.name": tool,
        "mcp.transport": transport,
        "mcp.method.name": "tools/call",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool,
        "network.transport": "tcp" if transport == "streamable-http" else "pipe",
    }
    if transport == "streamable-http":
        attributes["network.protocol.name"] = "http"
    if address is not None:
        attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    return MappingProxyType(attributes)


@contextmanager
def tool_call_span(server: str, tool: str, *, transport: str, url: str | None) -> Iterator[Span]:
    """A CLIENT span ``mcp.tools.call`` around one tool call, current while it runs.

    Attribute names follow the OpenTelemetry semantic conventions for MCP
    (``mcp.method.name``, ``gen_ai.tool.name``, ``gen_ai.operation.name``,
    ``network.transport``, ``network.protocol.name``, ``server.address``,
    ``server.port``, and on failure ``error.type`` — the JSON-RPC error code, or
    ``tool_error`` via `record_tool_result` — with status ``ERROR``; see
    https://opentelemetry.io/docs/specs/semconv/gen-ai/mcp/) plus this package's
    ``mcp.server.name``, ``tool.name`` and ``mcp.transport``.
    """
    with tracer().start_as_current_span(
        "mcp.tools.call",
        kind=SpanKind.CLIENT,
        attributes=_span_attributes(server, tool, transport, url),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            code = getattr(exc, "code", None)
            if isinstance(code, int) and not isinstance(code, bool):
                # A JSON-RPC error: the MCP conventions want its code and message.
                span.set_attribute("error.type", str(code))
                span.set_attribute("rpc.response.status_code", str(code))
                span.set_status(Status(StatusCode.ERROR, str(getattr(exc, "reason", exc))))
            else:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def record_tool_result(span: Span, result: Any) -> None:
    """Mark a ``tools/call`` span whose result reports a tool error (``isError``).

    The MCP conventions set ``error.type`` to ``tool_error`` (and status ``ERROR``) when
    the call succeeds at the protocol level but the tool failed.
    """
    if getattr(result, "is_error", False) is True:
        span.set_attribute("error.type", "tool_error")
        span.set_status(Status(StatusCode.ERROR))

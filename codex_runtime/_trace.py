"""Low-level OpenTelemetry helpers used by the client (API only; a no-op without an SDK)."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._version import __version__

__all__ = ["TRACER_NAME", "clean_otel_context", "inject_trace_headers", "tool_call_span", "tracer"]

TRACER_NAME = "codex_runtime"
_W3C = TraceContextTextMapPropagator()


def tracer() -> trace.Tracer:
    """The package's tracer, resolved lazily so a provider installed later is used."""
    return trace.get_tracer(TRACER_NAME, __version__)


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


@contextmanager
def tool_call_span(server: str, tool: str, *, transport: str, url: str | None) -> Iterator[Span]:
    """A CLIENT span ``mcp.tools.call`` around one tool call, current while it runs.

    Attribute names follow the OpenTelemetry semantic conventions for MCP
    (``mcp.method.name``, ``gen_ai.tool.name``, ``gen_ai.operation.name``,
    ``network.transport``, ``server.address``, ``server.port``; see
    https://opentelemetry.io/docs/specs/semconv/gen-ai/mcp/) plus this package's
    ``mcp.server.name``, ``tool.name`` and ``mcp.transport``.
    """
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
    if address is not None:
        attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    with tracer().start_as_current_span(
        "mcp.tools.call",
        kind=SpanKind.CLIENT,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("error.type", type(exc).__qualname__)
            raise

"""OpenTelemetry for sessions and turns: spans, and W3C trace context in and out.

`TraceTurns` is a turn hook: an optional ``session`` span for the session's life, and a
span per turn (``invoke_agent {name}`` for a turn of the agent loop, else ``turn``),
current inside the turn body. The client adds, under it, an ``execute_tool {tool}`` span
per tool call, and the mcp SDK its own ``MCP send tools/call {tool}`` client span, whose
context reaches the server twice in the same request: in the HTTP ``traceparent`` /
``tracestate`` headers and in ``params._meta`` (SEP-414). Stdio servers get ``_meta`` only.

Incoming context: `context_from_headers` (what a gateway got on its HTTP request, passed
as ``session.turn(forwarded_headers=...)``) and `context_from_environ` (``TRACEPARENT`` /
``TRACESTATE`` of a command-line run). Anything malformed is ignored (logged at debug,
never raised): the turn does not continue the caller's trace but starts from the session
span, or a new trace.

Everything here needs only ``opentelemetry-api``: without an SDK the spans are
non-recording, a caller's context passes through unchanged, and nothing raises.
`install_memory_exporter` and `format_span_tree` are for showing a run's spans
(``pip install 'codex-runtime[otel]'``).

Span names and attributes follow the OpenTelemetry semantic conventions for MCP
(https://opentelemetry.io/docs/specs/semconv/gen-ai/mcp/) and GenAI agents
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-agent-spans/) where they define
one; see `TraceTurns`.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._trace import current_agent, tracer
from .headers import CodexRuntimeError, HeadersInput, InvalidHeaderError, normalize_incoming

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .client import McpClient
    from .session import Session, Turn, TurnOutcome

__all__ = [
    "AGENT_SPAN",
    "KEY_ATTRIBUTES",
    "SESSION_SPAN",
    "TURN_SPAN",
    "TraceParent",
    "TraceTurns",
    "TracingUnavailableError",
    "context_from_environ",
    "context_from_headers",
    "format_span_tree",
    "install_memory_exporter",
    "parse_traceparent",
]

logger = logging.getLogger("codex_runtime.tracing")

SESSION_SPAN = "session"
TURN_SPAN = "turn"
#: A turn of the agent loop: ``invoke_agent {agent name}`` (GenAI conventions).
AGENT_SPAN = "invoke_agent"

_W3C = TraceContextTextMapPropagator()
_BAGGAGE = W3CBaggagePropagator()
# A version-00 traceparent is 55 characters; later versions may append fields. The
# propagator warns above this length: keep such input at debug level, like any other.
_MAX_TRACEPARENT = 512
_SHOWN = 80
# tracestate list members, from the grammar of W3C Trace Context (section 3.3.1).
_KEY_CHARS = r"[a-z0-9_\-*/]"
_TRACESTATE_MEMBER = re.compile(
    rf"(?:[a-z]{_KEY_CHARS}{{0,255}}|[a-z0-9]{_KEY_CHARS}{{0,240}}@[a-z]{_KEY_CHARS}{{0,13}})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
_MAX_TRACESTATE_MEMBERS = 32


class TracingUnavailableError(CodexRuntimeError, ImportError):
    """A feature needs the OpenTelemetry SDK, which is not installed (or not in use)."""


# -- incoming context -------------------------------------------------------------------


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")


def _single(headers: HeadersInput, name: str, source: str) -> str | None:
    """The resolved value of ``name`` under the merge rules, or None (absent or invalid)."""
    try:
        return normalize_incoming(headers, lambda n: n == name).get(name)
    except InvalidHeaderError as exc:
        logger.debug("ignoring %s from %s: %s", name, source, exc)
        return None


def _tracestate_problem(value: str) -> str | None:
    """Why ``value`` is not a valid ``tracestate``, or None when it is."""
    keys: set[str] = set()
    for raw in value.split(","):
        member = raw.strip(" \t")
        if not member:
            continue  # empty list members are allowed
        if _TRACESTATE_MEMBER.fullmatch(member) is None:
            return f"malformed member {_shown(member)}"
        key = member.split("=", 1)[0]
        if key in keys:
            return f"key {key!r} repeated"
        keys.add(key)
    if len(keys) > _MAX_TRACESTATE_MEMBERS:
        return f"more than {_MAX_TRACESTATE_MEMBERS} members"
    return None


def context_from_headers(headers: HeadersInput, *, source: str = "forwarded headers") -> Context | None:
    """The W3C trace context carried by ``headers``, as a parent for new spans; None if none.

    ``headers`` is any form `Headers` accepts, names case-insensitive. ``traceparent``
    must be present once (identical repeats count as one; differing repeats are never
    joined and make it invalid) and valid. Repeated ``tracestate`` values are merged by
    the list rule (joined in order) and passed on as they are; an invalid ``tracestate``
    is dropped, never the ``traceparent``. Baggage is never read. Never raises for bad
    input: a missing or malformed ``traceparent`` returns None and is logged at debug
    (``source`` names the input in the log).
    """
    traceparent = _single(headers, "traceparent", source)
    if traceparent is None:
        return None
    if len(traceparent) > _MAX_TRACEPARENT:
        logger.debug("ignoring traceparent from %s: longer than %d characters", source, _MAX_TRACEPARENT)
        return None
    carrier = {"traceparent": traceparent}
    tracestate = _single(headers, "tracestate", source)
    if tracestate:
        problem = _tracestate_problem(tracestate)
        if problem is None:
            carrier["tracestate"] = tracestate
        else:
            logger.debug("ignoring tracestate from %s: %s", source, problem)
    context = _W3C.extract(carrier, context=Context())
    if not trace.get_current_span(context).get_span_context().is_valid:
        logger.debug("ignoring malformed traceparent from %s: %s", source, _shown(traceparent))
        return None
    return context


def context_from_environ(environ: Mapping[str, str] | None = None) -> Context | None:
    """The trace context in the ``TRACEPARENT`` / ``TRACESTATE`` environment variables.

    This continues a parent trace in a command-line run (the environment-variable carrier
    of the OpenTelemetry specification, https://opentelemetry.io/docs/specs/otel/context/env-carriers/).
    ``environ`` defaults to `os.environ`. Returns None when ``TRACEPARENT`` is unset or
    malformed (logged at debug), never raises.
    """
    env = os.environ if environ is None else environ
    pairs = [(name.lower(), env[name]) for name in ("TRACEPARENT", "TRACESTATE") if env.get(name)]
    if not pairs:
        return None
    return context_from_headers(pairs, source="the environment")


def _ambient_or_environ() -> Context:
    """The current context when a span is current in it, else the environment's, else none."""
    current = otel_context.get_current()
    if trace.get_current_span(current).get_span_context().is_valid:
        return current
    environ = context_from_environ()
    return environ if environ is not None else Context()


@attrs.frozen
class TraceParent:
    """The fields of a W3C ``traceparent`` value, as lower-case hex strings."""

    version: str
    trace_id: str
    span_id: str
    flags: str

    @property
    def sampled(self) -> bool:
        """Whether the sampled flag is set."""
        return bool(int(self.flags, 16) & 0x01)

    def __str__(self) -> str:
        return f"{self.version}-{self.trace_id}-{self.span_id}-{self.flags}"


def parse_traceparent(value: str | None) -> TraceParent | None:
    """Parse a ``traceparent`` value (e.g. what a server received); None when invalid."""
    if not isinstance(value, str) or not value:
        return None
    context = context_from_headers([("traceparent", value)], source="parse_traceparent")
    if context is None:
        return None
    span_context = trace.get_current_span(context).get_span_context()
    return TraceParent(
        version=value[:2].lower(),
        trace_id=format(span_context.trace_id, "032x"),
        span_id=format(span_context.span_id, "016x"),
        flags=format(span_context.trace_flags, "02x"),
    )


# -- the hook -------------------------------------------------------------------------


@attrs.define
class _TurnTrace:
    span: Span
    token: contextvars.Token[Context]
    baggage: str | None = None
    clients: list[McpClient] = attrs.field(factory=list)


class TraceTurns:
    """A turn hook that traces sessions and turns with OpenTelemetry.

    Spans (kind ``INTERNAL``; this package's names and attribute keys, plus the
    semantic-convention attributes where a convention exists):

    - ``session`` (unless ``session_span=False``), from session enter to exit, with
      ``session.id`` and ``gen_ai.conversation.id`` (GenAI semantic conventions: the id of
      a conversation/session/thread). It is never made current in any task, so tasks
      outside the session's turns never inherit it; turns use it as their explicit parent.
      Its own parent is the span current when the session is entered, else the
      ``TRACEPARENT`` environment variable's context, else none (a new trace).
    - per turn, with ``session.id``, ``turn.id``, ``turn.index``,
      ``gen_ai.conversation.id`` (the session id), and at its end ``turn.outcome``
      (``completed``, ``failed``, ``aborted``) and ``turn.abort_reason``
      (``interrupted``, ``replaced``, ``shutdown``, ``timeout``) when aborted. A turn of
      the agent loop (`AgentLoop.run_turn`) is a GenAI agent invocation: named
      ``invoke_agent {gen_ai.agent.name}`` (``invoke_agent`` when the loop has no name),
      with ``gen_ai.operation.name`` = ``invoke_agent``, ``gen_ai.agent.name`` and
      ``gen_ai.provider.name`` when known. Any other turn is named ``turn``. A ``FAILED``
      turn has status ``ERROR``, ``error.type`` (the exception's type) and the exception
      recorded as an event. The span is current inside the turn body (and the tasks it
      spawns), so each tool call's ``execute_tool`` span and the SDK's ``MCP send
      tools/call`` client span are its descendants, and servers receive its trace.

    The ``execute_tool {tool}`` span is opened by `McpClient.call_tool` (kind
    ``INTERNAL``, as the GenAI conventions' tool execution span; the SDK's CLIENT span
    below it is the request) with, from the GenAI and MCP semantic conventions
    (https://opentelemetry.io/docs/specs/semconv/gen-ai/mcp/): ``gen_ai.operation.name``
    = ``execute_tool``, ``gen_ai.tool.name``, ``gen_ai.tool.call.id`` (a turn's call: its
    ``call_id``, the model's id when the agent loop made it), ``mcp.method.name`` = ``tools/call``,
    ``mcp.protocol.version``, ``mcp.session.id`` (legacy-era sessions only),
    ``network.transport`` (``tcp`` or ``pipe``), ``network.protocol.name`` (``http``),
    ``server.address`` and ``server.port`` (HTTP only), and on failure status ``ERROR``
    with ``error.type``: the JSON-RPC error code, ``tool_error`` for a result with
    ``isError``, else the exception's type; plus this package's ``mcp.server.name``,
    ``tool.name`` and ``mcp.transport`` (``streamable-http`` or ``stdio``).

    Args:
        parent: ``"auto"`` (default): a turn continues the caller's trace when its
            ``forwarded_headers`` carry a valid ``traceparent`` (see
            `context_from_headers`), with a link to the session span; otherwise it is a
            child of the session span. ``"session"``: forwarded context is ignored. With
            no session span, a turn is a child of the span current when it starts, else
            of the ``TRACEPARENT`` environment variable's context, else a new trace.
        session_span: Open the ``session`` span (default True).
        baggage: Also send W3C baggage ``session.id`` and ``turn.id`` to Apps servers
            (``ServerConfig(apps=True)``) only, as a turn entry (the ``baggage`` HTTP
            header and ``params._meta["baggage"]``, on ``turn_header_methods``). Off by
            default: baggage leaves the process, and servers forward it further. It is
            never put in the OpenTelemetry context, so no other server receives it.
    """

    def __init__(
        self,
        *,
        parent: Literal["auto", "session"] = "auto",
        session_span: bool = True,
        baggage: bool = False,
    ) -> None:
        if parent not in ("auto", "session"):
            raise ValueError("TraceTurns parent must be 'auto' or 'session'")
        self.parent: Literal["auto", "session"] = parent
        self.session_span = bool(session_span)
        self.baggage = bool(baggage)
        self._sessions: dict[Session, Span] = {}
        self._turns: dict[str, _TurnTrace] = {}

    def __repr__(self) -> str:
        return (
            f"TraceTurns(parent={self.parent!r}, session_span={self.session_span!r}, "
            f"baggage={self.baggage!r})"
        )

    # -- session ----------------------------------------------------------------------

    async def on_session_start(self, session: Session) -> None:
        if not self.session_span or session in self._sessions:
            return
        self._sessions[session] = tracer().start_span(
            SESSION_SPAN,
            context=_ambient_or_environ(),
            kind=SpanKind.INTERNAL,
            attributes={"session.id": session.session_id, "gen_ai.conversation.id": session.session_id},
        )

    async def on_session_end(self, session: Session) -> None:
        span = self._sessions.pop(session, None)
        if span is not None:
            span.end()

    def session_span_of(self, session: Session) -> Span | None:
        """The open ``session`` span of ``session``, if any."""
        return self._sessions.get(session)

    # -- turns -------------------------------------------------------------------------

    def _parent_context(self, turn: Turn, session_span: Span | None) -> tuple[Context, bool]:
        """(parent context, whether it is the session span's)."""
        if self.parent == "auto" and turn.forwarded_headers:
            forwarded = context_from_headers(turn.forwarded_headers)
            if forwarded is not None:
                return forwarded, False
        if session_span is not None:
            return trace.set_span_in_context(session_span, Context()), True
        return _ambient_or_environ(), False

    async def on_turn_start(self, turn: Turn) -> None:
        session_span = self._sessions.get(turn.session)
        parent, is_session = self._parent_context(turn, session_span)
        links = None
        if session_span is not None and not is_session:
            links = [Link(session_span.get_span_context(), {"codex_runtime.link": "session"})]
        attributes: dict[str, Any] = {
            "session.id": turn.session_id,
            "turn.id": turn.id,
            "turn.index": turn.index,
            "gen_ai.conversation.id": turn.session_id,
        }
        name = TURN_SPAN
        agent = current_agent()
        if agent is not None:
            # GenAI conventions: an in-process agent invocation (gen_ai.invoke_agent.internal).
            name = f"{AGENT_SPAN} {agent.name}" if agent.name else AGENT_SPAN
            attributes["gen_ai.operation.name"] = AGENT_SPAN
            if agent.name:
                attributes["gen_ai.agent.name"] = agent.name
            if agent.provider:
                attributes["gen_ai.provider.name"] = agent.provider
        span = tracer().start_span(
            name, context=parent, kind=SpanKind.INTERNAL, attributes=attributes, links=links
        )
        # Start hooks run in the task that runs the turn body, and end hooks in the same
        # task: attach here, detach in `on_turn_end`.
        token = otel_context.attach(trace.set_span_in_context(span))
        state = _TurnTrace(span, token)
        self._turns[turn.id] = state
        if self.baggage:
            state.baggage = _baggage_value(turn)
            for client in turn.session.apps_clients:
                self._send_baggage(turn, client, state)

    async def on_client_added(self, turn: Turn, client: McpClient) -> None:
        state = self._turns.get(turn.id)
        if state is not None and state.baggage is not None and client.config.apps:
            self._send_baggage(turn, client, state)

    def _send_baggage(self, turn: Turn, client: McpClient, state: _TurnTrace) -> None:
        assert state.baggage is not None
        client.set_turn_headers(turn.id, headers={"baggage": state.baggage}, meta={"baggage": state.baggage})
        state.clients.append(client)

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        state = self._turns.pop(turn.id, None)
        if state is None:  # our start hook never ran to its end
            return
        try:
            for client in state.clients:
                # Only our own values: other hooks' entries stay until their end hooks.
                client.clear_turn_headers(turn.id, headers=("baggage",), meta=("baggage",))
            span = state.span
            span.set_attribute("turn.outcome", outcome.state.value)
            if outcome.abort_reason is not None:
                span.set_attribute("turn.abort_reason", outcome.abort_reason.value)
            if outcome.state.value == "failed":
                error = outcome.error
                if error is not None:
                    span.set_attribute("error.type", type(error).__qualname__)
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR, _describe(error)))
                else:
                    span.set_attribute("error.type", "_OTHER")
                    span.set_status(Status(StatusCode.ERROR))
            span.end()
        finally:
            otel_context.detach(state.token)


def _describe(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _baggage_value(turn: Turn) -> str:
    context = otel_baggage.set_baggage("session.id", turn.session_id, Context())
    context = otel_baggage.set_baggage("turn.id", turn.id, context)
    carrier: dict[str, str] = {}
    _BAGGAGE.inject(carrier, context)
    return carrier["baggage"]


# -- showing spans ----------------------------------------------------------------------


def install_memory_exporter() -> InMemorySpanExporter:
    """Record every span of this process in memory, and return the exporter.

    Uses the installed SDK `TracerProvider` if there is one, else installs one (a
    process has one tracer provider for good). Read the spans with
    ``exporter.get_finished_spans()`` and show them with `format_span_tree`.

    Raises:
        TracingUnavailableError: opentelemetry-sdk is not installed (``pip install
            'codex-runtime[otel]'``), or a tracer provider that is not the SDK's is
            already installed.
    """
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        raise TracingUnavailableError(
            "recording spans needs the OpenTelemetry SDK: pip install 'codex-runtime[otel]'"
        ) from None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            raise TracingUnavailableError(
                f"another tracer provider ({type(provider).__name__}) is already installed in this "
                "process; spans can be recorded only through the OpenTelemetry SDK's TracerProvider"
            )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


#: Attributes `format_span_tree` shows, in this order, when a span has them (the tool and
#: method are in the span names: ``execute_tool {tool}``, ``MCP send tools/call {tool}``).
KEY_ATTRIBUTES: tuple[str, ...] = (
    "session.id",
    "turn.index",
    "turn.id",
    "turn.outcome",
    "turn.abort_reason",
    "gen_ai.agent.name",
    "mcp.server.name",
    "gen_ai.tool.call.id",
    "jsonrpc.request.id",
    "error.type",
)


def _hex_span(span_id: int) -> str:
    return format(span_id, "016x")


def format_span_tree(
    spans: Iterable[ReadableSpan],
    *,
    trace_ids: Iterable[int | str] | None = None,
    attributes: Sequence[str] = KEY_ATTRIBUTES,
) -> str:
    """An indented tree of finished spans, one block per trace, children in start order.

    Each line shows the span's name, kind (when not internal), span id, the
    ``attributes`` it has (by default `KEY_ATTRIBUTES`), the span ids it links to, and
    an error status. A span
    whose parent is not among ``spans`` heads its own subtree, with the parent's id
    (``remote`` when it came from another process, e.g. a forwarded ``traceparent``).
    ``trace_ids`` (ints or hex strings) keeps only those traces.
    """
    items = list(spans)
    if trace_ids is not None:
        wanted = {t if isinstance(t, int) else int(t, 16) for t in trace_ids}
        items = [s for s in items if s.context is not None and s.context.trace_id in wanted]
    by_id: dict[tuple[int, int], ReadableSpan] = {}
    for span in items:
        ctx = span.context
        if ctx is not None:
            by_id[(ctx.trace_id, ctx.span_id)] = span
    children: dict[tuple[int, int], list[ReadableSpan]] = {}
    roots: dict[int, list[ReadableSpan]] = {}
    for span in items:
        ctx = span.context
        if ctx is None:
            continue
        parent = span.parent
        if parent is not None and (parent.trace_id, parent.span_id) in by_id:
            children.setdefault((parent.trace_id, parent.span_id), []).append(span)
        else:
            roots.setdefault(ctx.trace_id, []).append(span)

    def start(span: ReadableSpan) -> int:
        return span.start_time or 0

    def label(span: ReadableSpan) -> str:
        assert span.context is not None
        parts = [span.name]
        if span.kind is not SpanKind.INTERNAL:
            parts.append(f"[{span.kind.name.lower()}]")
        parts.append(f"span={_hex_span(span.context.span_id)}")
        attrs_of: Mapping[str, Any] = span.attributes or {}
        parts.extend(f"{key}={attrs_of[key]}" for key in attributes if key in attrs_of)
        parts.extend(f"link={_hex_span(link.context.span_id)}" for link in span.links)
        status = span.status
        if status.status_code is StatusCode.ERROR:
            parts.append(f"status=ERROR({status.description})" if status.description else "status=ERROR")
        return "  ".join(parts)

    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, last: bool, head: str = "") -> None:
        assert span.context is not None
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{label(span)}{head}")
        kids = sorted(children.get((span.context.trace_id, span.context.span_id), []), key=start)
        for i, kid in enumerate(kids):
            walk(kid, prefix + ("   " if last else "│  "), i == len(kids) - 1)

    ordered = sorted(roots.items(), key=lambda item: min(start(s) for s in item[1]))
    for trace_id, trace_roots in ordered:
        if lines:
            lines.append("")
        lines.append(f"trace {trace_id:032x}")
        trace_roots.sort(key=start)
        for i, root in enumerate(trace_roots):
            head = ""
            if root.parent is not None:
                where = "remote" if root.parent.is_remote else "not recorded"
                head = f"  (parent {_hex_span(root.parent.span_id)}, {where})"
            walk(root, "", i == len(trace_roots) - 1, head)
    return "\n".join(lines)

"""`McpClient`: one long-lived MCP connection with request headers resolved per request.

Every outgoing request of a client gets, lowest precedence first: the **static** headers
of its `ServerConfig`; the **turn** entry of the turn the sending task is bound to
(`bind_turn`), set with `set_turn_headers`; the **call** headers of the sending task
(`request_headers` or ``call_tool(headers=...)``); and the **trace** context of the span
current at send time. They are resolved in the sending task at send time, never by
mutating shared state, so concurrent calls neither serialize nor see each other's values.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import math
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import anyio
import attrs
import httpx2
from mcp import Client as SdkClient
from mcp.client import Transport
from mcp.client._input_required import InputRequiredRoundsExceededError
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import listen as sdk_listen
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    INVALID_PARAMS,
    REQUEST_TIMEOUT,
    CallToolResult,
    Implementation,
    RequestParamsMeta,
    ResourceUpdatedNotification,
    Tool,
    ToolListChangedNotification,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from ._context import (
    _CALL_HEADERS,
    _TURN_ID,
    _reset_for_owner_task,
    bind_turn,
    current_turn_id,
    request_headers,
)
from ._handlers import (
    ClientHandlers,
    ProgressCallback,
    ServerRequest,
    ServerRequestBridge,
    _CallScope,
    progress_adapter,
)
from ._observe import observe_writes
from ._requests import HeadersArg, McpRequestError, Sender, ServerFeatures
from ._server_config import ConfigError, HeaderDelivery, ServerConfig
from ._stdio import stdio_transport
from ._trace import (
    clean_otel_context,
    inject_trace_headers,
    record_connection,
    record_tool_result,
    tool_call_span,
)
from ._version import __version__
from .auth import AuthFlowFailed, build_auth, parse_www_authenticate
from .headers import (
    REDACTED,
    CodexRuntimeError,
    Headers,
    HeadersInput,
    InvalidHeaderError,
    _raw_pairs,
    check_settable,
    is_protected,
    is_secret,
    merge_layers,
    validate_name,
    validate_value,
)

__all__ = [
    "AuthorizationError",
    "ClientHandlers",
    "ConfigError",
    "HeaderDelivery",
    "McpClient",
    "McpRequestError",
    "ServerConfig",
    "ServerRequest",
    "ServerUnavailableError",
    "ToolCallError",
    "ToolTimeoutError",
    "bind_turn",
    "current_turn_id",
    "request_headers",
]

logger = logging.getLogger("codex_runtime.client")


class _RedactExtraHeaders(logging.Filter):
    """Hide secret header values that ``header_delivery="meta"`` puts in ``_meta.extra_headers``.

    The SDK's transport logs every outgoing message at DEBUG level, ``_meta`` included;
    header values of secret names (`is_secret`) must never reach a log record.
    """

    _PAIR = re.compile(r"""(['"])([!#$%&*+.^_`|~0-9A-Za-z-]+)\1(\s*:\s*)(['"])((?:\\.|(?!\4).)*)\4""")

    def filter(self, record: logging.LogRecord) -> bool:
        if "extra_headers" in str(record.msg):
            message = record.getMessage()
            record.msg = self._PAIR.sub(self._hide, message)
            record.args = None
        return True

    @staticmethod
    def _hide(match: re.Match[str]) -> str:
        quote, name, colon, value_quote, _ = match.groups()
        if not is_secret(name):
            return match.group(0)
        return f"{quote}{name}{quote}{colon}{value_quote}{REDACTED}{value_quote}"


logging.getLogger("mcp.client.streamable_http").addFilter(_RedactExtraHeaders())

#: `_meta` key prefixes reserved for first-party (Apps) servers; stripped for all others.
RESERVED_META_PREFIXES = ("x-codex-", "codex/", "_codex_", "openai/", "x-openai-")
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONNECT_DELAYS = (0.25, 1.0)  # three attempts in all
_STDIO_RESTARTS_PER_MINUTE = 5
_CLOSE_TIMEOUT = 5.0
_DEFAULT_READ_TIMEOUT = 300.0
# Added to a tools/call's own timeout to get the read timeout of its HTTP request: the
# call's deadline, not the transport, decides when a slow tool has taken too long.
_READ_TIMEOUT_MARGIN = 5.0
# The message of the error the SDK raises when a request's own clock (its
# ``read_timeout_seconds``) ran out, as opposed to a server's error with the same code.
_SDK_TIMEOUT_MESSAGE = "Request 'tools/call' timed out"

T = TypeVar("T")
HeaderValue = str | Callable[[], str]
MetaValue = Any


#: JSON-RPC error code of the answer `_McpTransport` makes up for a failed POST.
TRANSPORT_FAILED = -32099
#: JSON-RPC error code of the answer `_AuthorizingClient` makes up for a refused request.
AUTH_FAILED = -32098


class _McpTransport(httpx2.AsyncBaseTransport):
    """The HTTP transport of one `McpClient`: every layer it adds to the SDK's requests.

    One wrapper around the real transport, so that a request pays for one extra call, not
    for a request hook, a response hook and a wrapper each. For each request to the MCP
    endpoint it:

    - adds the sending task's turn and call headers and read timeout (`_Request`), when
      the request is the one the task sent (the same JSON-RPC method);
    - adds the W3C ``traceparent``/``tracestate`` of the span current in the sending task
      (the SDK sends each message in its sender's context);
    - shows the request to the client's ``on_request`` observer;
    - confines a transport failure of one POST to the one message it carried: a JSON-RPC
      request whose POST fails before any response arrives gets a made-up JSON-RPC error
      answer (code `TRANSPORT_FAILED`), which the SDK hands to that request's caller
      alone, instead of the exception ending the SDK's POST writer and every call in
      flight; the request is not resent, as whether the server saw it is unknown. A
      message that expects no answer (a notification such as ``notifications/cancelled``,
      or a response to a server request) is lost, as a notification may be: it gets a
      made-up ``202 Accepted``. The GET stream and DELETE fail as before;
    - records what the SDK's errors leave out: a ``404`` to a POST that carried an
      ``mcp-session-id`` (the legacy session is lost; see `_Request.session_lost`), and
      the statuses and session id seen while connecting;
    - with ``refuse`` (no auth provider, which would otherwise answer challenges itself),
      turns a final ``401``/``403`` to a POST into a JSON-RPC error answer for that
      request alone (see `_refusal_of`).

    Requests of an OAuth flow (to the authorization server) go out untouched.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, client: McpClient, *, refuse: bool) -> None:
        self._inner = inner
        self._client = client
        self._refuse = refuse

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        client = self._client
        if client._config.auth is not None and not client._is_endpoint(request.url):
            # A request of the auth flow (metadata, registration, token): it goes to the
            # authorization server as the SDK built it, with none of the MCP layers.
            return await self._inner.handle_async_request(request)
        headers = request.headers
        sent = _REQUEST.get()
        if sent is not None:
            if sent.client is client and _carries_method(request, sent.marker):
                for name, value in sent.http.items():
                    headers[name] = value
                if sent.read_timeout is not None:
                    timeouts = dict(request.extensions.get("timeout") or {})
                    timeouts["read"] = sent.read_timeout
                    request.extensions["timeout"] = timeouts
            else:
                sent = None  # some other message sent from the same task
        carrier = _trace_of_body(request) if sent is not None else None
        if carrier is None:
            carrier = {}
            inject_trace_headers(carrier)
        for name, value in carrier.items():
            headers[name] = value
        if client._request_observer is not None:
            await client._observe_request(request)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx2.TransportError as exc:
            if request.method != "POST":
                raise
            return _transport_failure(request, exc)
        status = response.status_code
        connecting = _CONNECTING.get()
        if connecting is not None and not connecting.ready.is_set():
            connecting.connect_statuses.append(status)
            session_id = response.headers.get("mcp-session-id")
            if session_id:
                connecting.session_id = session_id
        if status < 400:
            return response
        if status == 404 and sent is not None and request.method == "POST" and "mcp-session-id" in headers:
            sent.session_lost = True
        elif self._refuse and (status == 401 or status == 403) and request.method == "POST":
            return await _refusal_of(request, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@functools.lru_cache(maxsize=64)
def _method_marker(method: str) -> bytes:
    """How a JSON-RPC request of ``method`` spells its method in the body the SDK sends."""
    return b'"method":' + json.dumps(method).encode()


def _carries_method(request: httpx2.Request, marker: bytes) -> bool:
    """Whether the JSON-RPC message in ``request``'s body is a request with `_method_marker`.

    A look at the head of the body instead of parsing it: the SDK writes compact JSON
    with ``jsonrpc``, ``id`` and ``method`` first, and a string value elsewhere cannot
    hold the marker (its quotes would be escaped).
    """
    try:
        content = request.content
    except httpx2.RequestNotRead:
        return False
    return content.find(marker, 0, 256) >= 0


_TRACEPARENT_KEY = b'"traceparent":"'
_TRACESTATE_NEXT = b',"tracestate":"'
_TRACEPARENT = re.compile(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_TRACESTATE = re.compile(rb"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,512}")  # no quote, no backslash
# The SDK puts the trace context last in ``params._meta``, which it writes last.
_TRACE_TAIL = 2048


def _trace_of_body(request: httpx2.Request) -> dict[str, str] | None:
    """The W3C trace headers naming the span the SDK put in this request's ``_meta``.

    The SDK injects ``traceparent`` (and ``tracestate``) of its ``MCP send`` span into
    ``params._meta`` (SEP-414); the HTTP headers must name the same span. Reading them off
    the body is cheaper than formatting them again, and the same by construction. None
    when the body holds none in the expected form (the caller injects them as usual).
    """
    try:
        content = request.content
    except httpx2.RequestNotRead:
        return None
    at = content.rfind(_TRACEPARENT_KEY, max(0, len(content) - _TRACE_TAIL))
    if at < 0:
        return None
    start = at + len(_TRACEPARENT_KEY)
    end = start + 55
    if content[end : end + 1] != b'"' or _TRACEPARENT.fullmatch(content, start, end) is None:
        return None
    headers = {"traceparent": content[start:end].decode("ascii")}
    if content.startswith(_TRACESTATE_NEXT, end + 1):
        state_start = end + 1 + len(_TRACESTATE_NEXT)
        state_end = content.find(b'"', state_start)
        if state_end < 0 or _TRACESTATE.fullmatch(content, state_start, state_end) is None:
            return None
        headers["tracestate"] = content[state_start:state_end].decode("ascii")
    return headers


def _transport_failure(request: httpx2.Request, exc: httpx2.TransportError) -> httpx2.Response:
    """The made-up answer to a POST that failed in transport (see `_McpTransport`)."""
    request_id = _body_request_id(request)
    if request_id is None:
        logger.warning(
            "MCP message %s could not be sent and is lost (%s)",
            _body_method(request) or "(a response)",
            _describe(exc),
        )
        return httpx2.Response(202, request=request)
    error = {"code": TRANSPORT_FAILED, "message": f"the request failed in transport: {_describe(exc)}"}
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
    return httpx2.Response(502, headers={"content-type": "application/json"}, content=body, request=request)


def _body_request_id(request: httpx2.Request) -> str | int | None:
    try:
        body = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return None
    if not isinstance(body, dict) or "method" not in body:
        return None
    request_id = body.get("id")
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


class _WatchedReadStream:
    """A transport's read stream that reports its end: the transport is dead from then on.

    The SDK's dispatcher treats the end of its read stream as the end of the connection
    (every pending request gets "connection closed", every later one at once), but tells
    no one; `McpClient` must know, to stop offering the connection.
    """

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end
        # The SDK reads the sender's context of each message from here (duck-typed),
        # right after receiving it: copied from the inner stream on each receive.
        self.last_context: contextvars.Context | None = None

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise
        self.last_context = getattr(self._inner, "last_context", None)
        return item

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _WatchedTransport:
    """An SDK transport whose read stream reports its end (see `_WatchedReadStream`)."""

    def __init__(self, inner: Transport, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    async def __aenter__(self) -> tuple[Any, Any]:
        read, write = await self._inner.__aenter__()
        return _WatchedReadStream(read, self._on_end), write

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._inner.__aexit__(*exc_info)


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    return httpx2.create_ssl_context()


class ServerUnavailableError(CodexRuntimeError):
    """The server could not be reached, or its connection died while a request was pending.

    A ``tools/call`` that fails this way is never replayed: the tool may have run.
    """

    def __init__(self, server: str, message: str) -> None:
        super().__init__(f"MCP server {server!r}: {message}")
        self.server = server
        self.reason = message


class AuthorizationError(ServerUnavailableError):
    """The server refused the request (HTTP 401 or 403) and the client could not satisfy it.

    ``status`` is the HTTP status, ``scheme`` and ``scope`` come from the server's
    ``WWW-Authenticate`` challenge (``None`` when it sent none). Never carries a token.
    """

    def __init__(
        self, server: str, message: str, *, status: int | None, scheme: str | None, scope: str | None
    ) -> None:
        super().__init__(server, message)
        self.status = status
        self.scheme = scheme
        self.scope = scope


def _authorization_error(server: str, exc: BaseException) -> AuthorizationError | None:
    """The `AuthorizationError` an SDK failure stands for, if it stands for one."""
    for leaf in _leaves(exc):
        if isinstance(leaf, MCPError) and leaf.code == AUTH_FAILED:
            data = leaf.error.data if isinstance(leaf.error.data, dict) else {}
            status = data.get("status") if isinstance(data.get("status"), int) else None
            scheme = data.get("scheme") if isinstance(data.get("scheme"), str) else None
            scope = data.get("scope") if isinstance(data.get("scope"), str) else None
            return AuthorizationError(server, leaf.message, status=status, scheme=scheme, scope=scope)
    return None


class _AuthorizingClient(httpx2.AsyncClient):
    """An HTTP client with an auth provider that turns a refused JSON-RPC request into a
    JSON-RPC error answer (without a provider, `_McpTransport` does it).

    A final HTTP 401/403 (the provider could not satisfy the challenge) and a failed auth
    flow (`AuthFlowFailed`) become an answer with code `AUTH_FAILED` and the status,
    scheme and scope in its ``data``, which the SDK hands to that request's caller alone;
    the connection stays. Other requests (the legacy GET
    stream, DELETE) get a plain 401.
    """

    async def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        try:
            response = await super().send(request, **kwargs)
        except AuthFlowFailed as exc:
            message = f"authorization failed: {exc.reason}"
            return _refusal(request, exc.status or 401, exc.scheme, exc.scope, message)
        except httpx2.TransportError as exc:
            try:
                failed = exc.request
            except RuntimeError:
                failed = request
            if failed is request or failed.url.path == request.url.path:
                raise
            # A request of the auth flow (the authorization server) failed, not this one.
            message = f"authorization failed: the authorization server is unreachable ({_describe(exc)})"
            return _refusal(request, 401, None, None, message)
        if response.status_code not in (401, 403) or request.method != "POST":
            return response
        return await _refusal_of(request, response)


async def _refusal_of(request: httpx2.Request, response: httpx2.Response) -> httpx2.Response:
    """The answer that replaces a final ``401``/``403`` to a POST (see `_refusal`)."""
    with anyio.CancelScope(shield=True):
        await response.aclose()
    challenge = response.headers.get("www-authenticate")
    scheme, scope = parse_www_authenticate(challenge)
    status = response.status_code
    if status == 401:
        reason = "authorization required"
    else:
        reason = "insufficient scope" if "insufficient_scope" in (challenge or "") else "forbidden"
    return _refusal(request, status, scheme, scope, f"HTTP {status}: {reason}")


def _refusal(
    request: httpx2.Request, status: int, scheme: str | None, scope: str | None, message: str
) -> httpx2.Response:
    request_id = _body_request_id(request) if request.method == "POST" else None
    if request_id is None:
        return httpx2.Response(status, request=request)
    error = {
        "code": AUTH_FAILED,
        "message": message,
        "data": {"status": status, "scheme": scheme, "scope": scope},
    }
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
    headers = {"content-type": "application/json"}
    return httpx2.Response(status, headers=headers, content=body, request=request)


class ToolCallError(CodexRuntimeError):
    """A ``tools/call`` was refused or failed at the protocol level (not a tool-level error).

    A tool that runs and reports failure returns a `CallToolResult` with ``isError`` set
    instead; this is for JSON-RPC errors (unknown tool, invalid arguments, ...).
    """

    def __init__(self, server: str, tool: str, message: str, *, code: int | None = None) -> None:
        super().__init__(f"tool {tool!r} on MCP server {server!r}: {message}")
        self.server = server
        self.tool = tool
        self.code = code
        self.reason = message


class ToolTimeoutError(ToolCallError):
    """A ``tools/call`` did not answer within its timeout; the server was told to cancel it."""


@attrs.define
class _TurnEntry:
    """One turn's entry on one client; fixed values are validated once, callables per request."""

    headers: dict[str, HeaderValue] = attrs.field(factory=dict)
    meta: dict[str, MetaValue] = attrs.field(factory=dict)
    fixed: Headers = attrs.field(factory=Headers)
    lazy: tuple[tuple[str, Callable[[], str]], ...] = ()

    # The last values of the callables (compared by identity) and the headers they made:
    # a callable that returns the very same string again is not validated again.
    last: tuple[tuple[str, ...], Headers] | None = None
    as_dict: tuple[Headers, dict[str, str]] | None = None

    def set_headers(self, headers: dict[str, HeaderValue], fixed: Headers) -> None:
        self.headers = headers
        self.fixed = fixed
        self.lazy = tuple((n, v) for n, v in headers.items() if callable(v))
        self.last = None
        self.as_dict = None

    def resolve_dict(self) -> dict[str, str] | None:
        """`resolve_headers` as a dict, the same object while the headers do not change.

        Only read, never changed, by its users (a request's HTTP headers).
        """
        headers = self.resolve_headers()
        if headers is None:
            return None
        cached = self.as_dict
        if cached is None or cached[0] is not headers:
            cached = self.as_dict = (headers, headers.to_dict())
        return cached[1]

    def resolve_headers(self) -> Headers | None:
        if not self.lazy:
            return self.fixed or None
        values = tuple([value() for _, value in self.lazy])
        last = self.last
        if last is not None:
            for value, seen in zip(values, last[0], strict=True):
                if value is not seen:
                    break
            else:
                return last[1]
        resolved = self.fixed | {name: value for (name, _), value in zip(self.lazy, values, strict=True)}
        self.last = (values, resolved)
        return resolved


class _Request:
    """One request a caller sends through an `McpClient`, as its HTTP layer must treat it.

    Set in the sending task's context around the request (the SDK sends each message in
    its sender's context, so `_McpTransport` finds it). ``http``: the turn and call
    headers, resolved in the calling task. ``read_timeout`` (seconds) replaces the HTTP
    client's read timeout for that request, so a call allowed to run longer than the
    default is not cut off by the transport. ``caller``: sent for a caller (not by the
    client itself), with the ``turn_id`` and ``tool`` of its call, for server requests that
    arrive while it runs (see `call_scope`). ``session_lost``, set by the transport: the
    server answered ``404`` to it although it carried an ``mcp-session-id`` (legacy era):
    the server no longer knows the session, and did not run the request.
    """

    __slots__ = (
        "caller",
        "client",
        "http",
        "marker",
        "method",
        "read_timeout",
        "session_lost",
        "tool",
        "turn_id",
    )

    def __init__(
        self,
        client: McpClient,
        method: str,
        http: Mapping[str, str],
        read_timeout: float | None = None,
        *,
        caller: bool = False,
        turn_id: str | None = None,
        tool: str | None = None,
    ) -> None:
        self.client = client
        self.method = method
        self.marker = _method_marker(method)
        self.http = http
        self.read_timeout = read_timeout
        self.caller = caller
        self.turn_id = turn_id
        self.tool = tool
        self.session_lost = False

    def call_scope(self) -> _CallScope:
        """The call this request belongs to (made only when a server request asks)."""
        return _CallScope(self.client, self.turn_id, self.tool, self.method)


_REQUEST: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "codex_runtime_request", default=None
)
# Set in a connection's owner task while it connects. The SDK's own tasks (the POST
# writer, the legacy GET stream) inherit it, so the response hook only records a status
# while that connection is still connecting.
_CONNECTING: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "codex_runtime_connecting", default=None
)


class _Connection:
    """One SDK `Client` hosted by its own owner task."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.sdk: SdkClient | None = None
        self._tools: list[Tool] | None = None
        self.tool_names: frozenset[str] = frozenset()
        self.tools_stale = False
        self.tools_version = 0
        self.inflight = 0
        self.scopes: list[_Request] = []  # the requests in flight that callers sent
        self.retired = False
        self.ready = anyio.Event()
        self.closed = anyio.Event()
        self.stop = anyio.Event()
        self.ended = False  # `stop` or `closed` is set: plain flag, read on every call
        # Cancels the owner task: used when a connection attempt is abandoned (startup
        # timeout, cancelled caller) or does not close in time. Shielded: the connection
        # ends only through it or `stop` (`McpClient.aclose` uses both), never because
        # the task that opened the client is cancelled, and every cancellation check in
        # the SDK's tasks stops here instead of walking up through the caller's scopes.
        self.scope = anyio.CancelScope(shield=True)
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.connect_statuses: list[int] = []
        self.session_id: str | None = None  # the legacy era's Mcp-Session-Id
        self._facts: tuple[str | None, str | None] | None = None

    def trace_facts(self) -> tuple[str | None, str | None]:
        """(negotiated protocol version, legacy session id) for tool call spans."""
        facts = self._facts
        if facts is None:
            version = self.sdk.session.protocol_version if self.sdk is not None else None
            legacy = version is not None and version not in MODERN_PROTOCOL_VERSIONS
            facts = (version, self.session_id if legacy else None)
            if version is not None:
                self._facts = facts  # fixed for the connection's life once negotiated
        return facts

    @property
    def tools(self) -> list[Tool] | None:
        return self._tools

    @tools.setter
    def tools(self, tools: list[Tool]) -> None:
        self._tools = tools
        self.tool_names = frozenset(t.name for t in tools)

    @property
    def alive(self) -> bool:
        """Usable for new requests."""
        return self.sdk is not None and not self.retired and not self.ended

    def halt(self) -> None:
        """Tell the owner task to close the connection (see `stop`); no new requests."""
        self.ended = True
        self.stop.set()

    def begin(self, request: _Request | None = None) -> None:
        """Count a request in flight (a caller's ``request``: with the call it belongs to),
        so that retiring the connection lets it finish. Each `begin` has its `end`."""
        self.inflight += 1
        if request is not None:
            self.scopes.append(request)

    def end(self, request: _Request | None = None) -> None:
        """One request in flight has ended (see `begin`)."""
        if request is not None:
            self.scopes.remove(request)
        self.inflight -= 1
        if self.retired and self.inflight == 0:
            self.halt()

    @contextmanager
    def in_use(self) -> Iterator[None]:
        """`begin` and `end` around a block: a request the client sends for itself."""
        self.begin()
        try:
            yield
        finally:
            self.end()

    def retire(self) -> None:
        """Take no new requests; close once the requests in flight have their answers.

        When a session is lost, the requests still in flight get their own "session
        not found" answers (and are resent once), rather than a closed connection.
        """
        self.retired = True
        if self.inflight == 0:
            self.halt()


def _leaves(exc: BaseException) -> Iterable[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def _validation_summary(exc: ValidationError) -> str:
    """Where and why a result failed validation, without the values it held."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "it does not match the protocol"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "the result"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def _describe(exc: BaseException) -> str:
    leaves = list(_leaves(exc))
    leaf = leaves[0] if leaves else exc
    if isinstance(leaf, MCPError):
        return f"{leaf.message} (code {leaf.code})"
    text = str(leaf).splitlines()[0] if str(leaf) else ""
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


def _sdk_failure(exc: BaseException) -> str:
    """Describe an SDK failure that is not a JSON-RPC error (no values: they may be secret)."""
    if isinstance(exc, InputRequiredRoundsExceededError):
        return f"the server asked for input more than {exc.max_rounds} rounds in a row"
    if isinstance(exc, ValidationError):
        return f"the server's answer is malformed: {_validation_summary(exc)}"
    return type(exc).__name__


def _sdk_meta(meta: Mapping[str, Any] | None) -> RequestParamsMeta | None:
    # `RequestParamsMeta` is an open TypedDict: any JSON-able keys are allowed.
    return cast("RequestParamsMeta", dict(meta)) if meta else None


def _meta_headers(value: object, layer: str) -> Headers:
    """``_meta.extra_headers`` given by a caller or a turn entry, checked as headers of ``layer``.

    It is a header channel (a gateway turns it into HTTP headers), so it gets the rules of
    HTTP headers: valid names, sendable values, size limits, no protected names.
    """
    if not isinstance(value, Mapping):
        raise InvalidHeaderError(
            f"_meta['extra_headers'] of the {layer} must be a mapping of header names to values, "
            f"not {type(value).__name__}",
            rule="meta-not-mapping",
        )
    headers = Headers(value)
    check_settable(headers, layer=layer)
    return headers


def _lists(conn: _Connection, tool: str) -> bool:
    return tool in conn.tool_names


def _strip_reserved(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if not k.lower().startswith(RESERVED_META_PREFIXES)}


def _body_method(request: httpx2.Request) -> str | None:
    try:
        body = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return None
    method = body.get("method") if isinstance(body, dict) else None
    return method if isinstance(method, str) else None


class McpClient(ServerFeatures):
    """One long-lived connection to one MCP server (streamable HTTP or stdio).

    Use it as ``async with McpClient(config) as client:`` or with `connect` / `aclose`
    (from the same task). The connection lives in its own owner task: a server that
    dies fails only this client's pending calls (with `ServerUnavailableError`), and the
    next call reconnects. One client may serve many turns and sessions at once.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        client_info: Implementation | None = None,
        on_request: Callable[[httpx2.Request], Awaitable[None]] | None = None,
        handlers: ClientHandlers | None = None,
        on_stdio_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        """``on_request``: an async function given every outgoing HTTP request once all
        header layers are applied, right before it is sent (to show or log what leaves
        the client; it must not change the request). Stdio servers have no HTTP requests:
        ``on_stdio_send`` is given each JSON-RPC message written to a stdio server (the
        JSON object, ``params._meta`` included), right before it is written.

        ``handlers``: how to answer the server's requests (elicitation, sampling, roots)
        and where its log messages go; only capabilities with a handler are advertised.
        """
        if not isinstance(config, ServerConfig):
            raise TypeError("McpClient() needs a ServerConfig")
        if handlers is not None and not isinstance(handlers, ClientHandlers):
            raise TypeError("McpClient() handlers must be a ClientHandlers")
        self._handlers = handlers if handlers is not None else ClientHandlers()
        self._bridge = ServerRequestBridge(config.name, self._handlers, self._scope_of_server_request)
        self._config = config
        self._request_observer = on_request
        self._stdio_observer = on_stdio_send
        self._client_info = client_info or Implementation(name="codex-runtime", version=__version__)
        self._turn_entries: dict[str, _TurnEntry] = {}
        self._conn: _Connection | None = None
        self._owned: set[_Connection] = set()  # every connection whose owner task runs
        self._generation = 0
        self._connect_lock = anyio.Lock()
        self._connect_epoch = 0  # completed connection attempts
        self._connect_failure: str | None = None  # why the last one failed
        self._tools_lock = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None
        self._http: httpx2.AsyncClient | None = None
        self._closing = False
        self._stdio_starts: list[float] = []
        self._delivery: HeaderDelivery = config.effective_delivery
        # 2026-07-28 resource subscriptions: the URIs, and the listen stream's cancel scope.
        self._listen_uris: frozenset[str] = frozenset()
        self._listen_scope: anyio.CancelScope | None = None
        self._listen_lock = anyio.Lock()
        self._is_stdio = config.command is not None
        self._endpoint: httpx2.URL | None = None

    # -- public properties -------------------------------------------------------------

    @property
    def name(self) -> str:
        """The server's configured name."""
        return self._config.name

    @property
    def config(self) -> ServerConfig:
        """The `ServerConfig` this client was built from."""
        return self._config

    @property
    def connected(self) -> bool:
        """Whether a live connection is currently established."""
        return self._conn is not None and self._conn.alive

    @property
    def protocol_version(self) -> str | None:
        """The negotiated MCP protocol version of the current connection, if any."""
        conn = self._conn
        if conn is None or conn.sdk is None or not conn.alive:
            return None
        return conn.sdk.session.protocol_version

    @property
    def handlers(self) -> ClientHandlers:
        """The `ClientHandlers` answering this server's requests."""
        return self._handlers

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<McpClient {self.name!r} {self._config.transport} {state}>"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> McpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Connect (initialize or discover, then list tools), within ``startup_timeout``.

        Raises `ServerUnavailableError` when the server cannot be reached. Call `aclose`
        from the same task when done.
        """
        if self._tg is not None:
            raise RuntimeError(f"McpClient {self.name!r} is already connected or connecting")
        self._closing = False
        if not self._is_stdio:
            self._http = self._make_http_client(await self._build_auth())
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await self._get_connection()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the connection and its owner task. Safe to call more than once."""
        tg, self._tg = self._tg, None
        if tg is None:
            return
        self._closing = True
        self._conn = None
        if self._listen_scope is not None:
            self._listen_scope.cancel()
        owned = list(self._owned)
        for conn in owned:
            conn.halt()
        # A graceful close (legacy: DELETE of the session) gets a bounded time.
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_TIMEOUT):
            for conn in owned:
                await conn.closed.wait()
        for conn in owned:
            conn.scope.cancel()
        try:
            await tg.__aexit__(None, None, None)
        finally:
            if self._http is not None:
                http, self._http = self._http, None
                with anyio.CancelScope(shield=True):
                    await http.aclose()

    # -- turn entries ------------------------------------------------------------------

    def set_turn_headers(
        self,
        turn_id: str,
        headers: Headers | Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] | None = None,
        meta: Mapping[str, MetaValue] | None = None,
    ) -> None:
        """Merge headers and/or ``_meta`` entries into turn ``turn_id``'s entry.

        They travel only on requests sent from tasks bound to that turn (`bind_turn`)
        and only on ``ServerConfig.turn_header_methods``. Values may be callables,
        evaluated when a request is sent. A later value wins per name, so several hooks
        can each add theirs. Invalid or protected names raise `InvalidHeaderError` and
        leave the entry unchanged.
        """
        if not isinstance(turn_id, str) or not turn_id:
            raise TypeError("set_turn_headers() needs a non-empty turn id string")
        staged_headers: dict[str, HeaderValue] = {}
        if headers is not None:
            # A `Headers` resolves by its merge rule; otherwise a later pair wins.
            # `_raw_pairs` rejects malformed input (text, non-pairs) with typed errors.
            pairs: Iterable[tuple[object, object]] = (
                headers.to_dict().items()
                if isinstance(headers, Headers)
                else _raw_pairs(cast("HeadersInput", headers))
            )
            for raw_name, raw_value in pairs:
                name = validate_name(raw_name)
                if is_protected(name):
                    check_settable(Headers([(name, "x")]), layer="turn")
                self._check_no_authorization((name,), "turn")
                value: HeaderValue = (
                    cast("Callable[[], str]", raw_value)
                    if callable(raw_value)
                    else validate_value(name, raw_value)
                )
                staged_headers[name] = value
        staged_meta: dict[str, MetaValue] = {}
        if meta is not None:
            if not isinstance(meta, Mapping):
                raise InvalidHeaderError(
                    f"turn _meta must be a mapping of string keys to values, not {type(meta).__name__}",
                    rule="meta-not-mapping",
                )
            for key, meta_value in meta.items():
                if not isinstance(key, str) or not key:
                    raise InvalidHeaderError(
                        f"turn _meta keys must be non-empty strings, got {type(key).__name__}"
                    )
                if key == "extra_headers" and not callable(meta_value):
                    _meta_headers(meta_value, "turn")  # refused now rather than at every call
                staged_meta[key] = meta_value
        entry = self._turn_entries.get(turn_id)
        merged = {**entry.headers, **staged_headers} if entry is not None else staged_headers
        # The fixed values of the whole entry must fit the size limits (callables are
        # checked when they are evaluated, at send time).
        fixed_pairs = [(n, v) for n, v in merged.items() if not callable(v)]
        fixed = Headers(fixed_pairs) if fixed_pairs else Headers()  # Headers() is much cheaper
        if entry is None:
            entry = self._turn_entries[turn_id] = _TurnEntry()
        entry.set_headers(dict(merged), fixed)
        entry.meta.update(staged_meta)

    def clear_turn_headers(
        self,
        turn_id: str,
        *,
        headers: Iterable[str] | None = None,
        meta: Iterable[str] | None = None,
    ) -> None:
        """Remove turn ``turn_id``'s entry. Idempotent.

        Without ``headers`` / ``meta`` the whole entry goes (what a hook does at turn
        end). With them, only those header names and ``_meta`` keys are removed, so a hook
        can take back its own values while another hook's stay; the entry goes once empty.
        """
        if headers is None and meta is None:
            self._turn_entries.pop(turn_id, None)
            return
        entry = self._turn_entries.get(turn_id)
        if entry is None:
            return
        names = {n.lower() for n in headers or ()}
        remaining = {n: v for n, v in entry.headers.items() if n not in names}
        fixed_pairs = [(n, v) for n, v in remaining.items() if not callable(v)]
        entry.set_headers(remaining, Headers(fixed_pairs) if fixed_pairs else Headers())
        for key in meta or ():
            entry.meta.pop(key, None)
        if not entry.headers and not entry.meta:
            del self._turn_entries[turn_id]

    def turn_entry_ids(self) -> frozenset[str]:
        """Ids of the turns that currently have an entry on this client (for diagnostics)."""
        return frozenset(self._turn_entries)

    # -- requests ----------------------------------------------------------------------

    async def list_tools(self, *, refresh: bool = False) -> list[Tool]:
        """The server's tools (cached; refreshed after a reconnect or a ``list_changed``).

        A refresh carries the call-scoped headers of the calling task (and turn entries
        when ``tools/list`` is in ``ServerConfig.turn_header_methods``).
        """
        conn = await self._get_connection()
        if refresh or conn.tools is None or conn.tools_stale:
            conn = await self._refresh_tools(conn)
        return [t for t in conn.tools or () if self._config.tool_allowed(t.name)]

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> CallToolResult:
        """Call tool ``name`` and return its result.

        ``headers`` are call-scoped (on top of any `request_headers` block); ``meta``
        entries go into ``params._meta``. ``on_progress(progress, total, message)``
        (sync or async) is called for each progress notification of the call.
        ``timeout`` (default: the server's ``tool_timeout``) bounds the wait for the
        server's answer: it runs from the moment the request is written, for each
        input-required round (in the 2026-07-28 era the client answers an elicitation
        between rounds, so a person's time does not count; in the legacy era it does),
        and stops during an OAuth browser flow. A tool that reports failure returns a result
        with ``isError`` set. Raises `InvalidHeaderError` (before anything is sent),
        `ToolCallError` (refused by the server, a disabled tool, or a tool the server
        does not list), `ToolTimeoutError` (the server is told to cancel the call), or
        `ServerUnavailableError` (the call is never replayed once it may have run).
        """
        if not isinstance(name, str) or not name:
            raise TypeError("call_tool() needs a tool name string")
        if arguments is not None and type(arguments) is not dict and not isinstance(arguments, Mapping):
            raise TypeError("call_tool() arguments must be a mapping (a JSON object)")
        if timeout is None:
            timeout = self._config.tool_timeout
        elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError("call_tool() timeout must be a positive number of seconds")
        if not self._config.tool_allowed(name):
            raise ToolCallError(self.name, name, "the tool is disabled by this server's configuration")
        if on_progress is not None and not callable(on_progress):
            raise TypeError("call_tool() on_progress must be a function (progress, total, message)")
        call_headers = self._call_layer(headers)
        caller_meta = dict(meta) if meta is not None else {}
        if meta is not None and not all(isinstance(k, str) for k in caller_meta):
            raise TypeError("call_tool() meta keys must be strings")
        # Resolve now, in the calling task, so bad values raise before anything is sent.
        turn_id = _TURN_ID.get()
        http, request_meta = self._resolve("tools/call", call_headers, caller_meta, turn_id)
        args = dict(arguments) if arguments is not None else None
        finite = math.isfinite(timeout)
        request = _Request(
            self,
            "tools/call",
            http,
            timeout + _READ_TIMEOUT_MARGIN if finite else None,
            caller=True,
            turn_id=turn_id,
            tool=name,
        )
        progress = progress_adapter(self.name, on_progress) if on_progress is not None else None

        conn = self._conn
        ready = conn is not None and conn.alive and not conn.tools_stale and _lists(conn, name)
        facts = conn.trace_facts() if ready and conn is not None else None
        cfg = self._config
        with tool_call_span(self.name, name, transport=cfg.transport, url=cfg.url, connection=facts) as span:
            if not ready:
                # Connecting or checking the listing belongs to the call's span too.
                if conn is None or not conn.alive:
                    conn = await self._get_connection()
                if conn.tools_stale or not _lists(conn, name):
                    conn = await self._check_listed(conn, name)
                if span.is_recording():
                    record_connection(span, *conn.trace_facts())
            assert conn is not None
            result = await self._send_call(
                conn, request, name, args, request_meta, progress, timeout if finite else None
            )
            if result.is_error:
                record_tool_result(span, result)
            return result

    async def _send_call(
        self,
        conn: _Connection,
        request: _Request,
        name: str,
        args: dict[str, Any] | None,
        meta: dict[str, Any],
        progress: ProgressFnT | None,
        timeout: float | None,
    ) -> CallToolResult:
        # The deadline is the SDK's own request clock (``read_timeout_seconds``): it runs
        # from the moment the request is written until its answer, per input round; on
        # expiry the SDK tells the server to cancel. No second cancel scope per call.
        for attempt in (1, 2):
            sdk = conn.sdk
            assert sdk is not None
            token = _REQUEST.set(request)
            used = conn  # `conn` may be replaced below, by the recovered connection
            used.begin(request)
            try:
                return await sdk.call_tool(
                    name, args, timeout, progress_callback=progress, meta=_sdk_meta(meta)
                )
            except MCPError as exc:
                if request.session_lost:
                    what = f"tools/call {name!r}"
                    conn = await self._resend_after_lost_session(conn, request, attempt, what)
                    continue
                if exc.code == REQUEST_TIMEOUT and exc.message == _SDK_TIMEOUT_MESSAGE:
                    raise ToolTimeoutError(
                        self.name, name, f"no answer within {timeout:g} s; the server was asked to cancel it"
                    ) from None
                unavailable = self._unanswered(conn, exc, f"tools/call {name!r}")
                if unavailable is not None:
                    raise unavailable from None
                raise ToolCallError(self.name, name, exc.message, code=exc.code) from None
            except (httpx2.TransportError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise ServerUnavailableError(
                    self.name, f"connection lost during tools/call {name!r} ({_describe(exc)})"
                ) from None
            except PydanticSerializationError as exc:
                # Raised while the SDK builds the request, before anything is sent.
                raise TypeError(
                    f"call_tool({name!r}): arguments and meta must be JSON values ({exc})"
                ) from None
            except InputRequiredRoundsExceededError as exc:
                raise ToolCallError(self.name, name, _sdk_failure(exc)) from None
            except ValidationError as exc:
                # The SDK could not read the server's answer (e.g. a result without its
                # ``resultType``): the tool may have run, but its result is unusable.
                raise ToolCallError(
                    self.name, name, f"the server's result is malformed: {_validation_summary(exc)}"
                ) from None
            except RuntimeError as exc:
                # The SDK refused the result itself (structured content missing or not
                # matching the tool's output schema, an input request it cannot serve).
                raise ToolCallError(self.name, name, f"the server's result was refused: {exc}") from None
            except ValueError as exc:
                if isinstance(exc, CodexRuntimeError):
                    raise
                # pydantic would not serialize the request (e.g. values nested too deeply):
                # raised before anything is sent.
                raise TypeError(
                    f"call_tool({name!r}): arguments and meta must be JSON values ({exc})"
                ) from None
            finally:
                _REQUEST.reset(token)
                used.end(request)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_request(
        self,
        method: str,
        send: Sender[T],
        *,
        headers: HeadersArg = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> T:
        """Send one request other than ``tools/call`` through the header and trace layers.

        Recovered like ``tools/list``: a lost legacy session is re-initialized once and
        the request resent (the server refused it before running it).
        """
        if timeout is None:
            timeout = self._config.tool_timeout
        elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"{method}: timeout must be a positive number of seconds")
        if meta is not None and (
            not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta)
        ):
            raise TypeError(f"{method}: meta must be a mapping with string keys")
        call_headers = self._call_layer(headers)
        http, request_meta = self._resolve(method, call_headers, dict(meta) if meta else {}, _TURN_ID.get())
        read_timeout = timeout + _READ_TIMEOUT_MARGIN if math.isfinite(timeout) else None
        request = _Request(self, method, http, read_timeout, caller=True, turn_id=_TURN_ID.get())
        conn = await self._get_connection()
        for attempt in (1, 2):
            sdk = conn.sdk
            assert sdk is not None
            token = _REQUEST.set(request)
            used = conn  # `conn` may be replaced below, by the recovered connection
            used.begin(request)
            try:
                with anyio.fail_after(timeout):
                    return await send(sdk, _sdk_meta(request_meta))
            except TimeoutError:
                raise ServerUnavailableError(self.name, f"{method}: no answer within {timeout:g} s") from None
            except MCPError as exc:
                if request.session_lost:
                    conn = await self._resend_after_lost_session(conn, request, attempt, method)
                    continue
                unavailable = self._unanswered(conn, exc, method)
                if unavailable is not None:
                    raise unavailable from None
                raise McpRequestError(self.name, method, exc.message, code=exc.code) from None
            except (httpx2.TransportError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                raise ServerUnavailableError(
                    self.name, f"connection lost during {method} ({_describe(exc)})"
                ) from None
            except PydanticSerializationError as exc:
                raise TypeError(f"{method}: arguments and meta must be JSON values ({exc})") from None
            except (ValidationError, InputRequiredRoundsExceededError) as exc:
                raise McpRequestError(self.name, method, _sdk_failure(exc)) from None
            except RuntimeError as exc:
                # The SDK refused the answer itself (e.g. an input request it cannot serve).
                raise McpRequestError(self.name, method, f"the answer was refused: {exc}") from None
            except ValueError as exc:
                if isinstance(exc, CodexRuntimeError):
                    raise
                raise TypeError(f"{method}: arguments and meta must be JSON values ({exc})") from None
            finally:
                _REQUEST.reset(token)
                used.end(request)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _resend_after_lost_session(
        self, conn: _Connection, request: _Request, attempt: int, what: str
    ) -> _Connection:
        """The connection to resend ``request`` on, after the server lost the legacy session
        (it refused the request before running it, so resending is safe); once only."""
        if attempt != 1:
            reason = f"{what}: session lost again after re-initializing"
            raise ServerUnavailableError(self.name, reason) from None
        request.session_lost = False
        return await self._recover(conn)

    def _live_session(self) -> ClientSession | None:
        conn = self._conn
        if conn is None or conn.sdk is None or not conn.alive:
            return None
        return conn.sdk.session

    async def _connected_session(self) -> ClientSession:
        conn = await self._get_connection()
        assert conn.sdk is not None
        return conn.sdk.session

    def _listened(self) -> frozenset[str]:
        return self._listen_uris

    async def _listen_to(self, uris: frozenset[str], timeout: float | None) -> None:
        """Replace the ``subscriptions/listen`` stream by one for ``uris`` (none: just close it)."""
        async with self._listen_lock:
            if self._listen_scope is not None:
                self._listen_scope.cancel()
                self._listen_scope = None
            self._listen_uris = uris
            if not uris:
                return
            if self._tg is None or self._closing:
                raise ServerUnavailableError(self.name, "the client is not connected")
            scope = anyio.CancelScope()
            ready = anyio.Event()
            failure: list[BaseException] = []
            self._listen_scope = scope
            self._tg.start_soon(self._listen, uris, scope, ready, failure)
            limit = timeout if timeout is not None else self._config.startup_timeout
            with anyio.move_on_after(limit) as waited:
                await ready.wait()
            if waited.cancelled_caught or failure:
                scope.cancel()
                self._listen_scope = None
                self._listen_uris = frozenset()
                reason = _describe(failure[0]) if failure else f"no acknowledgment within {limit:g} s"
                raise McpRequestError(self.name, "subscriptions/listen", reason)

    async def _listen(
        self, uris: frozenset[str], scope: anyio.CancelScope, ready: anyio.Event, failure: list[BaseException]
    ) -> None:
        """Hold one ``subscriptions/listen`` stream open; its updates reach `_on_message`."""
        # It outlives the task that subscribed: no turn, call headers or span of that task.
        _reset_for_owner_task()
        clean_otel_context()
        _REQUEST.set(None)
        with scope:
            try:
                conn = await self._get_connection()
                assert conn.sdk is not None
                async with sdk_listen(conn.sdk.session, resource_subscriptions=sorted(uris)) as events:
                    ready.set()
                    async for _ in events:
                        pass  # each update is also delivered as a notification (see `_on_message`)
                logger.info("MCP server %r: the resource subscription stream ended", self.name)
            except Exception as exc:
                if ready.is_set():
                    logger.warning(
                        "MCP server %r: resource subscription stream lost (%s)", self.name, _describe(exc)
                    )
                else:
                    failure.append(exc)
            finally:
                ready.set()

    def _scope_of_server_request(self, fallback: bool) -> _CallScope | None:
        """The call a server request belongs to, when that is certain (see `ServerRequest`)."""
        request = _REQUEST.get()
        if request is not None and request.caller and request.client is self:
            return request.call_scope()
        if not fallback or not self._is_stdio:
            return None
        conn = self._conn
        if conn is None or conn.inflight != 1 or len(conn.scopes) != 1:
            return None
        return conn.scopes[0].call_scope()

    async def _check_listed(self, conn: _Connection, name: str) -> _Connection:
        """Refuse a tool the server does not list (one refresh first, shared by concurrent callers).

        Sending it anyway would cost a ``tools/list`` per call in the 2026-07-28 era and
        give a tool-level error rather than a protocol one.
        """
        if conn.tools_stale or not _lists(conn, name):
            conn = await self._refresh_tools(conn, seen=conn.tools_version)
            if not _lists(conn, name):
                raise ToolCallError(
                    self.name, name, "the server does not list this tool", code=INVALID_PARAMS
                )
        return conn

    # -- header resolution -------------------------------------------------------------

    def _call_layer(
        self, explicit: Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None
    ) -> Headers | None:
        ambient = _CALL_HEADERS.get()
        if explicit is None:
            if ambient is not None:
                self._check_no_authorization(ambient, "call")
            return ambient
        layer = explicit if isinstance(explicit, Headers) else Headers(explicit)
        check_settable(layer, layer="call")
        combined = layer if ambient is None else layer | ambient
        self._check_no_authorization(combined, "call")
        return combined

    def _check_no_authorization(self, layer: Headers | Iterable[str], scope: str) -> None:
        """With an auth provider, no layer may set ``authorization`` over it."""
        if self._config.auth is not None and "authorization" in {n.lower() for n in layer}:
            raise InvalidHeaderError(
                f"MCP server {self.name!r} authorizes with its `auth` provider: "
                f"the {scope} headers may not set 'authorization'"
            )

    def _turn_layer(self, method: str, turn_id: str | None) -> tuple[_TurnEntry | None, dict[str, Any]]:
        """The turn entry of ``turn_id`` on this client for ``method``, and its ``_meta``."""
        if turn_id is None or method not in self._config.turn_header_methods:
            return None, {}
        entry = self._turn_entries.get(turn_id)
        if entry is None:
            return None, {}
        meta = {k: (v() if callable(v) else v) for k, v in entry.meta.items()} if entry.meta else {}
        return entry, meta

    def _resolve(
        self, method: str, call: Headers | None, caller_meta: dict[str, Any], turn_id: str | None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Resolve the turn (of ``turn_id``: the calling task's) and call layers for one
        request: (HTTP headers, ``_meta``)."""
        turn, turn_meta = self._turn_layer(method, turn_id)
        dynamic: dict[str, str]
        if call is None:
            # The common case: the turn's headers alone, resolved once per change.
            dynamic = (turn.resolve_dict() if turn is not None else None) or {}
        else:
            turn_headers = turn.resolve_headers() if turn is not None else None
            dynamic = merge_layers(call, turn_headers) if turn_headers is not None else merge_layers(call)
        http: dict[str, str] = {}
        meta: dict[str, Any] = {}
        if self._config.apps:
            meta.update(turn_meta)
            meta.update(caller_meta)
        else:
            # Egress: keys reserved for first-party servers never leave towards others.
            if turn_meta:
                meta.update(_strip_reserved(turn_meta))
            if caller_meta:
                meta.update(_strip_reserved(caller_meta))
        if dynamic and self._delivery in ("http", "both"):
            http = dynamic
        extra: dict[str, str] = {}
        if self._is_stdio and self._config.headers:
            extra.update(self._config.headers.to_dict())
        if self._delivery in ("meta", "both"):
            extra.update(dynamic)
        given = meta.get("extra_headers")
        if given is not None or "extra_headers" in meta:
            # The header channel of ``_meta``: the same rules as HTTP headers, whoever
            # set it (the caller's ``meta``, or a turn entry).
            source = "call" if "extra_headers" in caller_meta else "turn"
            merged = _meta_headers(given, source).to_dict()
            merged.update(extra)
            meta["extra_headers"] = merged
        elif extra:
            meta["extra_headers"] = extra
        return http, meta

    async def _observe_request(self, request: httpx2.Request) -> None:
        """Show a request to the ``on_request`` observer, after every layer was added."""
        assert self._request_observer is not None
        try:
            await self._request_observer(request)
        except Exception:
            # An exception here would tear down the whole connection (the SDK's
            # transport task group): an observer's bug must cost only its output.
            logger.warning("MCP server %r: on_request observer failed", self.name, exc_info=True)

    def _is_endpoint(self, url: httpx2.URL) -> bool:
        endpoint = self._endpoint
        if endpoint is None:
            endpoint = self._endpoint = httpx2.URL(self._config.url or "")
        return (
            url.scheme == endpoint.scheme
            and url.host == endpoint.host
            and url.port == endpoint.port
            and url.path.rstrip("/") == endpoint.path.rstrip("/")
        )

    # -- connection management -----------------------------------------------------------

    async def _build_auth(self) -> httpx2.Auth | None:
        auth = self._config.auth
        if auth is None:
            return None
        assert self._config.url is not None
        try:
            return await build_auth(auth, name=self.name, url=self._config.url)
        except (OSError, ValueError) as exc:
            reason = f"cannot set up authorization: {_describe(exc)}"
            raise ServerUnavailableError(self.name, reason) from None

    def _make_http_client(self, auth: httpx2.Auth | None = None) -> httpx2.AsyncClient:
        # One SSL context for every client: building one costs ~30 ms of CPU and ~0.8 MiB,
        # which would dominate the memory of an idle session.
        # Reads are bounded per operation instead: tool calls by their timeout (see
        # `_Request.read_timeout`), connecting by ``startup_timeout``. The default only
        # bounds the legacy GET stream, which may stay silent for long.
        # Without an auth provider, the transport itself answers for refused requests; with
        # one, the client must (the provider answers challenges between the two).
        transport = _McpTransport(
            httpx2.AsyncHTTPTransport(verify=_shared_ssl_context()), self, refuse=auth is None
        )
        factory = httpx2.AsyncClient if auth is None else _AuthorizingClient
        return factory(
            auth=auth,
            headers=self._config.headers.to_dict(),
            timeout=httpx2.Timeout(30.0, read=_DEFAULT_READ_TIMEOUT),
            transport=transport,
        )

    def _make_sdk_client(self, conn: _Connection) -> SdkClient:
        transport: Transport
        if self._is_stdio:
            cfg = self._config
            transport = stdio_transport(
                StdioServerParameters(
                    command=cfg.command or "",
                    args=list(cfg.args),
                    env=dict(cfg.env) if cfg.env is not None else None,
                    cwd=cfg.cwd,
                )
            )
            if self._stdio_observer is not None:
                transport = observe_writes(transport, self._stdio_observer)
        else:
            assert self._http is not None and self._config.url is not None
            transport = streamable_http_client(self._config.url, http_client=self._http)
        return SdkClient(
            _WatchedTransport(transport, functools.partial(self._transport_ended, conn)),
            mode=self._config.protocol,
            client_info=self._client_info,
            message_handler=self._on_message,
            cache=None,
            **self._bridge.sdk_callbacks(),
        )

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, ToolListChangedNotification):
            conn = self._conn
            if conn is not None:
                conn.tools_stale = True
        elif isinstance(message, ResourceUpdatedNotification):
            await self._bridge.on_resource_updated(message.params)
        await anyio.lowlevel.checkpoint()

    async def _get_connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        if self._tg is None or self._closing:
            raise ServerUnavailableError(
                self.name, "the client is not connected (use `async with McpClient(...)`)"
            )
        epoch = self._connect_epoch
        async with self._connect_lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if self._connect_epoch != epoch and self._connect_failure is not None:
                # An attempt made while this caller waited just failed: share its outcome
                # rather than queueing one more round of retries per waiting caller.
                raise ServerUnavailableError(self.name, self._connect_failure)
            return await self._open_connection()

    async def _recover(self, lost: _Connection) -> _Connection:
        """Replace a connection whose server-side session is gone; concurrent callers share it."""
        async with self._connect_lock:
            conn = self._conn
            if conn is not None and conn is not lost and conn.alive:
                return conn
            logger.info("MCP server %r: session lost, re-initializing", self.name)
            lost.retire()
            return await self._open_connection()

    async def _open_connection(self) -> _Connection:
        try:
            conn = await self._connect_with_retries()
        except ServerUnavailableError as exc:
            self._connect_failure = exc.reason
            raise
        else:
            self._connect_failure = None
            return conn
        finally:
            self._connect_epoch += 1

    async def _connect_with_retries(self) -> _Connection:
        if self._closing or self._tg is None:
            raise ServerUnavailableError(self.name, "the client is closed")
        if self._is_stdio:
            now = time.monotonic()
            self._stdio_starts = [t for t in self._stdio_starts if now - t < 60.0]
            if len(self._stdio_starts) >= _STDIO_RESTARTS_PER_MINUTE:
                raise ServerUnavailableError(
                    self.name,
                    f"the stdio server was started {_STDIO_RESTARTS_PER_MINUTE} times in the last minute; "
                    "not restarting it again yet",
                )
            self._stdio_starts.append(now)
        last_error: BaseException | None = None
        with anyio.move_on_after(self._config.startup_timeout) as deadline:
            for delay in (*_CONNECT_DELAYS, None):
                self._generation += 1
                conn = _Connection(self._generation)
                self._owned.add(conn)
                self._tg.start_soon(self._own_connection, conn)
                try:
                    await conn.ready.wait()
                finally:
                    if conn.sdk is None:  # abandoned (timeout, cancelled caller) or failed
                        conn.scope.cancel()
                if conn.sdk is not None:
                    self._conn = conn
                    return conn
                last_error = conn.error
                if delay is None or not self._transient(conn):
                    break
                await anyio.sleep(delay)
        refused = _authorization_error(self.name, last_error) if last_error is not None else None
        if refused is not None:
            raise refused
        reason = _describe(last_error) if last_error is not None else "no answer"
        if deadline.cancelled_caught:
            reason = f"not connected within {self._config.startup_timeout:g} s (last error: {reason})"
        raise ServerUnavailableError(self.name, f"cannot connect: {reason}")

    def _transient(self, conn: _Connection) -> bool:
        if conn.error is None:
            return False
        for leaf in _leaves(conn.error):
            if isinstance(leaf, httpx2.TransportError | OSError):
                return True
        return bool(set(conn.connect_statuses) & _TRANSIENT_STATUS)

    async def _own_connection(self, conn: _Connection) -> None:
        """Owner task of one connection: connect from a clean context, serve, close.

        Everything the SDK starts here (its POST writer, the legacy GET stream, DELETE
        on close) runs in this task's context: no turn, no call headers, no span.
        """
        _reset_for_owner_task()
        clean_otel_context()
        _REQUEST.set(None)
        _CONNECTING.set(conn)
        try:
            with conn.scope:
                sdk = self._make_sdk_client(conn)
                async with sdk:
                    tools = await self._list_all_tools(sdk, None)
                    conn.tools = tools
                    conn.sdk = sdk
                    conn.ready.set()
                    await conn.stop.wait()
        except Exception as exc:
            conn.error = exc
            if conn.sdk is not None and not self._closing and not conn.stop.is_set():
                logger.warning("MCP server %r: connection lost (%s)", self.name, _describe(exc))
            else:
                logger.debug("MCP server %r: connect failed (%s)", self.name, _describe(exc))
        finally:
            conn.ended = True
            conn.closed.set()
            conn.ready.set()
            self._owned.discard(conn)

    async def _list_all_tools(self, sdk: SdkClient, meta: dict[str, Any] | None) -> list[Tool]:
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await sdk.list_tools(cursor=cursor, meta=_sdk_meta(meta))
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def _refresh_tools(self, conn: _Connection, *, seen: int | None = None) -> _Connection:
        """List tools again, from the calling task; returns the connection now holding them.

        With ``seen`` (a `_Connection.tools_version`), a refresh completed by another
        caller in the meantime is reused instead of sending another ``tools/list``.
        """
        http, meta = self._resolve("tools/list", self._call_layer(None), {}, _TURN_ID.get())
        async with self._tools_lock:
            if seen is not None and conn.tools_version != seen:
                return conn
            for attempt in (1, 2):
                sdk = conn.sdk
                assert sdk is not None
                outcome = _Request(self, "tools/list", http)
                token = _REQUEST.set(outcome)
                try:
                    with anyio.fail_after(self._config.startup_timeout), conn.in_use():
                        tools = await self._list_all_tools(sdk, meta)
                except TimeoutError:
                    raise ServerUnavailableError(
                        self.name, f"tools/list: no answer within {self._config.startup_timeout:g} s"
                    ) from None
                except MCPError as exc:
                    if attempt == 1 and outcome.session_lost:
                        conn = await self._recover(conn)  # lists the tools as it connects
                        return conn
                    self._connection_closed(conn, exc)
                    refused = _authorization_error(self.name, exc)
                    if refused is not None:
                        raise refused from None
                    raise ServerUnavailableError(self.name, f"tools/list failed: {exc.message}") from None
                except (httpx2.TransportError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                    raise ServerUnavailableError(self.name, f"tools/list failed: {_describe(exc)}") from None
                except ValidationError as exc:
                    raise ServerUnavailableError(
                        self.name, f"tools/list: the server's result is malformed: {_validation_summary(exc)}"
                    ) from None
                except RuntimeError as exc:
                    raise ServerUnavailableError(
                        self.name, f"tools/list: the result was refused: {exc}"
                    ) from None
                finally:
                    _REQUEST.reset(token)
                conn.tools = tools
                conn.tools_stale = False
                conn.tools_version += 1
                return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _transport_ended(self, conn: _Connection) -> None:
        """The connection's transport stopped delivering messages: it is dead for good.

        Whatever ended it (a stdio server that exited, an HTTP POST writer that died), the
        connection is closed at once, so that `connected` says so and the next call
        reconnects; its pending requests get "connection closed" answers.
        """
        if conn.stop.is_set():
            return  # closing on purpose
        if conn.sdk is not None and not self._closing:
            logger.warning("MCP server %r: the connection ended; the next call reconnects", self.name)
        conn.halt()

    def _unanswered(self, conn: _Connection, exc: MCPError, what: str) -> ServerUnavailableError | None:
        """The error for an `MCPError` that means no live server answered ``what``, else None.

        An authorization failure, a request whose POST failed alone (see
        `_McpTransport`: the connection stays, and the next request finds out whether
        the server is back), or a closed connection (retired here when it is stdio's).
        """
        if exc.code == AUTH_FAILED:
            return cast("AuthorizationError", _authorization_error(self.name, exc))
        if exc.code == TRANSPORT_FAILED:
            return ServerUnavailableError(self.name, f"{what} could not be sent ({exc.message})")
        if exc.code == CONNECTION_CLOSED:
            self._connection_closed(conn, exc)
            return ServerUnavailableError(self.name, f"connection lost during {what} ({exc.message})")
        return None

    def _connection_closed(self, conn: _Connection, exc: MCPError) -> None:
        """Retire a stdio connection whose pipe closed, so that the next call restarts the server.

        Over HTTP a dead transport ends the connection's owner task by itself, and a
        "connection closed" error may concern one response stream only; over stdio it
        means the server process is gone, and nothing else would notice.
        """
        if exc.code == CONNECTION_CLOSED and self._is_stdio and not conn.stop.is_set():
            logger.warning("MCP server %r: stdio server exited; it is restarted on the next call", self.name)
            conn.halt()

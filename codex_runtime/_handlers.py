"""Requests an MCP server makes of the client: elicitation, sampling, roots, log messages.

`ClientHandlers` holds the application's answers; `McpClient` (and `Session`, for every
client it owns) advertises exactly the capabilities that have a handler and routes both
protocol eras to the same handlers: legacy requests sent over the session, and the
input-required rounds of the 2026-07-28 protocol (SEP-2322), which the SDK's `Client`
drives (it echoes the server's request state verbatim and never reuses it).

Each handler gets a `ServerRequest` naming the server, and the turn and tool call the
request belongs to when that is known for certain (see `ServerRequest`).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import anyio
import attrs
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp_types import (
    INTERNAL_ERROR,
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    ElicitRequestParams,
    ElicitResult,
    ErrorData,
    ListRootsResult,
    LoggingLevel,
    LoggingMessageNotificationParams,
    ResourceUpdatedNotificationParams,
    Root,
)
from pydantic import ValidationError

from ._server_config import ConfigError

__all__ = ["ClientHandlers", "ServerRequest"]

logger = logging.getLogger("codex_runtime.client")

ElicitationHandler = Callable[["ServerRequest"], Awaitable[ElicitResult | ErrorData]]
SamplingHandler = Callable[
    ["ServerRequest"], Awaitable[CreateMessageResult | CreateMessageResultWithTools | ErrorData]
]
NotificationHandler = Callable[["ServerRequest"], Awaitable[None]]
RootsProvider = Callable[..., Awaitable[Sequence[Root | str]]]

#: MCP log levels (RFC 5424 severities) as Python logging levels.
_LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO + 5,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL + 5,
    "emergency": logging.CRITICAL + 10,
}


@attrs.frozen
class ServerRequest:
    """A request (or notification) an MCP server sent the client, as handlers see it.

    Attributes:
        server: The configured name of the server that sent it.
        turn_id: The turn whose request caused it, or ``None`` when that is not known
            for certain.
        tool: The ``tools/call`` it arose in, or ``None`` (not during a tool call, or
            not known for certain).
        params: The SDK's params model: `ElicitRequestParams`,
            `CreateMessageRequestParams`, `LoggingMessageNotificationParams`,
            `ResourceUpdatedNotificationParams`, or ``None`` for ``roots/list``.
        method: The MCP method (``"elicitation/create"``, ``"sampling/createMessage"``,
            ``"roots/list"``, ``"notifications/message"``,
            ``"notifications/resources/updated"``).

    ``turn_id`` and ``tool`` are set only when the request can be tied to the call that
    caused it: it arrived on that call's HTTP response stream, it is an input-required
    round of that call (2026-07-28), or (stdio, where nothing on the wire ties it) it is
    an elicitation or sampling request that arrived while that call was the only
    request in flight on the connection. Otherwise they are ``None``, never a guess.
    """

    server: str
    turn_id: str | None
    tool: str | None
    params: Any
    method: str = ""


def _callable_or_none(what: str) -> Callable[[Any, Any, Any], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not callable(value):
            raise ConfigError(f"ClientHandlers: {attribute.name} must be an async function or None ({what})")

    return check


def _to_roots(value: Any) -> Any:
    if value is None or callable(value):
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError("ClientHandlers: roots must be a sequence of URIs or Roots, or an async function")
    return tuple(_root(item) for item in value)


def _root(item: object) -> Root:
    if isinstance(item, Root):
        return item
    if isinstance(item, str):
        try:
            return Root(uri=item)  # type: ignore[arg-type]
        except ValidationError:
            pass
    raise ConfigError(f"ClientHandlers: root {item!r} is not a file:// URI or a Root")


_LEVELS = tuple(_LOG_LEVELS)


def _check_level(_: Any, __: Any, value: Any) -> None:
    if value is not None and value not in _LEVELS:
        raise ConfigError(f"ClientHandlers: log_level must be one of {', '.join(_LEVELS)} or None")


@attrs.frozen
class ClientHandlers:
    """What the client answers when a server asks it something.

    Only capabilities with a handler are advertised; a server asking for one without
    a handler gets a "not supported" error and the call goes on.

    Attributes:
        elicitation: ``async (ServerRequest) -> ElicitResult`` (ask the user).
        sampling: ``async (ServerRequest) -> CreateMessageResult`` (run a model).
        roots: A sequence of ``file://`` URIs or `Root` s, or ``async () -> list[Root]``
            (also accepted: ``async (ServerRequest) -> list[Root]``).
        logging: ``async (ServerRequest) -> None`` for the server's log messages. By
            default they go to Python logging, logger ``codex_runtime.server.<name>``,
            at the level mapped from the MCP level.
        resource_updated: ``async (ServerRequest) -> None``, told of
            ``notifications/resources/updated`` for subscribed resources.
        log_level: The lowest MCP log level to ask 2026-07-28 servers for (they send log
            messages only to requests that opt in); ``None`` asks for none. Legacy
            servers send what they decide.
        sampling_tools: Advertise tool use in sampling (``sampling.tools``); the sampling
            handler must then accept requests carrying tools.

    A handler that raises (or returns something else than its result type) answers
    the server with an internal error; the exception is logged, the connection stays.
    A handler may return `ErrorData` to refuse explicitly.
    """

    elicitation: ElicitationHandler | None = attrs.field(default=None, validator=_callable_or_none("elicit"))
    sampling: SamplingHandler | None = attrs.field(default=None, validator=_callable_or_none("sample"))
    roots: tuple[Root, ...] | RootsProvider | None = attrs.field(default=None, converter=_to_roots)
    logging: NotificationHandler | None = attrs.field(default=None, validator=_callable_or_none("log"))
    resource_updated: NotificationHandler | None = attrs.field(
        default=None, validator=_callable_or_none("resource updates")
    )
    log_level: LoggingLevel | None = attrs.field(default=None, validator=_check_level)
    sampling_tools: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))


@attrs.frozen
class _CallScope:
    """Which client, turn and tool call the sending task's current request belongs to.

    Set around every request an `McpClient` sends for a caller; the SDK delivers server
    requests that arrive on that request's HTTP response stream (and runs the
    input-required rounds) in a copy of the caller's context, so handlers find it there.
    """

    owner: object
    turn_id: str | None
    tool: str | None
    method: str


ScopeLookup = Callable[[bool], "_CallScope | None"]


def _data_text(data: Any) -> str:
    if isinstance(data, str):
        return data
    try:
        return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(data)


def log_to_python(server: str, request: ServerRequest) -> None:
    """The default `ClientHandlers.logging`: a record on ``codex_runtime.server.<name>``."""
    params = cast(LoggingMessageNotificationParams, request.params)
    level = _LOG_LEVELS.get(str(params.level), logging.INFO)
    target = logging.getLogger(f"codex_runtime.server.{server}")
    if not target.isEnabledFor(level):
        return
    prefix = f"{params.logger}: " if params.logger else ""
    target.log(
        level,
        "%s%s",
        prefix,
        _data_text(params.data),
        extra={"mcp_server": server, "mcp_turn_id": request.turn_id, "mcp_tool": request.tool},
    )


class ServerRequestBridge:
    """Turns the SDK's client callbacks into calls of `ClientHandlers`, for one client.

    ``lookup(fallback)`` returns the `_CallScope` a server request belongs to: the one
    in the current context when it is this client's, else (when ``fallback``) the
    only request in flight on a stdio connection, else None.
    """

    def __init__(self, server: str, handlers: ClientHandlers, lookup: ScopeLookup) -> None:
        self._server = server
        self._handlers = handlers
        self._lookup = lookup

    def _request(self, method: str, params: Any, *, fallback: bool) -> ServerRequest:
        scope = self._lookup(fallback)
        if scope is None:
            return ServerRequest(self._server, None, None, params, method)
        return ServerRequest(self._server, scope.turn_id, scope.tool, params, method)

    # -- what the SDK's `Client` is given ------------------------------------------------

    def sdk_callbacks(self) -> dict[str, Any]:
        """Keyword arguments for the SDK `Client`: only the callbacks that have a handler."""
        h = self._handlers
        kwargs: dict[str, Any] = {"logging_callback": self._on_log}
        if h.elicitation is not None:
            kwargs["elicitation_callback"] = self._on_elicit
        if h.sampling is not None:
            kwargs["sampling_callback"] = self._on_sample
            if h.sampling_tools:
                from mcp_types import SamplingCapability, SamplingToolsCapability

                kwargs["sampling_capabilities"] = SamplingCapability(tools=SamplingToolsCapability())
        if h.roots is not None:
            kwargs["list_roots_callback"] = self._on_list_roots
        if h.log_level is not None:
            kwargs["log_level"] = h.log_level
        return kwargs

    async def _on_elicit(
        self, ctx: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult | ErrorData:
        handler = self._handlers.elicitation
        assert handler is not None
        request = self._request("elicitation/create", params, fallback=True)
        answer = await self._answer("elicitation", handler, request, (ElicitResult,))
        return cast(ElicitResult | ErrorData, answer)

    async def _on_sample(
        self, ctx: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult | CreateMessageResultWithTools | ErrorData:
        handler = self._handlers.sampling
        assert handler is not None
        request = self._request("sampling/createMessage", params, fallback=True)
        answer = await self._answer(
            "sampling", handler, request, (CreateMessageResult, CreateMessageResultWithTools)
        )
        return cast(CreateMessageResult | CreateMessageResultWithTools | ErrorData, answer)

    async def _on_list_roots(self, ctx: ClientRequestContext) -> ListRootsResult | ErrorData:
        roots = self._handlers.roots
        if isinstance(roots, tuple):
            return ListRootsResult(roots=list(roots))
        assert roots is not None
        request = self._request("roots/list", None, fallback=False)
        try:
            listed = await (roots(request) if _takes_argument(roots) else roots())
            return ListRootsResult(roots=[_root(item) for item in listed])
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            return self._failed("roots", exc)

    async def _answer(
        self,
        what: str,
        handler: Callable[[ServerRequest], Awaitable[Any]],
        request: ServerRequest,
        ok: tuple[type, ...],
    ) -> Any:
        try:
            result = await handler(request)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            return self._failed(what, exc)
        if isinstance(result, (ErrorData, *ok)):
            return result
        logger.warning(
            "MCP server %r: the %s handler returned %s, not %s; answering with an error",
            self._server,
            what,
            type(result).__name__,
            " or ".join(t.__name__ for t in ok),
        )
        return ErrorData(code=INTERNAL_ERROR, message=f"the client's {what} handler failed")

    def _failed(self, what: str, exc: Exception) -> ErrorData:
        logger.warning(
            "MCP server %r: the %s handler raised %s", self._server, what, type(exc).__name__, exc_info=True
        )
        return ErrorData(code=INTERNAL_ERROR, message=f"the client's {what} handler failed")

    async def _on_log(self, params: LoggingMessageNotificationParams) -> None:
        request = self._request("notifications/message", params, fallback=False)
        handler = self._handlers.logging
        if handler is None:
            log_to_python(self._server, request)
            return
        try:
            await handler(request)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            logger.warning("MCP server %r: the logging handler failed", self._server, exc_info=True)

    async def on_resource_updated(self, params: ResourceUpdatedNotificationParams) -> None:
        """Hand a ``notifications/resources/updated`` to `ClientHandlers.resource_updated`."""
        handler = self._handlers.resource_updated
        if handler is None:
            return
        request = self._request("notifications/resources/updated", params, fallback=False)
        try:
            await handler(request)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            logger.warning("MCP server %r: the resource_updated handler failed", self._server, exc_info=True)


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in parameters)


ProgressCallback = Callable[[float, float | None, str | None], Any]


def progress_adapter(server: str, callback: ProgressCallback) -> ProgressFnT:
    """Wrap ``on_progress`` (sync or async) so that its failure costs only its own output."""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        try:
            result = callback(progress, total, message)
            if inspect.isawaitable(result):
                await result
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            logger.warning("MCP server %r: the on_progress callback failed", server, exc_info=True)

    return on_progress

"""The MCP requests of `McpClient` beyond tools: resources, prompts, completion, ping.

Every request here goes through the same path as ``tools/list``: the header layers
(call scope always, turn scope when its method is in
``ServerConfig.turn_header_methods``), the trace layer, and the same recovery (a lost
legacy session is re-initialized once and the request resent: the server refused it
before running it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .headers import CodexRuntimeError, Headers

if TYPE_CHECKING:
    from mcp import Client as SdkClient
    from mcp.client.session import ClientSession

__all__ = ["McpRequestError"]

T = TypeVar("T")
_PAGE_LIMIT = 100

HeadersArg = Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None
Sender = Callable[["SdkClient", "types.RequestParamsMeta | None"], Awaitable[T]]


class McpRequestError(CodexRuntimeError):
    """An MCP request other than ``tools/call`` was refused or failed at the protocol level.

    Attributes:
        server: The server's configured name.
        method: The MCP method (``"resources/read"``, ``"prompts/get"``, ...).
        code: The JSON-RPC error code, when the server sent one.
        reason: What went wrong.
    """

    def __init__(self, server: str, method: str, message: str, *, code: int | None = None) -> None:
        super().__init__(f"{method} on MCP server {server!r}: {message}")
        self.server = server
        self.method = method
        self.code = code
        self.reason = message


def _text(value: object, what: str, method: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{method}() needs {what} as a non-empty string")
    return value


class ServerFeatures:
    """Resources, prompts, completion, ping and server metadata; mixed into `McpClient`."""

    # Provided by `McpClient`.
    async def _send_request(
        self,
        method: str,
        send: Sender[T],
        *,
        headers: HeadersArg = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> T:
        raise NotImplementedError

    def _live_session(self) -> ClientSession | None:
        raise NotImplementedError

    async def _connected_session(self) -> ClientSession:
        raise NotImplementedError

    def _listened(self) -> frozenset[str]:
        raise NotImplementedError

    async def _listen_to(self, uris: frozenset[str], timeout: float | None) -> None:
        raise NotImplementedError

    # -- what the server said about itself ---------------------------------------------

    @property
    def server_info(self) -> types.Implementation | None:
        """The server's name and version, or None (not connected, or it did not say)."""
        session = self._live_session()
        return session.server_info if session is not None else None

    @property
    def server_capabilities(self) -> types.ServerCapabilities | None:
        """The capabilities the server declared, or None when not connected."""
        session = self._live_session()
        return session.server_capabilities if session is not None else None

    @property
    def instructions(self) -> str | None:
        """The server's instructions text, if it sent one."""
        session = self._live_session()
        return session.instructions if session is not None else None

    # -- requests ----------------------------------------------------------------------

    async def ping(self, *, headers: HeadersArg = None, timeout: float | None = None) -> None:
        """Check that the server answers; raises `ServerUnavailableError` otherwise.

        Sends ``ping`` on legacy sessions; the 2026-07-28 protocol has no ``ping``, so
        there it sends ``server/discover``, which every such server answers.
        """
        version = (await self._connected_session()).protocol_version
        if version in MODERN_PROTOCOL_VERSIONS:
            assert version is not None

            async def discover(sdk: SdkClient, meta: types.RequestParamsMeta | None) -> None:
                await sdk.session.send_discover(version)

            await self._send_request("server/discover", discover, headers=headers, timeout=timeout)
            return

        async def send(sdk: SdkClient, meta: types.RequestParamsMeta | None) -> None:
            await sdk.session.send_ping(meta=meta)

        await self._send_request("ping", send, headers=headers, timeout=timeout)

    async def list_resources(
        self,
        *,
        headers: HeadersArg = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[types.Resource]:
        """Every resource the server lists (all pages)."""
        items: list[types.Resource] = []
        cursor: str | None = None
        for _ in range(_PAGE_LIMIT):
            page = await self._send_request(
                "resources/list",
                _paged(lambda sdk, m, c: sdk.session.list_resources(params=_page_params(c, m)), cursor),
                headers=headers,
                meta=meta,
                timeout=timeout,
            )
            items.extend(page.resources)
            cursor = page.next_cursor
            if not cursor:
                break
        return items

    async def list_resource_templates(
        self,
        *,
        headers: HeadersArg = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[types.ResourceTemplate]:
        """Every resource template the server lists (all pages)."""
        items: list[types.ResourceTemplate] = []
        cursor: str | None = None
        for _ in range(_PAGE_LIMIT):
            page = await self._send_request(
                "resources/templates/list",
                _paged(
                    lambda sdk, m, c: sdk.session.list_resource_templates(params=_page_params(c, m)), cursor
                ),
                headers=headers,
                meta=meta,
                timeout=timeout,
            )
            items.extend(page.resource_templates)
            cursor = page.next_cursor
            if not cursor:
                break
        return items

    async def read_resource(
        self,
        uri: str,
        *,
        headers: HeadersArg = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> types.ReadResourceResult:
        """Read resource ``uri``; input-required rounds (2026-07-28) go to the handlers."""
        uri = _text(uri, "a resource URI", "read_resource")

        async def send(sdk: SdkClient, m: types.RequestParamsMeta | None) -> types.ReadResourceResult:
            return await sdk.read_resource(uri, meta=m, cache_mode="bypass")

        return await self._send_request("resources/read", send, headers=headers, meta=meta, timeout=timeout)

    async def subscribe_resource(
        self, uri: str, *, headers: HeadersArg = None, timeout: float | None = None
    ) -> None:
        """Ask for ``notifications/resources/updated`` about ``uri`` (`ClientHandlers.resource_updated`).

        Legacy sessions send ``resources/subscribe``. The 2026-07-28 protocol has no such
        request: there the client keeps one ``subscriptions/listen`` stream open for every
        subscribed URI (opened again when the set changes; static headers only, as it
        outlives the calling task). Returns once the server acknowledged it.
        """
        uri = _text(uri, "a resource URI", "subscribe_resource")
        if (await self._connected_session()).protocol_version in MODERN_PROTOCOL_VERSIONS:
            await self._listen_to(self._listened() | {uri}, timeout)
            return

        async def send(sdk: SdkClient, m: types.RequestParamsMeta | None) -> None:
            request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri, _meta=m))
            await sdk.session.send_request(request, types.EmptyResult)

        await self._send_request("resources/subscribe", send, headers=headers, timeout=timeout)

    async def unsubscribe_resource(
        self, uri: str, *, headers: HeadersArg = None, timeout: float | None = None
    ) -> None:
        """Stop the updates `subscribe_resource` asked for."""
        uri = _text(uri, "a resource URI", "unsubscribe_resource")
        if (await self._connected_session()).protocol_version in MODERN_PROTOCOL_VERSIONS:
            await self._listen_to(self._listened() - {uri}, timeout)
            return

        async def send(sdk: SdkClient, m: types.RequestParamsMeta | None) -> None:
            request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri, _meta=m))
            await sdk.session.send_request(request, types.EmptyResult)

        await self._send_request("resources/unsubscribe", send, headers=headers, timeout=timeout)

    async def list_prompts(
        self,
        *,
        headers: HeadersArg = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> list[types.Prompt]:
        """Every prompt the server lists (all pages)."""
        items: list[types.Prompt] = []
        cursor: str | None = None
        for _ in range(_PAGE_LIMIT):
            page = await self._send_request(
                "prompts/list",
                _paged(lambda sdk, m, c: sdk.session.list_prompts(params=_page_params(c, m)), cursor),
                headers=headers,
                meta=meta,
                timeout=timeout,
            )
            items.extend(page.prompts)
            cursor = page.next_cursor
            if not cursor:
                break
        return items

    async def get_prompt(
        self,
        name: str,
        arguments: Mapping[str, str] | None = None,
        *,
        headers: HeadersArg = None,
        meta: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> types.GetPromptResult:
        """Get prompt ``name`` filled with ``arguments`` (string values)."""
        name = _text(name, "a prompt name", "get_prompt")
        args = _string_map(arguments, "get_prompt", "arguments")

        async def send(sdk: SdkClient, m: types.RequestParamsMeta | None) -> types.GetPromptResult:
            return await sdk.get_prompt(name, args, meta=m)

        return await self._send_request("prompts/get", send, headers=headers, meta=meta, timeout=timeout)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: Mapping[str, str],
        *,
        context_arguments: Mapping[str, str] | None = None,
        headers: HeadersArg = None,
        timeout: float | None = None,
    ) -> types.CompleteResult:
        """Ask for completions of ``argument`` (``{"name", "value"}``) of a prompt or template."""
        if not isinstance(ref, types.PromptReference | types.ResourceTemplateReference):
            raise TypeError("complete() needs a PromptReference or ResourceTemplateReference")
        arg = _string_map(argument, "complete", "argument") or {}
        if set(arg) != {"name", "value"}:
            raise TypeError('complete() argument must be {"name": ..., "value": ...}')
        context = _string_map(context_arguments, "complete", "context_arguments")

        async def send(sdk: SdkClient, m: types.RequestParamsMeta | None) -> types.CompleteResult:
            request = types.CompleteRequest(
                params=types.CompleteRequestParams(
                    ref=ref,
                    argument=types.CompletionArgument(name=arg["name"], value=arg["value"]),
                    context=types.CompletionContext(arguments=context) if context is not None else None,
                    _meta=m,
                )
            )
            return await sdk.session.send_request(request, types.CompleteResult)

        return await self._send_request("completion/complete", send, headers=headers, timeout=timeout)


def _string_map(value: Mapping[str, str] | None, method: str, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"{method}() {what} must be a mapping of strings to strings")
    return dict(value)


def _page_params(
    cursor: str | None, meta: types.RequestParamsMeta | None
) -> types.PaginatedRequestParams | None:
    if cursor is None and meta is None:
        return None
    return types.PaginatedRequestParams(cursor=cursor, _meta=meta)


def _paged(
    fetch: Callable[[SdkClient, types.RequestParamsMeta | None, str | None], Awaitable[T]], cursor: str | None
) -> Sender[T]:
    async def send(sdk: SdkClient, meta: types.RequestParamsMeta | None) -> T:
        return await fetch(sdk, meta, cursor)

    return send

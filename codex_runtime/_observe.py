"""Observe the JSON-RPC messages a stdio transport writes to its server.

Stdio has no HTTP request to hook into, so what leaves the client is seen at the
transport's write stream: each message is handed, as the JSON object that is written,
to an observer before it goes out. The observer must not change it; its failure costs
only its own output (logged), never the message or the connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any

from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.message import SessionMessage

__all__ = ["MessageObserver", "observe_writes"]

logger = logging.getLogger("codex_runtime.client")

MessageObserver = Callable[[dict[str, Any]], Awaitable[None]]


class _ObservedWriteStream:
    """A transport write stream that shows each message to an observer, then sends it."""

    def __init__(self, inner: Any, observer: MessageObserver) -> None:
        self._inner = inner
        self._observer = observer

    async def send(self, item: SessionMessage, /) -> None:
        try:
            await self._observer(item.message.model_dump(mode="json", by_alias=True, exclude_unset=True))
        except Exception:
            logger.warning("stdio message observer failed", exc_info=True)
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close(self) -> None:
        self._inner.close()

    async def __aenter__(self) -> _ObservedWriteStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


def observe_writes(
    transport: StdioServerParameters | AbstractAsyncContextManager[Any], observer: MessageObserver
) -> AbstractAsyncContextManager[Any]:
    """A transport (for `mcp.Client`) like ``transport`` whose written messages ``observer`` sees."""
    inner = stdio_client(transport) if isinstance(transport, StdioServerParameters) else transport

    @asynccontextmanager
    async def observed() -> AsyncIterator[Any]:
        async with inner as (read_stream, write_stream):
            yield read_stream, _ObservedWriteStream(write_stream, observer)

    return observed()

"""Drive turns from another process: a Codex-compatible app-server over stdio.

``codex-runtime app-server [--config PATH]`` speaks JSON-RPC 2.0 (one JSON object a line)
on stdin/stdout, a compatible subset of Codex's app-server protocol v2: ``initialize``;
``thread/start``, ``thread/resume``, ``thread/read``, ``thread/list``; ``turn/start``,
``turn/steer``, ``turn/interrupt``; the notifications ``thread/started``, ``turn/started``,
``item/started``, ``item/agentMessage/delta``, ``item/completed`` (``userMessage``,
``agentMessage``, ``mcpToolCall``), ``error`` and ``turn/completed``. Field names and shapes
are Codex's. `AppServer` is the same server for any pair of line streams.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread

from ._jsonrpc import RpcError
from ._server import MAX_LINE, AppServer

__all__ = ["AppServer", "RpcError", "serve_stdio"]


async def _stdin_lines() -> AsyncIterator[bytes]:
    stream = sys.stdin.buffer
    while True:
        line = await anyio.to_thread.run_sync(stream.readline, MAX_LINE + 1, abandon_on_cancel=True)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while True:  # drop the rest of an over-long line; the server answers a parse error
                rest = await anyio.to_thread.run_sync(stream.readline, MAX_LINE, abandon_on_cancel=True)
                if not rest or rest.endswith(b"\n"):
                    break
            yield b"{over-long line}"
            continue
        yield line


async def _stdout_send(line: str) -> None:
    out = sys.stdout.buffer
    out.write(line.encode("utf-8") + b"\n")
    out.flush()


async def serve_stdio(server: AppServer) -> None:
    """Serve ``server`` on this process's stdin/stdout until stdin ends."""
    await server.serve(_stdin_lines(), _stdout_send)

"""The stdio transport of `McpClient`: a server subprocess whose shutdown is bounded.

The SDK's own stdio transport gives a server 2 s to exit once its stdin closes, then 2 s
more after ``SIGTERM``: a server that keeps running after its stdin closes (many do, e.g.
those with timers) holds a Ctrl-C or a ``close`` for seconds. Here the shutdown is:
close stdin, wait `STDIN_GRACE`; ``SIGTERM`` to the server's process group, wait
`TERMINATE_GRACE`; then ``SIGKILL`` to the group. The wire format is the SDK's: one
JSON-RPC message per line. On Windows the SDK's transport is used as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

logger = logging.getLogger("codex_runtime.client")

#: Seconds a server gets to exit by itself once its stdin is closed.
STDIN_GRACE = 0.2
#: Seconds its process group gets after ``SIGTERM``, before ``SIGKILL``.
TERMINATE_GRACE = 0.3
#: Seconds the writer gets to hand messages already accepted to the server, at close.
_FLUSH_TIMEOUT = 0.1
#: Seconds to wait for the event loop to see a killed process end.
_REAP_TIMEOUT = 2.0
_POLL_INTERVAL = 0.01

_PIPE_ERRORS = (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)


def _parse(line: str) -> SessionMessage | Exception:
    try:
        return SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        # Handed to the session, which reports it; the connection goes on.
        return exc


#: Messages that may wait for the stdin writer before a sender waits too.
_WRITE_QUEUE = 1024


@contextlib.asynccontextmanager
async def stdio_transport(params: StdioServerParameters) -> AsyncIterator[tuple[Any, Any]]:
    """Start the server of ``params`` and yield its (read, write) message streams.

    Leaving the context stops the server within ``STDIN_GRACE + TERMINATE_GRACE`` seconds
    (plus the time for the system to end a killed process), even when cancelled.
    """
    if sys.platform == "win32":  # pragma: no cover
        async with stdio_client(params) as streams:
            yield streams
        return
    process = await anyio.open_process(
        [params.command, *params.args],
        env=get_default_environment() | (params.env or {}),
        cwd=params.cwd,
        stderr=_stderr(),
        start_new_session=True,  # its own process group: signals reach its children too
    )
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    # Queued, so that a request is written (and its deadline, the SDK's request clock,
    # starts) even while the writer waits on a server that stopped reading its stdin.
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](_WRITE_QUEUE)
    writer_done = anyio.Event()

    async def read_stdout() -> None:
        assert process.stdout is not None
        stdout = TextReceiveStream(
            process.stdout, encoding=params.encoding, errors=params.encoding_error_handler
        )
        buffer = ""
        async with read_send:
            # Ends at the server's EOF, which the session sees as the end of the connection.
            with contextlib.suppress(*_PIPE_ERRORS):
                async for chunk in stdout:
                    lines = (buffer + chunk).split("\n")
                    buffer = lines.pop()
                    for line in lines:
                        if line.strip():
                            await read_send.send(_parse(line))

    async def write_stdin() -> None:
        assert process.stdin is not None
        try:
            async with write_recv:
                async for message in write_recv:
                    text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    data = (text + "\n").encode(params.encoding, params.encoding_error_handler)
                    await process.stdin.send(data)
        except _PIPE_ERRORS:
            # The server cannot take messages any more: end the connection for the session
            # rather than leave a request waiting for an answer that cannot come.
            read_send.close()
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_stdout)
        tg.start_soon(write_stdin)
        try:
            yield read_recv, write_send
        finally:
            with anyio.CancelScope(shield=True):
                write_send.close()
                with anyio.move_on_after(_FLUSH_TIMEOUT):
                    await writer_done.wait()
                await stop_process(process)
                read_recv.close()
            tg.cancel_scope.cancel()


async def stop_process(process: anyio.abc.Process) -> None:
    """Close the server's stdin, then terminate and kill its process group, each after a grace."""
    if process.stdin is not None:
        with contextlib.suppress(*_PIPE_ERRORS):
            await process.stdin.aclose()
    if not await _exited(process, STDIN_GRACE):
        _signal_group(process, signal.SIGTERM)
        if not await _exited(process, TERMINATE_GRACE):
            _signal_group(process, signal.SIGKILL)
            if not await _exited(process, _REAP_TIMEOUT):  # pragma: no cover
                logger.warning("stdio server process %d survived SIGKILL; abandoning it", process.pid)
    # Whatever the leader did, nothing of its group may outlive the connection.
    _signal_group(process, signal.SIGKILL)
    with anyio.move_on_after(_REAP_TIMEOUT):
        await process.aclose()


def _stderr() -> Any:
    """Where the server's stderr goes: ours, or (when ours is no file, as under output
    capture) the process's inherited stderr."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return sys.stderr


def _signal_group(process: anyio.abc.Process, signum: int) -> None:
    # The server leads its own session (`start_new_session`): its pid is its group id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


async def _exited(process: anyio.abc.Process, timeout: float) -> bool:
    """Whether the process ended within ``timeout`` (polled: `wait` would also wait for
    every descendant holding its pipes)."""
    with anyio.move_on_after(timeout):
        while process.returncode is None:  # noqa: ASYNC110 (no event says a process ended)
            await anyio.sleep(_POLL_INTERVAL)
    return process.returncode is not None

"""What the loopback test servers share: a listening socket, uvicorn in its own thread and
asyncio loop, and looking up the headers a request arrived with."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["ReceivedHeaders", "ThreadServer", "listen_socket"]


class ReceivedHeaders:
    """Header lookups over ``header_pairs`` (lower-case names, in arrival order)."""

    __slots__ = ()
    header_pairs: tuple[tuple[str, str], ...]

    @property
    def headers(self) -> dict[str, str]:
        """Headers with lower-case names (the last value of a repeated name)."""
        return dict(self.header_pairs)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.header_pairs:
            if key == name:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value received for header ``name``."""
        name = name.lower()
        return [v for k, v in self.header_pairs if k == name]


def listen_socket(port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (``port`` 0 picks a free one), inheritable."""
    # IPPROTO_TCP makes uvicorn set TCP_NODELAY: without it small responses wait on Nagle.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


class ThreadServer:
    """uvicorn in its own thread and asyncio loop.

    The app is built inside that loop: the SDK's server creates anyio primitives, which
    bind to the event loop running when they are made (a trio test's, otherwise).
    """

    def __init__(
        self,
        make_app: Callable[[], Any],
        sock: socket.socket,
        *,
        name: str = "recording server",
        lifespan: Literal["on", "off"] = "on",
    ) -> None:
        self.sock = sock
        self.name = name
        self._make_app = make_app
        self._lifespan = lifespan
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: Any = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stopping = False

    def _run(self) -> None:
        import uvicorn

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            config = uvicorn.Config(
                self._make_app(),
                log_level="warning",
                log_config=None,
                lifespan=self._lifespan,
                timeout_graceful_shutdown=1,
            )
            self.server = uvicorn.Server(config)
            self.server.should_exit = self._stopping
            serving = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
            # uvicorn offers no startup callback or event: poll its flag, on the server's loop.
            while not self.server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.002)
            self.ready.set()
            await serving

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the starting task
            self.error = exc
        finally:
            self.ready.set()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait()
        if self.server is None or not self.server.started:
            self.thread.join(10)
            raise RuntimeError(f"{self.name} failed to start: {self.error!r}")

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> None:
        self._stopping = True
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(10)

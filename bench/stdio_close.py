"""Closing a stdio server: `McpClient` against the bare mcp SDK client, side by side.

Each round starts the stdio recording server, makes one call, and times the close (what
Ctrl-C waits for), once with the SDK's ``Client`` on its own stdio transport (the
baseline) and once with `McpClient`. Two servers: one that exits when its stdin closes,
and one that lingers (it runs on after its stdin closes, as servers with timers do).
Prints the median close times and their ratio (`McpClient` / SDK; lower is faster).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from codex_runtime.client import McpClient, ServerConfig
from codex_runtime.testing import stdio_server_config

DESCRIPTION = "closing a stdio server (Ctrl-C): McpClient vs the bare SDK, exiting and lingering servers"


def _config(record: Path, linger: bool) -> ServerConfig:
    base = stdio_server_config("bench", record)
    if not linger:
        return base
    server = " ".join(shlex.quote(part) for part in (base.command, *base.args))
    return ServerConfig(name="bench", command="sh", args=("-c", f"{server}; sleep 60"), env=base.env)


async def _sdk_close(config: ServerConfig) -> float:
    params = StdioServerParameters(
        command=config.command or "", args=list(config.args), env=dict(config.env or {})
    )
    client = Client(params)
    await client.__aenter__()
    await client.call_tool("echo", {"text": "x"})
    started = time.perf_counter()
    await client.__aexit__(None, None, None)
    return time.perf_counter() - started


async def _runtime_close(config: ServerConfig) -> float:
    client = McpClient(config)
    await client.connect()
    await client.call_tool("echo", {"text": "x"})
    started = time.perf_counter()
    await client.aclose()
    return time.perf_counter() - started


async def _run(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for linger in (False, True):
            config = _config(Path(tmp) / "rec.jsonl", linger)
            sdk: list[float] = []
            ours: list[float] = []
            for _ in range(rounds):  # alternate, so that drift of the machine hits both alike
                sdk.append(await _sdk_close(config))
                ours.append(await _runtime_close(config))
            kind = "lingering server" if linger else "server exiting on EOF"
            sdk_median, our_median = statistics.median(sdk), statistics.median(ours)
            print(
                f"{kind:<22} SDK {sdk_median:6.3f} s   McpClient {our_median:6.3f} s   "
                f"ratio {our_median / sdk_median:5.2f}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench stdio_close", description=DESCRIPTION)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {args.backend}, {args.rounds} rounds")
    anyio.run(_run, args.rounds, backend=args.backend)
    return 0

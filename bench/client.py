"""`McpClient` against the bare mcp SDK client, side by side on one recording server.

(a) Client CPU per sequential ``tools/call`` (``time.process_time`` of this process; the
server runs in its own process, so its CPU is not counted), as a ratio against the bare
SDK ``Client.call_tool`` measured in the same interleaved rounds, for:

- ``McpClient.call_tool`` (no extra headers);
- ``turn.call_tool`` inside a running turn of a `Session` with `TurnHeaders` and
  `TraceTurns` on an Apps server (turn headers, with the turn metadata, on every call);
- ``McpClient.call_tool`` carrying 3 turn headers (one a callable) and 2 call headers.

By default it runs twice, in two child processes: without the OpenTelemetry SDK (only
the API: spans are no-ops) and with it (an SDK tracer provider exporting nowhere, for
every side alike). The sides alternate in short rounds (10 calls by default), so drift of
the machine hits all alike. Each call's CPU is measured on its own, and a side's ratio is
its median call against the bare SDK's median call (the ratio of the totals is printed
too). To keep the noise below the differences measured: this process and the server are
pinned to separate CPUs (``--no-pin`` to turn off), the long-lived objects are frozen out
of the garbage collector after the warm-up, and each round starts with a collection.

(b) Concurrency: N concurrent ``sleep(d)`` calls on one client; wall time divided by d
(1.0 would be perfect overlap; a serializing client would give N).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from codex_runtime import Session, TraceTurns, Turn, TurnHeaders
from codex_runtime.client import McpClient, ServerConfig, bind_turn
from codex_runtime.testing import RecordingServer

DESCRIPTION = "McpClient.call_tool vs the bare SDK: sequential overhead ratio, concurrent calls"

CLIENT_GOAL = 1.03
TURN_GOAL = 1.05
CONCURRENCY_GOAL = 1.5


class _DiscardingExporter(SpanExporter):
    """Exports nowhere: span creation and processing are paid, no I/O."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _install_tracer_provider() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_DiscardingExporter()))
    trace.set_tracer_provider(provider)


@asynccontextmanager
async def _server(kind: str) -> AsyncIterator[Any]:
    if kind == "subprocess":
        async with RecordingServer.subprocess("bench") as server:
            yield server
    else:
        async with RecordingServer("bench") as server:
            yield server


@asynccontextmanager
async def _bare_client(url: str, protocol: str) -> AsyncIterator[Client]:
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with httpx2.AsyncClient(timeout=timeout) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=protocol) as client:
            await client.list_tools()  # as McpClient does at connect
            yield client


def _server_cpu(server: Any) -> float | None:
    """CPU seconds used so far by a subprocess server (Linux ``/proc``), else None."""
    pid = getattr(server, "pid", None)
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Side:
    """Samples of one side: per-call latency, and CPU of this process and of the server."""

    def __init__(
        self,
        call: Callable[[], Awaitable[Any]],
        around: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.call = call
        self.around = around
        self.latencies: list[float] = []
        self.server_cpu: float | None = 0.0
        self.call_cpu: list[float] = []  # client CPU of each measured call

    @property
    def client_cpu(self) -> float:
        """Client CPU of all measured calls."""
        return sum(self.call_cpu)

    async def run(self, count: int, server: Any, *, record: bool = True) -> None:
        if self.around is None:
            await self._run(count, server, record)
        else:
            async with self.around():  # e.g. a turn; its start and end are not counted
                await self._run(count, server, record)

    async def _run(self, count: int, server: Any, record: bool) -> None:
        # A full collection is paid in whichever round it lands in, whichever side made
        # the garbage: start each round with none pending (collections the round itself
        # triggers are counted).
        gc.collect()
        server_cpu = _server_cpu(server)
        latencies = []
        cpus = []
        for _ in range(count):
            cpu, start = time.process_time(), time.perf_counter()
            await self.call()
            latencies.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        if not record:
            return
        self.latencies += latencies
        self.call_cpu += cpus
        after = _server_cpu(server)
        if server_cpu is None or after is None or self.server_cpu is None:
            self.server_cpu = None
        else:
            self.server_cpu += after - server_cpu


async def _concurrent_wall(call: Callable[[], Awaitable[Any]], count: int) -> float:
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(call)
    return time.perf_counter() - start


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _pin(server: Any) -> str:
    """Pin this process to one CPU and a subprocess server to another (Linux, 2+ CPUs).

    The two then never compete for a CPU, nor migrate between CPUs mid-round: the ratios
    get much steadier. Returns what was done, for the report.
    """
    pid = getattr(server, "pid", None)
    setaffinity = getattr(os, "sched_setaffinity", None)
    cpus = sorted(os.sched_getaffinity(0)) if setaffinity is not None else []
    if pid is None or setaffinity is None or len(cpus) < 2:
        return "not pinned"
    setaffinity(0, {cpus[0]})
    setaffinity(pid, {cpus[1]})
    return f"pinned: client on CPU {cpus[0]}, server on CPU {cpus[1]}"


async def _run(args: argparse.Namespace) -> int:
    metadata = {"model": "gpt-bench", "reasoning_effort": "low"}
    per_round = max(1, args.calls // args.rounds)
    no_sleep = {"seconds": 0}

    async with _server(args.server) as server:
        pinning = _pin(server) if args.pin else "not pinned"
        config = ServerConfig(name="bench", url=server.url, protocol=args.protocol, tool_timeout=120.0)
        apps = ServerConfig(
            name="apps", url=server.url, protocol=args.protocol, tool_timeout=120.0, apps=True
        )
        async with (
            _bare_client(server.url, args.protocol) as bare,
            McpClient(config) as client,
            McpClient(config) as layered,
            McpClient(apps) as apps_client,
            Session(clients=[apps_client], hooks=[TurnHeaders(), TraceTurns()]) as session,
        ):
            layered.set_turn_headers(
                "bench-turn",
                {
                    "session_id": "bench-session",
                    "x-codex-turn-metadata": lambda: json.dumps(metadata, separators=(",", ":")),
                    "x-turn-extra": "bench",
                },
            )
            call_headers = {"x-tenant": "tenant-1", "x-request-id": "req-1"}
            turn_holder: list[Turn] = []

            async def bare_call() -> None:
                await bare.call_tool("sleep", no_sleep)

            async def client_call() -> None:
                await client.call_tool("sleep", no_sleep)

            async def turn_call() -> None:
                await turn_holder[0].call_tool("apps", "sleep", no_sleep)

            async def layered_call() -> None:
                with bind_turn("bench-turn"):
                    await layered.call_tool("sleep", no_sleep, headers=call_headers)

            @asynccontextmanager
            async def in_turn() -> AsyncIterator[None]:
                async with session.turn(metadata=dict(metadata)) as turn:
                    turn_holder[:] = [turn]
                    yield

            sides = {
                "bare": _Side(bare_call),
                "client": _Side(client_call),
                "turn": _Side(turn_call, around=in_turn),
                "layered": _Side(layered_call),
            }
            for side in sides.values():  # warm up connections and code paths
                await side.run(args.warmup, server, record=False)
            # The long-lived objects (clients, sessions, servers' state) are not what is
            # measured: keep collections from scanning them again and again.
            gc.collect()
            gc.freeze()
            names = list(sides)
            for index in range(args.rounds):
                for name in names[index % len(names) :] + names[: index % len(names)]:
                    await sides[name].run(per_round, server)
            # Sanity: the turn's calls carried the turn headers; the plain client's did not.
            server.clear()
            await sides["turn"].run(1, server, record=False)
            await sides["client"].run(1, server, record=False)
            turn_record, plain_record = server.requests("tools/call")
            assert (turn_record.header("x-codex-turn-metadata") or "").startswith('{"session_id"')
            assert plain_record.header("x-codex-turn-metadata") is None

            async def sleep_bare() -> None:
                await bare.call_tool("sleep", {"seconds": args.sleep})

            async def sleep_runtime() -> None:
                await client.call_tool("sleep", {"seconds": args.sleep})

            walls: dict[str, list[float]] = {"bare": [], "runtime": []}
            for _ in range(args.repeat):
                walls["bare"].append(await _concurrent_wall(sleep_bare, args.concurrency))
                walls["runtime"].append(await _concurrent_wall(sleep_runtime, args.concurrency))

    otel = "on (SDK tracer provider, exporting nowhere)" if args.otel == "on" else "off (API only)"
    print(
        f"bench client: python {platform.python_version()}, {os.cpu_count()} CPUs, backend {args.backend}, "
        f"protocol {args.protocol}, server {args.server} ({pinning}), OpenTelemetry SDK {otel}"
    )
    bare_side = sides["bare"]
    calls = len(bare_side.latencies)
    print(f"(a) sequential tools/call, {calls} calls per side in {args.rounds} interleaved rounds")
    labels = {
        "bare": "bare SDK Client.call_tool",
        "client": "McpClient.call_tool",
        "turn": "turn.call_tool, TurnHeaders + TraceTurns",
        "layered": "McpClient, 3 turn + 2 call headers",
    }
    goals = {"client": CLIENT_GOAL, "turn": TURN_GOAL}
    bare_cpu = bare_side.client_cpu / calls
    bare_median = statistics.median(bare_side.call_cpu)
    for name, side in sides.items():
        cpu = side.client_cpu / len(side.latencies)
        line = (
            f"    {labels[name]:<42} CPU {_us(cpu):>8} per call, median latency "
            f"{_us(statistics.median(side.latencies)):>8}"
        )
        if name != "bare":
            # Typical calls against typical calls: the median CPU of a call is robust to
            # what lands in a few calls (a collection, an interrupt); the ratio of the
            # totals ("all calls") counts everything, and is noisier.
            ratio = statistics.median(side.call_cpu) / statistics.median(bare_side.call_cpu)
            line += (
                f"   CPU ratio {ratio:.3f} (median call +{_us(ratio * bare_median - bare_median)}; "
                f"all calls {cpu / bare_cpu:.3f})"
            )
            goal = goals.get(name)
            if goal is not None:
                line += f" goal <= {goal}: {'ok' if ratio <= goal else 'ABOVE GOAL'}"
        print(line)
    if bare_side.server_cpu is not None:
        print(f"    (server CPU per call, bare side: {_us(bare_side.server_cpu / calls)}; not counted above)")
    print(
        f"(b) {args.concurrency} concurrent sleep({args.sleep:g}) calls on one client, "
        f"median of {args.repeat}"
    )
    for name, label in (("bare", "bare SDK Client"), ("runtime", "McpClient")):
        wall = statistics.median(walls[name])
        print(f"    {label}: wall {wall:.3f} s = {wall / args.sleep:.2f} x sleep")
    concurrency_ratio = statistics.median(walls["runtime"]) / args.sleep
    verdict = "ok" if concurrency_ratio <= CONCURRENCY_GOAL else "ABOVE GOAL"
    print(f"    McpClient wall / sleep {concurrency_ratio:.2f} (goal <= {CONCURRENCY_GOAL}: {verdict})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench client", description=DESCRIPTION)
    parser.add_argument("--calls", type=int, default=4000, help="sequential calls per side (default 4000)")
    parser.add_argument("--rounds", type=int, default=400, help="interleaved rounds (default 400)")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin this process and the server to separate CPUs (default: pinned when possible)",
    )
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured calls per side first (default 50)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent calls in (b) (default 64)")
    parser.add_argument(
        "--sleep", type=float, default=0.1, help="seconds each call in (b) sleeps (default 0.1)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of (b) (default 3)")
    parser.add_argument("--protocol", choices=("auto", "legacy"), default="auto")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument(
        "--otel",
        choices=("both", "on", "off"),
        default="both",
        help="with the OpenTelemetry SDK, without it, or both in turn (default; two child processes)",
    )
    parser.add_argument(
        "--server",
        choices=("subprocess", "thread"),
        default="subprocess",
        help="where the recording server runs (default: its own process, off this one's CPU)",
    )
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    if args.calls < 1 or args.rounds < 1 or args.concurrency < 1 or args.sleep <= 0 or args.repeat < 1:
        parser.error("counts must be positive")
    if args.otel == "both":
        # A process has one tracer provider for good: one child process per mode.
        rest = [a for i, a in enumerate(raw) if not a.startswith("--otel") and raw[i - 1 : i] != ["--otel"]]
        code = 0
        for mode in ("off", "on"):
            done = subprocess.run(
                [sys.executable, "-m", "bench", "client", *rest, "--otel", mode], check=False
            )
            code = code or done.returncode
        return code
    if args.otel == "on":
        _install_tracer_provider()
    result: int = anyio.run(partial(_run, args), backend=args.backend)
    return result

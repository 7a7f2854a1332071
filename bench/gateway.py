"""A gateway under load: turns with forwarded headers and tracing, against bare SDK calls.

(a) Throughput: ``--callers`` concurrent callers (default 50), each sending requests one
after another. A request is what a gateway does per incoming HTTP request:

- codex-runtime: one turn on the caller's own `Session` (``Session(clients=[shared],
  hooks=[ForwardHeaders(HeaderPolicy.smg()), TraceTurns()])``: every session shares the
  same connected `McpClient`), with the incoming request's headers as
  ``forwarded_headers``, making 3 sequential ``tools/call``; `ForwardHeaders` sends the
  delegation headers in ``params._meta.extra_headers`` and `TraceTurns` continues the
  caller's ``traceparent``.
- baseline: the same 3 calls on one bare SDK ``Client`` shared by all callers, with the
  same ``_meta.extra_headers`` built per request from the incoming headers by hand.

Both sides hit the same recording server (in its own process, so its CPU is not counted
here), alternating in rounds. Reported per side: requests per second, latency p50/p99,
and the CPU of this process per request. An OpenTelemetry SDK tracer provider (exporting
nowhere) is installed for both sides unless ``--no-otel``.

(b) Idle sessions sharing their clients: ``--sessions`` `Session`\\ s (default 1,000) open at
once in a fresh process (held in a list, as a gateway holds them), all sharing one connected
`McpClient`; without hooks, and with the same hooks (each with its ``session`` span open).
Memory per session, as the RSS delta and the Python heap delta (tracemalloc).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from codex_runtime import ForwardHeaders, HeaderPolicy, McpClient, ServerConfig, Session, TraceTurns
from codex_runtime.testing import RecordingServer

from .turns import _rss_bytes, _traced

DESCRIPTION = "50 concurrent gateway callers: turns with ForwardHeaders + TraceTurns vs bare SDK calls"

MEMORY_GOAL_KIB = 10.0

_TOOL = "sleep"
_ARGS = {"seconds": 0}
_CALLS = 3


def _incoming(caller: int, request: int) -> list[tuple[str, str]]:
    """The headers of one incoming gateway request."""
    return [
        ("host", "gateway.example"),
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("user-agent", "bench-client/1.0"),
        ("authorization", f"Bearer caller-{caller}"),
        ("x-request-id", f"req-{caller}-{request}"),
        ("x-smg-oci-delegation-token", f"delegation-{caller}"),
        ("x-smg-oci-compartment-id", f"compartment-{caller % 5}"),
        ("traceparent", f"00-{caller + 1:032x}-{request + 1:016x}-01"),
    ]


_FORWARDED = ("x-smg-oci-delegation-token", "x-smg-oci-compartment-id")


def _install_tracer_provider() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    trace.set_tracer_provider(provider)


@asynccontextmanager
async def _bare_client(url: str, protocol: str) -> AsyncIterator[Client]:
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with httpx2.AsyncClient(timeout=timeout) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=protocol) as client:
            await client.list_tools()
            yield client


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Side:
    def __init__(self, name: str, request: Callable[[int, int], Awaitable[None]]) -> None:
        self.name = name
        self.request = request
        self.latencies: list[float] = []
        self.wall = 0.0
        self.cpu = 0.0
        self.errors = 0

    async def run(self, callers: int, per_caller: int, offset: int, *, record: bool = True) -> None:
        latencies: list[float] = []
        errors = 0

        async def caller(index: int) -> None:
            nonlocal errors
            for n in range(per_caller):
                start = time.perf_counter()
                try:
                    await self.request(index, offset + n)
                except Exception:  # e.g. a keep-alive connection the loaded server closed
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)

        cpu, wall = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(callers):
                tg.start_soon(caller, index)
        if record:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu
            self.latencies += latencies
            self.errors += errors

    def line(self) -> str:
        count = len(self.latencies)
        return (
            f"{count / self.wall:8.0f} req/s   p50 {_pct(self.latencies, 0.5) * 1e3:6.1f} ms   "
            f"p99 {_pct(self.latencies, 0.99) * 1e3:6.1f} ms   CPU {self.cpu / count * 1e6:6.0f} µs/request"
            + (f"   {self.errors} failed" if self.errors else "")
        )


async def _throughput(args: argparse.Namespace, server: Any) -> None:
    policy = HeaderPolicy.smg()
    config = ServerConfig(
        name="oci", url=server.url, protocol=args.protocol, forward=True, header_delivery="meta"
    )
    async with McpClient(config) as shared, _bare_client(server.url, args.protocol) as bare:
        sessions = [
            Session(clients=[shared], hooks=[ForwardHeaders(policy), TraceTurns()])
            for _ in range(args.callers)
        ]
        async with AsyncExitStack() as stack:
            for session in sessions:
                await stack.enter_async_context(session)

            async def runtime_request(caller: int, request: int) -> None:
                session = sessions[caller]
                async with session.turn(forwarded_headers=_incoming(caller, request)) as turn:
                    for _ in range(_CALLS):
                        await turn.call_tool("oci", _TOOL, _ARGS)

            async def bare_request(caller: int, request: int) -> None:
                incoming = _incoming(caller, request)
                extra = {name: value for name, value in incoming if name in _FORWARDED}
                for _ in range(_CALLS):
                    await bare.call_tool(_TOOL, _ARGS, meta={"extra_headers": extra})  # type: ignore[typeddict-unknown-key]

            sides = [_Side("baseline", bare_request), _Side("runtime", runtime_request)]
            for side in sides:
                await side.run(args.callers, 2, 0, record=False)
            # Sanity: the runtime's calls carried the caller's forwarded headers.
            server.clear()
            await sides[1].run(1, 1, 0, record=False)
            [sample, *_] = server.requests("tools/call")
            expected = {name: value for name, value in _incoming(0, 0) if name in _FORWARDED}
            assert sample.meta.get("extra_headers") == expected, sample.meta
            assert (sample.meta.get("traceparent") or "").split("-")[1] == f"{1:032x}", sample.meta
            for index in range(args.rounds):
                order = sides if index % 2 == 0 else sides[::-1]
                for side in order:
                    server.clear()  # keep the record file short: its reads are the server's cost
                    await side.run(args.callers, args.requests, (index + 1) * 1000)

    baseline, runtime = sides
    total = args.callers * args.requests * args.rounds
    print(
        f"(a) {args.callers} concurrent callers, {total:,} requests per side ({_CALLS} tools/call each) "
        f"in {args.rounds} alternating rounds"
    )
    print(f"    baseline: bare SDK Client, per-call _meta   {baseline.line()}")
    print(f"    Session turn + ForwardHeaders + TraceTurns  {runtime.line()}")
    rate = (len(runtime.latencies) / runtime.wall) / (len(baseline.latencies) / baseline.wall)
    p99 = _pct(runtime.latencies, 0.99) / _pct(baseline.latencies, 0.99)
    cpu = (runtime.cpu / len(runtime.latencies)) / (baseline.cpu / len(baseline.latencies))
    print(f"    codex-runtime / baseline: req/s {rate:.2f}, p99 {p99:.2f}, client CPU per request {cpu:.2f}")


async def _hold(make: Callable[[], Session], count: int, measure: Callable[[], int]) -> int:
    """Open ``count`` sessions (held in a list, as a gateway holds them); how much ``measure()`` grew."""
    gc.collect()
    before = measure()
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(make())
        gc.collect()
        return measure() - before


async def _memory_child(url: str, count: int, protocol: str, otel: bool) -> None:
    """In a fresh process: memory per idle `Session` sharing one connected client."""
    if otel:
        _install_tracer_provider()
    policy = HeaderPolicy.smg()
    config = ServerConfig(name="oci", url=url, protocol=protocol, forward=True, header_delivery="meta")
    results: dict[str, float] = {}
    async with McpClient(config) as shared:
        kinds: dict[str, Callable[[], Session]] = {
            "bare": lambda: Session(clients=[shared]),
            "hooks": lambda: Session(clients=[shared], hooks=[ForwardHeaders(policy), TraceTurns()]),
        }
        for kind, make in kinds.items():
            await _hold(make, min(50, count), _rss_bytes)  # warm up
            results[f"{kind}_rss"] = await _hold(make, count, _rss_bytes) / count
            tracemalloc.start()
            results[f"{kind}_heap"] = await _hold(make, count, _traced) / count
            tracemalloc.stop()
    print(json.dumps(results))


async def _memory(args: argparse.Namespace, server: Any) -> bool:
    command = [sys.executable, "-m", "bench.gateway", "--child", "--url", server.url]
    command += ["--sessions", str(args.sessions), "--protocol", args.protocol, "--backend", args.backend]
    if not args.otel:
        command.append("--no-otel")
    done = await anyio.run_process(command, check=True)
    got = json.loads(done.stdout.decode().strip().splitlines()[-1])
    print(
        f"(b) {args.sessions:,} idle sessions open at once, all sharing one connected McpClient, "
        "per session (KiB)"
    )
    print(f"    {'':<50} {'RSS delta':>9}   Python heap (tracemalloc)")
    label = "Session(clients=[shared])"
    print(f"    {label:<50} {got['bare_rss'] / 1024:9.1f}   {got['bare_heap'] / 1024:9.1f}")
    label = "same + ForwardHeaders, TraceTurns (session span)"
    print(f"    {label:<50} {got['hooks_rss'] / 1024:9.1f}   {got['hooks_heap'] / 1024:9.1f}")
    worst = max(got["hooks_rss"], got["hooks_heap"]) / 1024
    ok = worst < MEMORY_GOAL_KIB
    print(f"    goal < {MEMORY_GOAL_KIB:g} KiB per session with the hooks: {'ok' if ok else 'ABOVE GOAL'}")
    return ok


async def _run(args: argparse.Namespace) -> int:
    print(
        f"bench gateway: python {platform.python_version()}, {os.cpu_count()} CPUs, backend {args.backend}, "
        f"protocol {args.protocol}, OpenTelemetry SDK {'on' if args.otel else 'off'}"
    )
    async with RecordingServer.subprocess("gateway") as server:
        if args.requests:
            await _throughput(args, server)
        if args.sessions:
            await _memory(args, server)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gateway", description=DESCRIPTION)
    parser.add_argument("--callers", type=int, default=50, help="concurrent callers (default 50)")
    parser.add_argument(
        "--requests", type=int, default=10, help="requests per caller per round (default 10; 0 skips (a))"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    parser.add_argument(
        "--sessions", type=int, default=1000, help="idle sessions in (b) (default 1000; 0 skips)"
    )
    parser.add_argument("--protocol", choices=("auto", "legacy"), default="auto")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--no-otel", dest="otel", action="store_false", help="no OpenTelemetry SDK")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.callers < 1 or args.rounds < 1 or args.requests < 0 or args.sessions < 0:
        parser.error("counts must be positive")
    if args.child:
        anyio.run(_memory_child, args.url, args.sessions, args.protocol, args.otel, backend=args.backend)
        return 0
    if args.otel:
        _install_tracer_provider()
    result: int = anyio.run(partial(_run, args), backend=args.backend)
    return result


if __name__ == "__main__":
    sys.exit(main())

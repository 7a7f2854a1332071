"""Turn overhead and idle-session memory.

(a) Turn start+end with `TurnHeaders` on 10 Apps clients, no network: the clients are
built from `ServerConfig`s but never connected (turn entries live on the client object),
and given to the `Session` as shared clients. Each turn is ``async with session.turn():``
with an empty body. Baseline, side by side in alternating rounds: the same turn on a
session without hooks or clients. Also shown: ``start_turn`` + ``wait`` (a task per turn).

(b) Idle sessions: N `Session`\\ s open at once in this process, each owning one
`McpClient` connected to one shared recording server (in its own process, protocol
"auto" = stateless). Memory per session, as the RSS delta and as the Python heap delta
(tracemalloc, a second pass); baseline: the same number of bare connected `McpClient`\\ s.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import anyio

from codex_runtime import McpClient, ServerConfig, Session, Turn, TurnHeaders
from codex_runtime.testing import RecordingServer

DESCRIPTION = "turn start+end with TurnHeaders on 10 Apps clients; memory of 1,000 idle sessions"

TURN_GOAL_US = 100.0


# -- (a) turn overhead ---------------------------------------------------------------------------


def _apps_clients(count: int) -> list[McpClient]:
    return [
        McpClient(ServerConfig(name=f"apps{i}", url=f"http://127.0.0.1:9/apps{i}", apps=True))
        for i in range(count)
    ]


async def _time_turns(session: Session, count: int, into: list[float]) -> None:
    metadata = {"model": "gpt-x", "reasoning_effort": "high"}
    for _ in range(count):
        start = time.perf_counter()
        async with session.turn(metadata=metadata):
            pass
        into.append(time.perf_counter() - start)


async def _time_started_turns(session: Session, count: int, into: list[float]) -> None:
    async def body(turn: Turn) -> None:
        pass

    for _ in range(count):
        start = time.perf_counter()
        handle = await session.start_turn(body, metadata={"model": "gpt-x"})
        await handle.wait()
        into.append(time.perf_counter() - start)


def _us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def _turn_overhead(args: argparse.Namespace) -> bool:
    clients = _apps_clients(args.clients)
    async with (
        Session() as bare,
        Session(clients=clients, hooks=[TurnHeaders()]) as apps,
        Session(clients=_apps_clients(args.clients), hooks=[TurnHeaders()]) as started,
    ):
        # Sanity: the entries really are set during a turn and cleared after it.
        async with apps.turn() as turn:
            assert all(c.turn_entry_ids() == {turn.id} for c in clients)
        assert all(not c.turn_entry_ids() for c in clients)

        sides: dict[str, tuple[Session, Callable[[Session, int, list[float]], Awaitable[None]]]] = {
            "baseline": (bare, _time_turns),
            "apps": (apps, _time_turns),
            "start_turn": (started, _time_started_turns),
        }
        for session, timer in sides.values():
            await timer(session, args.warmup, [])
        samples: dict[str, list[float]] = {name: [] for name in sides}
        per_round = max(1, args.turns // args.rounds)
        for _ in range(args.rounds):
            for name, (session, timer) in sides.items():
                await timer(session, per_round, samples[name])

    baseline, with_hooks, task = (_us(samples[n]) for n in ("baseline", "apps", "start_turn"))
    ok = with_hooks < TURN_GOAL_US
    print(f"(a) turn start+end, no network ({len(samples['apps'])} turns per side, median)")
    print(f"    baseline: session without hooks or clients  {baseline:8.1f} us/turn")
    print(f"    TurnHeaders on {args.clients} Apps clients          {with_hooks:8.1f} us/turn")
    print(f"    ratio                                      {with_hooks / baseline:8.2f}x")
    print(f"    start_turn + wait, same hooks              {task:8.1f} us/turn")
    print(f"    goal: < {TURN_GOAL_US:.0f} us/turn with TurnHeaders -> {'met' if ok else 'NOT met'}")
    return ok


# -- (b) idle sessions ---------------------------------------------------------------------------


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best we have
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0]


async def _hold_open(
    make: Callable[[], Any], count: int, concurrency: int, measure: Callable[[], int]
) -> int:
    """Open ``count`` objects at once (``concurrency`` connecting at a time), then close them.

    Returns how much ``measure()`` grew from before the first was made to when all were
    open and idle.
    """
    gc.collect()
    before = measure()
    opened = 0
    all_open = anyio.Event()
    close = anyio.Event()
    limiter = anyio.CapacityLimiter(concurrency)

    async def hold() -> None:
        nonlocal opened
        obj = make()
        async with limiter:
            await obj.__aenter__()
        try:
            opened += 1
            if opened == count:
                all_open.set()
            await close.wait()
        finally:
            await obj.__aexit__(None, None, None)

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(hold)
        await all_open.wait()
        gc.collect()
        after = measure()
        close.set()
    return after - before


async def _measure_child(kind: str, url: str, count: int, concurrency: int) -> None:
    """In a fresh process: memory per open object of ``kind``, as RSS and as Python heap."""
    config = ServerConfig(name="tools", url=url, protocol="auto")
    make: Callable[[], Any] = (
        (lambda: Session([config])) if kind == "session" else (lambda: McpClient(config))
    )
    await _hold_open(make, min(20, count), concurrency, _rss_bytes)  # warm up: imports, caches
    rss = await _hold_open(make, count, concurrency, _rss_bytes)
    tracemalloc.start()
    heap = await _hold_open(make, count, concurrency, _traced)
    tracemalloc.stop()
    print(json.dumps({"rss": rss / count, "heap": heap / count}))


async def _idle_sessions(args: argparse.Namespace) -> None:
    n = args.sessions
    results: dict[str, dict[str, float]] = {}
    async with RecordingServer.subprocess("bench") as server:

        async def measure(kind: str) -> None:
            command = [sys.executable, "-m", "bench.turns", "--child", kind, "--url", server.url]
            command += [
                "--sessions",
                str(n),
                "--concurrency",
                str(args.concurrency),
                "--backend",
                args.backend,
            ]
            done = await anyio.run_process(command, check=True)
            results[kind] = json.loads(done.stdout.decode().strip().splitlines()[-1])

        # Each kind in its own fresh process (so memory freed by one cannot serve the other).
        async with anyio.create_task_group() as tg:
            tg.start_soon(measure, "client")
            tg.start_soon(measure, "session")

    client, session = results["client"], results["session"]

    def row(label: str, rss: float, heap: float, unit: str = "") -> None:
        print(f"    {label:<38} {rss:9.1f}{unit or ' '}  {heap:9.1f}{unit}")

    print(f"(b) {n:,} idle objects open at once in one process, each with its own connection")
    print(f"    to one shared server, per object (KiB)  {'RSS delta':>9}   Python heap (tracemalloc)")
    row("baseline: bare McpClient", client["rss"] / 1024, client["heap"] / 1024)
    row("Session owning one McpClient", session["rss"] / 1024, session["heap"] / 1024)
    row("ratio", session["rss"] / client["rss"], session["heap"] / client["heap"], "x")
    total_rss, total_heap = session["rss"] * n / 2**20, session["heap"] * n / 2**20
    print(f"    {n:,} idle sessions in all: {total_rss:.1f} MiB RSS, {total_heap:.1f} MiB Python heap")


# -- entry point ---------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    print(f"bench turns: Python {platform.python_version()}, backend {args.backend}, {os.cpu_count()} CPUs")
    ok = await _turn_overhead(args)
    if args.sessions:
        await _idle_sessions(args)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench turns", description=DESCRIPTION)
    parser.add_argument("--turns", type=int, default=5000, help="measured turns per side (default 5000)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds (default 10)")
    parser.add_argument(
        "--warmup", type=int, default=200, help="unmeasured turns per side first (default 200)"
    )
    parser.add_argument("--clients", type=int, default=10, help="Apps clients in (a) (default 10)")
    parser.add_argument("--sessions", type=int, default=1000, help="idle sessions in (b); 0 skips (b)")
    parser.add_argument("--concurrency", type=int, default=50, help="sessions connecting at once in (b)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--child", choices=("client", "session"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        anyio.run(_measure_child, args.child, args.url, args.sessions, args.concurrency, backend=args.backend)
        return 0
    if args.turns < 1 or args.rounds < 1 or args.clients < 1 or args.sessions < 0 or args.concurrency < 1:
        parser.error("counts must be positive")
    result: int = anyio.run(partial(_run, args), backend=args.backend)
    return result


if __name__ == "__main__":
    sys.exit(main())

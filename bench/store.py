"""What the session store and durable turns cost, side by side with a plain session.

(a) An agent turn of 5 tool calls (a scripted model: 5 ``echo`` calls one after another,
then an answer) against a recording MCP server in its own process. Sides, in alternating
rounds: a plain `Session`; the same with a `SqliteStore` (goal: under 5% more per turn).
(b) The same turn as a durable turn (`DurableRuntime`, DBOS on SQLite), end to end
(queued, run, result read back) and inside the workflow (the turn's own duration).
(c) Recovery: a worker process killed after the 3rd tool call of a turn; a new process
finishes it. Time from the new process's start to the turn's end, against a new process
on the same databases running a new turn of the same shape.
(d) With ``--postgres URL``: turns per second with 1 and with 2 worker processes sharing
one PostgreSQL database (16 sessions, turns queued all at once).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from codex_runtime import ServerConfig, Session, SqliteStore
from codex_runtime.agent import AgentEvent, AgentLoop, ModelRequest, ModelResponse, ToolCall, ToolCallFinished
from codex_runtime.store import SessionStore
from codex_runtime.testing import RecordingServer

DESCRIPTION = "session store and durable turns against a plain session; recovery; turns/s on Postgres"

STORE_GOAL = 0.05
CALLS = 5


class StepModel:
    """Model call 1 asks for ``CALLS`` echo calls, call 2 answers: the same on every run."""

    async def respond(self, request: ModelRequest) -> ModelResponse:
        if request.step == 1:
            calls = [ToolCall("tools__echo", {"text": f"call {i}"}) for i in range(CALLS)]
            return ModelResponse(tool_calls=tuple(calls))
        return ModelResponse(text="done")


def _config(url: str) -> ServerConfig:
    return ServerConfig(name="tools", url=url)


def _ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


# -- (a) store overhead ----------------------------------------------------------------------------


async def _store_overhead(args: argparse.Namespace, url: str, tmp: Path) -> tuple[float, float]:
    samples: dict[str, list[float]] = {"plain": [], "store": []}
    async with SqliteStore(tmp / "a.db") as store:
        async with Session([_config(url)]) as plain, Session([_config(url)], store=store) as stored:
            loops = {
                "plain": AgentLoop(plain, StepModel(), parallel_tool_calls=False),
                "store": AgentLoop(stored, StepModel(), parallel_tool_calls=False),
            }
            for loop in loops.values():
                for _ in range(args.warmup):
                    await loop.run_turn("go")
                    loop.reset()
            per_round = max(1, args.turns // args.rounds)
            for _ in range(args.rounds):
                for name, loop in loops.items():
                    for _ in range(per_round):
                        start = time.perf_counter()
                        await loop.run_turn("go")
                        samples[name].append(time.perf_counter() - start)
                        loop.reset()  # the same conversation length every turn
        # The session wrote everything by the time it closed.
        recorded = await store.get_session(stored.session_id)
        assert recorded is not None and all(t.state == "completed" for t in recorded.turns)
        assert len(await store.tool_calls(recorded.turns[-1].turn_id)) == CALLS
    plain_ms, store_ms = _ms(samples["plain"]), _ms(samples["store"])
    extra = store_ms / plain_ms - 1
    print(
        f"(a) agent turn of {CALLS} tool calls on loopback ({len(samples['plain'])} turns per side, median)"
    )
    print(f"    plain session                         {plain_ms:8.2f} ms/turn")
    print(f"    session with SqliteStore              {store_ms:8.2f} ms/turn")
    print(
        f"    store overhead                        {extra * 100:8.1f} %  (goal < {STORE_GOAL:.0%}: "
        f"{'met' if extra < STORE_GOAL else 'NOT met'})"
    )
    return plain_ms, store_ms


# -- (b) durable overhead --------------------------------------------------------------------------


async def _durable_overhead(args: argparse.Namespace, url: str, tmp: Path, plain_ms: float) -> None:
    from codex_runtime.durable import DurableRuntime

    def sessions(session_id: str, settings: Mapping[str, Any], store: SessionStore) -> Session:
        return Session([_config(url)], store=store, session_id=session_id)

    durations: list[float] = []
    totals: list[float] = []
    async with (
        SqliteStore(tmp / "b.db") as store,
        DurableRuntime(
            store,
            sessions=sessions,
            models=lambda s: StepModel(),
            loop_options={"parallel_tool_calls": False},
        ) as runtime,
    ):
        for i in range(args.durable_turns + 2):
            start = time.perf_counter()
            result = await runtime.run_turn(f"s{i % 4}", "go")
            elapsed = time.perf_counter() - start
            assert result.state.value == "completed", result
            if i >= 2:  # the first turns of a session open it
                totals.append(elapsed)
        for stored in await store.list_sessions():
            for turn in stored.turns[1:]:
                if turn.ended_at is not None:
                    durations.append(turn.ended_at - turn.started_at)
    inner, total = _ms(durations), _ms(totals)
    print(f"(b) the same turn durable (DBOS on SQLite, {len(totals)} turns, median)")
    print(f"    inside the workflow (turn start..end) {inner:8.2f} ms/turn  ({inner / plain_ms:.2f}x plain)")
    print(f"    end to end (queue, run, result)       {total:8.2f} ms/turn  ({total / plain_ms:.2f}x plain)")
    print(f"    (end to end includes the queue's {args.poll * 1e3:.0f} ms polling, twice)")


# -- worker processes for (c) and (d) --------------------------------------------------------------


def _worker_command(args: argparse.Namespace, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench.store", "--worker", *extra, "--poll", str(args.poll)]


async def _worker(args: argparse.Namespace) -> None:
    """One worker process: ``--submit`` a turn (maybe killed after a tool call), ``--drain``,
    or ``--serve`` until stdin closes."""
    from codex_runtime.durable import DurableRuntime

    finished = 0

    async def on_event(event: AgentEvent) -> None:
        nonlocal finished
        if isinstance(event, ToolCallFinished):
            finished += 1
            if finished == args.kill_after_tool:
                os.kill(os.getpid(), signal.SIGKILL)

    def sessions(session_id: str, settings: Mapping[str, Any], store: SessionStore) -> Session:
        return Session([_config(settings["url"])], store=store, session_id=session_id)

    store = SqliteStore(args.store)
    runtime = DurableRuntime(
        store,
        sessions=sessions,
        models=lambda s: StepModel(),
        database_url=args.database,
        executor_id=args.executor,
        loop_options={"parallel_tool_calls": False, "on_event": on_event},
        poll_interval=args.poll,
    )
    async with store, runtime:
        print(json.dumps({"ready": time.time()}), flush=True)
        if args.submit:
            turn_id = await runtime.submit_turn("s1", "go", settings={"url": args.url})
            print(json.dumps({"submitted": turn_id}), flush=True)
            await runtime.result(turn_id)
        elif args.drain:
            for turn_id in await runtime.unfinished_turns():
                await runtime.result(turn_id)
        else:
            await anyio.to_thread.run_sync(sys.stdin.read)
        print(json.dumps({"done": time.time()}), flush=True)


async def _timed(command: list[str]) -> tuple[float, float, int]:
    """Run a worker; return (seconds from start to its turn's end, from its runtime's start
    to that end, exit code)."""
    start = time.time()
    done = await anyio.run_process(command, check=False)
    lines = [json.loads(x) for x in done.stdout.decode().splitlines() if x.startswith("{")]
    ready = next((x["ready"] for x in lines if "ready" in x), start)
    end = next((x["done"] for x in lines if "done" in x), time.time())
    return end - start, end - ready, done.returncode


async def _recovery(args: argparse.Namespace, url: str, tmp: Path) -> None:
    fresh: list[tuple[float, float]] = []
    recovered: list[tuple[float, float]] = []
    for i in range(args.recoveries):
        store = str(tmp / f"c{i}.db")
        base = ["--store", store, "--url", url]
        _, _, code = await _timed(_worker_command(args, *base, "--submit", "--kill-after-tool", "3"))
        assert code == -signal.SIGKILL, code
        total, inner, code = await _timed(_worker_command(args, *base, "--drain"))
        assert code == 0
        recovered.append((total, inner))
        # Baseline: a new process on the same (existing) databases running a new turn.
        total, inner, code = await _timed(_worker_command(args, *base, "--submit"))
        assert code == 0
        fresh.append((total, inner))

    def median(pairs: list[tuple[float, float]], index: int) -> float:
        return statistics.median(p[index] for p in pairs)

    print(
        f"(c) a worker killed after tool call 3 of {CALLS}; a new process finishes the turn "
        f"({args.recoveries} runs)"
    )
    print("                                        process start..end   runtime start..end")
    print(
        f"    new process, a fresh turn            {median(fresh, 0):8.2f} s           "
        f"{median(fresh, 1):8.3f} s"
    )
    print(
        f"    new process, recovering the turn     {median(recovered, 0):8.2f} s           "
        f"{median(recovered, 1):8.3f} s"
    )


async def _throughput(args: argparse.Namespace, url: str, tmp: Path) -> None:
    from dbos import DBOSClient, DBOSPortableJSONSerializer, EnqueueOptions, WorkflowSerializationFormat

    from codex_runtime.durable import QUEUE_NAME, WORKFLOW_NAME

    async def run(workers: int) -> float:
        database = args.postgres.rsplit("/", 1)[0] + f"/bench_{uuid.uuid4().hex[:10]}"
        store = str(tmp / f"d{workers}.db")
        procs = []
        for w in range(workers):
            command = _worker_command(args, "--store", store, "--url", url, "--database", database)
            procs.append(await anyio.open_process([*command, "--serve", "--executor", f"w{w}"]))
        try:
            for proc in procs:
                assert proc.stdout is not None
                await proc.stdout.receive()  # ready
            client = DBOSClient(system_database_url=database, serializer=DBOSPortableJSONSerializer())
            ids = []
            start = time.perf_counter()
            for i in range(args.pg_turns):
                turn_id = uuid.uuid4().hex
                options: EnqueueOptions = {
                    "workflow_name": WORKFLOW_NAME,
                    "queue_name": QUEUE_NAME,
                    "workflow_id": turn_id,
                    "queue_partition_key": f"s{i % 16}",
                    "serialization_type": WorkflowSerializationFormat.PORTABLE,
                }
                await anyio.to_thread.run_sync(
                    partial(client.enqueue, options, f"s{i % 16}", "go", {"url": url}, {})
                )
                ids.append(turn_id)
            for turn_id in ids:
                result = await anyio.to_thread.run_sync(
                    partial(client.retrieve_workflow(turn_id).get_result, polling_interval_sec=0.05)
                )
                assert result["state"] == "completed", result
            elapsed = time.perf_counter() - start
            client.destroy()
            return args.pg_turns / elapsed
        finally:
            for proc in procs:
                assert proc.stdin is not None
                await proc.stdin.aclose()
            for proc in procs:
                with anyio.move_on_after(30):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()

    one = await run(1)
    two = await run(2)
    print(f"(d) {args.pg_turns} turns of {CALLS} tool calls over 16 sessions, queued at once on PostgreSQL")
    print(f"    1 worker                              {one:8.1f} turns/s")
    print(f"    2 workers                             {two:8.1f} turns/s  ({two / one:.2f}x)")


# -- entry point -------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> int:
    print(f"bench store: Python {platform.python_version()}, asyncio, {os.cpu_count()} CPUs")
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-store-") as name:
        tmp = Path(name)
        async with RecordingServer.subprocess("tools") as server:
            plain_ms, store_ms = await _store_overhead(args, server.url, tmp)
            ok = store_ms / plain_ms - 1 < STORE_GOAL
            if args.durable_turns:
                await _durable_overhead(args, server.url, tmp, plain_ms)
            if args.recoveries:
                await _recovery(args, server.url, tmp)
            if args.postgres:
                await _throughput(args, server.url, tmp)
            else:
                print("(d) skipped: give --postgres URL (or set CODEX_RUNTIME_TEST_POSTGRES)")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench store", description=DESCRIPTION)
    parser.add_argument("--turns", type=int, default=300, help="measured turns per side in (a)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds in (a)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured turns per side first")
    parser.add_argument("--durable-turns", type=int, default=40, help="turns in (b); 0 skips (b)")
    parser.add_argument("--recoveries", type=int, default=3, help="kill/recover runs in (c); 0 skips (c)")
    parser.add_argument("--postgres", default=os.environ.get("CODEX_RUNTIME_TEST_POSTGRES"), metavar="URL")
    parser.add_argument("--pg-turns", type=int, default=64, help="turns in (d)")
    parser.add_argument("--poll", type=float, default=0.05, help="queue polling interval (s)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--executor", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--submit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--drain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kill-after-tool", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        anyio.run(_worker, args)
        return 0
    if args.turns < 1 or args.rounds < 1:
        parser.error("counts must be positive")
    result: int = anyio.run(partial(_run, args))
    return result


if __name__ == "__main__":
    sys.exit(main())

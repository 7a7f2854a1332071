"""Isolation under random interleavings: does any request carry headers of another scope?

Three `Session`\\ s share three `McpClient`\\ s: two first-party "Apps" servers (which get
`TurnHeaders` entries) and one third-party server with ``forward=True`` (which gets the
caller's delegation token from `ForwardHeaders`, and must never get Apps entries). One
driver task per session performs random operations, seeded:

* start a turn, or replace the running one (start another while it runs);
* end it normally, or interrupt it;
* tool calls from inside the turn, by ``turn.call_tool`` or by the shared client directly
  from a task the turn body spawned (bound to the turn by the context it inherits), many
  in flight at once;
* background tasks that a turn body spawns into a task group outliving the turn, which
  wait until that turn has ended and then call a client directly: they still run "in"
  the ended turn's context, and must carry *no* turn entries;
* "racers": such tasks that call at once, racing the turn's end: each carries its turn's
  whole entries or none, never another turn's nor a part of them;
* calls from outside any turn;
* call-scoped headers on any of these (``call_tool(headers=...)``, a `request_headers`
  block, or both), sometimes overriding the forwarded delegation token.

Every call carries a unique tag in its arguments, and what it must carry is written down
when it is issued. At the end, every ``tools/call`` each server recorded is checked
against that: turn entries of exactly its own turn (or none), its own call headers, in
the server's delivery (HTTP headers, ``_meta.extra_headers``, or both), and Apps
``_meta`` only on Apps servers. Every call that returned must have been recorded once.

    python -m bench isolation [--ops 10000] [--seed N] [--backend asyncio|trio]

prints ``N requests, 0 leaked`` (or the leaks) and exits 1 on any leak.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # `python bench/isolation.py` from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from codex_runtime import (
    ForwardHeaders,
    McpClient,
    ServerConfig,
    Session,
    Turn,
    TurnAbortedError,
    TurnHandle,
    TurnHeaders,
    TurnStateError,
    request_headers,
)
from codex_runtime.testing import RecordedRequest, RecordingServer

DESCRIPTION = "random interleavings of turns, calls and background tasks on shared clients: leaked headers"

TOKEN = "x-smg-oci-delegation-token"
TURN_METADATA = "x-codex-turn-metadata"
#: Every header name that some layer under test may set: each is compared on every record.
CONTROLLED = ("session_id", TURN_METADATA, TOKEN, "x-call-tag", "x-call-scope")
MODES: tuple[Literal["headers", "meta", "both"], ...] = ("headers", "meta", "both")  # of sessions 0, 1, 2
MAX_IN_FLIGHT = 24
#: One ForwardHeaders for every session, as a gateway shares it: its state is keyed by turn.
FORWARD = ForwardHeaders()

#: (config name, apps, forward, header_delivery, protocol)
SERVERS: tuple[tuple[str, bool, bool, Literal["http", "meta", "both"], Literal["auto", "legacy"]], ...] = (
    ("apps-a", True, False, "http", "legacy"),
    ("apps-b", True, False, "meta", "auto"),
    ("third", False, True, "both", "auto"),
)

OP_WEIGHTS: dict[str, int] = {
    "start": 6,
    "replace": 3,
    "end": 5,
    "interrupt": 3,
    "turn_call": 26,
    "direct_call": 10,
    "background": 8,
    "racer": 4,
    "outside_call": 8,
    "yield": 6,
    "settle": 2,
}


@attrs.frozen
class Expected:
    """What the call tagged ``tag`` must carry, written down when it is issued."""

    tag: str
    server: str
    kind: str  # turn_call, direct_call, background, racer, outside_call
    session: int | None
    turn_key: int | None  # the driver's number for the turn whose entries it carries
    explicit: Mapping[str, str]  # passed as call_tool(headers=...)
    scoped: Mapping[str, str]  # set by a request_headers block around the call

    @property
    def call_headers(self) -> dict[str, str]:
        """The call layer as sent: ``headers=`` wins over the enclosing block per name."""
        return {**self.scoped, **self.explicit}


@attrs.define
class IsolationResult:
    """The outcome of one run."""

    seed: int
    ops: Counter[str]
    requests: int = 0
    leaks: list[str] = attrs.field(factory=list)
    lost: list[str] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)
    stale_entries: list[str] = attrs.field(factory=list)
    completed: int = 0
    returned_by_kind: Counter[str] = attrs.field(factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.leaks or self.lost or self.errors or self.stale_entries)

    def summary(self) -> str:
        return f"{self.requests} requests, {len(self.leaks)} leaked"

    def report(self, limit: int = 20) -> str:
        lines = [self.summary()]
        for label, items in (
            ("leaked", self.leaks),
            ("lost (returned but never recorded)", self.lost),
            ("unexpected errors", self.errors),
            ("turn entries left on clients", self.stale_entries),
        ):
            if items:
                lines.append(f"{len(items)} {label}:")
                lines.extend(f"  {item}" for item in items[:limit])
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        return "\n".join(lines)


@attrs.define
class _Live:
    """A running turn, as its driver sees it."""

    key: int
    handle: TurnHandle
    inbox: MemoryObjectSendStream[Expected | None]


class _Run:
    def __init__(self, clients: Mapping[str, McpClient], ops: int, seed: int) -> None:
        self.clients = clients
        self.total_ops = ops
        self.seed = seed
        self.result = IsolationResult(seed=seed, ops=Counter())
        self.expected: dict[str, Expected] = {}
        self.returned: set[str] = set()
        self.turn_ids: dict[int, str] = {}
        self.session_ids: dict[int, str] = {}
        self.sessions: list[Session] = []
        self.live: dict[int, _Live] = {}
        self.in_flight = 0
        self._changed = anyio.Event()
        self._tags = 0
        self._turns = 0
        self._background: anyio.abc.TaskGroup | None = None

    # -- bookkeeping -----------------------------------------------------------------

    def _new_tag(self) -> str:
        self._tags += 1
        return f"t{self._tags}"

    def _begin_call(self) -> None:
        self.in_flight += 1

    def _end_call(self) -> None:
        self.in_flight -= 1
        self._changed.set()
        self._changed = anyio.Event()

    async def _wait_in_flight(self, at_most: int) -> None:
        while self.in_flight > at_most:
            await self._changed.wait()

    def _plan(self, rng: random.Random, kind: str, session: int | None, turn_key: int | None) -> Expected:
        tag = self._new_tag()
        server = rng.choice([name for name, *_ in SERVERS])
        explicit: dict[str, str] = {}
        scoped: dict[str, str] = {}
        style = rng.choice(("none", "explicit", "scoped", "both"))
        if style in ("explicit", "both"):
            explicit["x-call-tag"] = f"tag-{tag}"
        if style in ("scoped", "both"):
            scoped["x-call-scope"] = f"scope-{tag}"
        if rng.random() < 0.1:
            # The call layer wins over the turn's forwarded token.
            rng.choice((explicit, scoped))[TOKEN] = f"call-token-{tag}"
        expected = Expected(tag, server, kind, session, turn_key, explicit, scoped)
        self.expected[tag] = expected
        return expected

    # -- calls -------------------------------------------------------------------------

    async def _call(self, expected: Expected, turn: Turn | None) -> None:
        """Issue one planned call: through ``turn`` when given, else the client directly."""
        headers, scoped = expected.explicit, expected.scoped
        arguments = {"text": expected.tag}
        self._begin_call()
        try:
            with request_headers(scoped) if scoped else contextlib.nullcontext():
                if turn is not None:
                    result = await turn.call_tool(expected.server, "echo", arguments, headers=headers or None)
                else:
                    client = self.clients[expected.server]
                    result = await client.call_tool("echo", arguments, headers=headers or None)
            if result.is_error:
                self.result.errors.append(f"{expected.tag}: tool error {result.content!r}")
            else:
                self.returned.add(expected.tag)
        except (TurnAbortedError, TurnStateError):
            pass  # the turn was aborted first: the call may or may not have been sent
        except Exception as exc:
            self.result.errors.append(f"{expected.tag} ({expected.kind}): {type(exc).__name__}: {exc}")
        finally:
            self._end_call()

    async def _background_call(self, expected: Expected, turn: Turn) -> None:
        # Spawned by the turn body: this task inherited the turn binding. It calls only
        # once that turn has ended, so it must carry no turn entries.
        await turn.wait_ended()
        await self._call(expected, None)

    # -- turns -------------------------------------------------------------------------

    async def _body(self, turn: Turn, inbox: MemoryObjectReceiveStream[Expected | None]) -> None:
        assert self._background is not None
        async with anyio.create_task_group() as tg:
            async for expected in inbox:
                if expected is None:
                    break  # end the turn once the calls already issued have returned
                if expected.kind == "turn_call":
                    tg.start_soon(self._call, expected, turn)
                elif expected.kind == "direct_call":
                    tg.start_soon(self._call, expected, None)
                elif expected.kind == "racer":
                    self._background.start_soon(self._call, expected, None)
                else:
                    self._background.start_soon(self._background_call, expected, turn)

    async def _start(self, index: int) -> None:
        self._turns += 1
        key = self._turns
        send, receive = anyio.create_memory_object_stream[Expected | None](math.inf)
        session = self.sessions[index]
        previous = self.live.pop(index, None)

        async def body(turn: Turn) -> None:
            self.turn_ids[key] = turn.id
            with receive:
                await self._body(turn, receive)

        handle = await session.start_turn(
            body,
            metadata={"model": f"m-{key}"},
            forwarded_headers=[(TOKEN, f"tok-{key}"), ("authorization", f"Bearer caller-{key}")],
        )
        self.turn_ids[key] = handle.turn.id
        if previous is not None:
            previous.inbox.close()  # replaced: its end hooks have run
        self.live[index] = _Live(key, handle, send)

    async def _end(self, index: int, interrupt: bool) -> None:
        live = self.live.pop(index)
        if interrupt:
            live.handle.interrupt()
        else:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                live.inbox.send_nowait(None)
        await live.handle.wait()
        live.inbox.close()

    async def _send_to_turn(self, index: int, expected: Expected) -> None:
        live = self.live[index]
        if live.handle.done:
            return
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            live.inbox.send_nowait(expected)

    # -- drivers -----------------------------------------------------------------------

    async def _drive(self, index: int, ops: int) -> None:
        rng = random.Random(f"{self.seed}-{index}")
        names = list(OP_WEIGHTS)
        weights = list(OP_WEIGHTS.values())
        assert self._background is not None
        for _ in range(ops):
            op = rng.choices(names, weights)[0]
            live = self.live.get(index)
            if live is not None and live.handle.done:
                # Ended on its own (a failed start or body): forget it.
                self.live.pop(index)
                live.inbox.close()
                live = None
            if (
                op in ("end", "interrupt", "replace", "turn_call", "direct_call", "background", "racer")
                and live is None
            ):
                op = "start"
            elif op == "start" and live is not None:
                op = "turn_call"
            self.result.ops[op] += 1
            await self._wait_in_flight(MAX_IN_FLIGHT)
            if op in ("start", "replace"):
                await self._start(index)
            elif op in ("end", "interrupt"):
                await self._end(index, interrupt=op == "interrupt")
            elif op in ("turn_call", "direct_call", "background", "racer"):
                assert live is not None
                await self._send_to_turn(index, self._plan(rng, op, index, live.key))
            elif op == "outside_call":
                self._background.start_soon(self._call, self._plan(rng, op, None, None), None)
            elif op == "yield":
                for _ in range(rng.randint(1, 5)):
                    await anyio.lowlevel.checkpoint()
            elif op == "settle":
                await self._wait_in_flight(rng.randint(0, 4))
            # One scheduling step for the other tasks (turn bodies, calls, other drivers).
            await anyio.lowlevel.checkpoint()
        if index in self.live:
            await self._end(index, interrupt=rng.random() < 0.5)

    async def run(self) -> None:
        started = time.perf_counter()
        clients = list(self.clients.values())
        async with anyio.create_task_group() as background:
            self._background = background
            async with contextlib.AsyncExitStack() as stack:
                for index, mode in enumerate(MODES):
                    session = Session(
                        clients=clients,
                        hooks=[TurnHeaders(mode), FORWARD],
                        session_id=f"session-{index}-{self.seed}",
                        abort_grace=0,
                    )
                    self.sessions.append(await stack.enter_async_context(session))
                    self.session_ids[index] = session.session_id
                share, extra = divmod(self.total_ops, len(MODES))
                async with anyio.create_task_group() as drivers:
                    for index in range(len(MODES)):
                        drivers.start_soon(self._drive, index, share + (1 if index < extra else 0))
        self.result.seconds = time.perf_counter() - started
        self.result.completed = len(self.returned)
        self.result.returned_by_kind.update(self.expected[tag].kind for tag in self.returned)
        for name, client in self.clients.items():
            if client.turn_entry_ids():
                self.result.stale_entries.append(f"{name}: {sorted(client.turn_entry_ids())}")


# -- checking what servers recorded ---------------------------------------------------------


def _normalized(name: str, value: Any) -> Any:
    """Turn metadata compared by the fields that identify a turn (the JSON text or object)."""
    if name != TURN_METADATA or value is None:
        return value
    data = json.loads(value) if isinstance(value, str) else value
    if not isinstance(data, dict):
        return ("not an object", value)
    return (data.get("session_id"), data.get("thread_id"), data.get("turn_id"), data.get("model"))


Layers = tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]]


def expected_layers(
    expected: Expected, session_ids: Mapping[int, str], turn_ids: Mapping[int, str], *, in_turn: bool
) -> Layers:
    """(HTTP headers, ``_meta.extra_headers`` or None, Apps ``_meta``) the call must carry,
    with its turn's entries when ``in_turn``."""
    _, apps, forward, delivery, _ = next(s for s in SERVERS if s[0] == expected.server)
    turn_headers: dict[str, Any] = {}
    apps_meta: dict[str, Any] = {}
    if in_turn:
        assert expected.session is not None and expected.turn_key is not None
        session_id = session_ids[expected.session]
        turn_id = turn_ids.get(expected.turn_key)
        identity = (session_id, session_id, turn_id, f"m-{expected.turn_key}")
        mode = MODES[expected.session]
        if apps and mode in ("headers", "both"):
            turn_headers.update({"session_id": session_id, TURN_METADATA: identity})
        if apps and mode in ("meta", "both"):
            apps_meta = {TURN_METADATA: identity, "threadId": session_id}
        if forward:
            turn_headers[TOKEN] = f"tok-{expected.turn_key}"
    merged = {**turn_headers, **expected.call_headers}
    http = merged if delivery in ("http", "both") else {}
    extra = (merged or None) if delivery in ("meta", "both") else None
    return http, extra, apps_meta


def check_record(
    record: RecordedRequest,
    server: str,
    expected: Mapping[str, Expected],
    session_ids: Mapping[int, str],
    turn_ids: Mapping[int, str],
) -> str | None:
    """Why ``record`` (a ``tools/call`` recorded by ``server``) is wrong, or None."""
    tag = record.arguments.get("text")
    plan = expected.get(tag) if isinstance(tag, str) else None
    if plan is None:
        return f"{server}: a call nobody made ({tag!r})"
    if plan.server != server:
        return f"{tag} ({plan.kind}): meant for {plan.server}, received by {server}"
    got_http = {n: _normalized(n, record.header(n)) for n in CONTROLLED if record.header(n) is not None}
    got_extra = record.meta.get("extra_headers")
    got_extra_n = None if got_extra is None else {n: _normalized(n, v) for n, v in got_extra.items()}
    got_meta = {k: _normalized(k, record.meta[k]) for k in (TURN_METADATA, "threadId") if k in record.meta}
    if plan.kind in ("turn_call", "direct_call"):
        allowed = [True]
    elif plan.kind == "racer":
        allowed = [True, False]  # sent before or after its turn's end
    else:
        allowed = [False]
    problems: list[str] = []
    for in_turn in allowed:
        http, extra, apps_meta = expected_layers(plan, session_ids, turn_ids, in_turn=in_turn)
        problems = []
        if got_http != http:
            problems.append(f"HTTP {got_http} != {http}")
        if got_extra_n != extra:
            problems.append(f"extra_headers {got_extra_n} != {extra}")
        if got_meta != apps_meta:
            problems.append(f"_meta {got_meta} != {apps_meta}")
        if not problems:
            break
    for n in CONTROLLED:
        if len(record.header_values(n)) > 1:
            problems.append(f"HTTP {n} sent {len(record.header_values(n))} times")
    if problems:
        where = f"session {plan.session}, turn {plan.turn_key}" if plan.turn_key else "no turn"
        return f"{tag} ({plan.kind}, {where}) on {server}: " + "; ".join(problems)
    return None


def check(run: _Run, servers: Mapping[str, RecordingServer]) -> IsolationResult:
    result = run.result
    seen: Counter[str] = Counter()
    for name, server in servers.items():
        for record in server.requests("tools/call"):
            result.requests += 1
            tag = record.arguments.get("text")
            if isinstance(tag, str):
                seen[tag] += 1
            problem = check_record(record, name, run.expected, run.session_ids, run.turn_ids)
            if problem is not None:
                result.leaks.append(problem)
    for tag, count in seen.items():
        if count > 1:
            result.leaks.append(f"{tag}: recorded {count} times (a call was sent again)")
    result.lost.extend(sorted(tag for tag in run.returned if tag not in seen))
    return result


# -- running ---------------------------------------------------------------------------------


@contextlib.contextmanager
def recording_servers() -> Iterator[dict[str, RecordingServer]]:
    """The three recording servers, keyed by the config names in `SERVERS`."""
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(RecordingServer(name)) for name, *_ in SERVERS}


@contextlib.asynccontextmanager
async def connected(servers: Mapping[str, RecordingServer]) -> AsyncIterator[dict[str, McpClient]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, apps, forward, delivery, protocol in SERVERS:
            config = ServerConfig(
                name=name,
                url=servers[name].url,
                apps=apps,
                forward=forward,
                header_delivery=delivery,
                protocol=protocol,
            )
            clients[name] = await stack.enter_async_context(McpClient(config))
        yield clients


async def run_isolation(servers: Mapping[str, RecordingServer], *, ops: int, seed: int) -> IsolationResult:
    """Run ``ops`` random operations (seeded) against ``servers`` and check every record.

    The servers are cleared first. Returns the result; `IsolationResult.ok` is false on
    any leak, lost call, unexpected error or turn entry left behind.
    """
    async with connected(servers) as clients:
        for server in servers.values():
            server.clear()
        run = _Run(clients, ops, seed)
        await run.run()
    return check(run, servers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench isolation", description=DESCRIPTION)
    parser.add_argument("--ops", type=int, default=10_000, help="random operations (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--backend", choices=("asyncio", "trio", "both"), default="asyncio")
    args = parser.parse_args(argv)
    if args.ops < 1:
        parser.error("--ops must be at least 1")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    backends = ("asyncio", "trio") if args.backend == "both" else (args.backend,)
    ok = True
    with recording_servers() as servers:
        for backend in backends:
            result = anyio.run(lambda: run_isolation(servers, ops=args.ops, seed=seed), backend=backend)
            ops = ", ".join(f"{name} {count}" for name, count in sorted(result.ops.items()))
            rate = result.requests / result.seconds if result.seconds else 0.0
            print(f"seed {seed}, {backend}: {args.ops} operations in {result.seconds:.1f} s ({ops})")
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(result.returned_by_kind.items()))
            print(f"{result.completed} calls returned ({kinds}); {rate:.0f} requests/s")
            print(result.report())
            ok = ok and result.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

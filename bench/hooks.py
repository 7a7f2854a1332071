"""Overhead of tool-call hooks per tool call.

(a) The hook machinery alone, no network: ``turn.call_tool`` on a client whose
``call_tool`` answers at once (a subclass of `McpClient` that never connects), so that
microseconds are not lost in a loopback round trip's noise. Sides, measured in alternating
rounds: no hooks (baseline), one allow-all Python hook (``on_tool_call_start`` returning
None and ``on_tool_call_end``), and a `CodexHooks` with no matching command hook.

(b) Real calls to a recording server (in its own process): no hooks, the allow-all Python
hook, and one Codex command hook (``PreToolUse``, ``cat > /dev/null``, so a process is
started, fed the JSON and waited for at every call), side by side.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import anyio
from mcp_types import CallToolResult, TextContent

from codex_runtime import (
    CodexHooks,
    CommandHook,
    McpClient,
    ServerConfig,
    Session,
    ToolCallRecord,
    ToolCallRequest,
    ToolDecision,
    Turn,
)
from codex_runtime.testing import RecordingServer

DESCRIPTION = "per-call overhead of an allow-all Python tool hook and of one Codex command hook"

PYTHON_HOOK_GOAL_US = 10.0


class AllowAll:
    """The cheapest useful hook: sees every call, decides nothing."""

    def __init__(self) -> None:
        self.ended = 0

    async def on_tool_call_start(self, turn: Turn, call: ToolCallRequest) -> ToolDecision | None:
        return None

    async def on_tool_call_end(self, turn: Turn, call: ToolCallRequest, record: ToolCallRecord) -> None:
        self.ended += 1


_RESULT = CallToolResult(content=[TextContent(type="text", text="ok")])


class InstantClient(McpClient):
    """Answers every call at once without a server: only the layers above the client run."""

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None = None, **_: Any
    ) -> CallToolResult:
        await anyio.lowlevel.checkpoint()
        return _RESULT


def _us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def _time_calls(session: Session, server: str, count: int, into: list[float]) -> None:
    async with session.turn() as turn:
        for _ in range(count):
            start = time.perf_counter()
            await turn.call_tool(server, "echo", {"text": "x"})
            into.append(time.perf_counter() - start)


async def _side_by_side(
    sides: dict[str, Session], server: str, calls: int, rounds: int, warmup: int
) -> dict[str, list[float]]:
    for session in sides.values():
        await _time_calls(session, server, warmup, [])
    samples: dict[str, list[float]] = {name: [] for name in sides}
    per_round = max(1, calls // rounds)
    for _ in range(rounds):
        for name, session in sides.items():
            await _time_calls(session, server, per_round, samples[name])
    return samples


async def _machinery(args: argparse.Namespace) -> bool:
    def instant() -> InstantClient:
        return InstantClient(ServerConfig(name="tools", url="http://127.0.0.1:9/mcp"))

    hook = AllowAll()
    async with (
        Session(clients=[instant()]) as bare,
        Session(clients=[instant()], hooks=[hook]) as python,
        Session(clients=[instant()], hooks=[CodexHooks()]) as codex,
    ):
        samples = await _side_by_side(
            {"baseline": bare, "python": python, "codex": codex},
            "tools",
            args.calls,
            args.rounds,
            args.warmup,
        )
    assert hook.ended >= args.calls
    base, py, cx = (_us(samples[n]) for n in ("baseline", "python", "codex"))
    ok = py - base < PYTHON_HOOK_GOAL_US
    n = len(samples["python"])
    print(f"(a) turn.call_tool with an instant client, no network ({n} calls per side, median)")
    print(f"    baseline: no hooks                          {base:8.2f} us/call")
    print(f"    allow-all Python hook (start + end)         {py:8.2f} us/call   +{py - base:.2f} us")
    print(f"    CodexHooks, no matching command hook        {cx:8.2f} us/call   +{cx - base:.2f} us")
    print(f"    goal: Python hook < {PYTHON_HOOK_GOAL_US:.0f} us/call -> {'met' if ok else 'NOT met'}")
    return ok


async def _real_calls(args: argparse.Namespace) -> None:
    command = CommandHook(event="PreToolUse", command="cat > /dev/null", timeout=30)
    async with RecordingServer.subprocess("bench") as server:
        config = ServerConfig(name="tools", url=server.url)
        async with (
            Session([config]) as bare,
            Session([config], hooks=[AllowAll()]) as python,
            Session([config], hooks=[CodexHooks([command], shell=args.shell.split())]) as codex,
        ):
            samples = await _side_by_side(
                {"baseline": bare, "python": python, "codex": codex},
                "tools",
                args.real_calls,
                args.rounds,
                max(1, args.warmup // 20),
            )
    base, py, cx = (_us(samples[n]) for n in ("baseline", "python", "codex"))
    print(
        f"(b) real calls to a recording server in its own process ({len(samples['python'])} per side, median)"
    )
    print(f"    baseline: no hooks                          {base:8.0f} us/call")
    print(f"    allow-all Python hook                       {py:8.0f} us/call   {py / base:5.2f}x")
    print(f"    one command hook ({args.shell} 'cat > /dev/null') {cx:8.0f} us/call   {cx / base:5.2f}x")


async def _run(args: argparse.Namespace) -> int:
    print(f"bench hooks: Python {platform.python_version()}, backend {args.backend}, {os.cpu_count()} CPUs")
    ok = await _machinery(args)
    if args.real_calls:
        await _real_calls(args)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench hooks", description=DESCRIPTION)
    parser.add_argument("--calls", type=int, default=20000, help="calls per side in (a) (default 20000)")
    parser.add_argument("--real-calls", type=int, default=300, help="calls per side in (b); 0 skips (b)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured calls per side first")
    parser.add_argument(
        "--shell",
        default="/bin/sh -c",
        help="the command hook's shell in (b) (default '/bin/sh -c'; Codex's is '$SHELL -lc')",
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.calls < 1 or args.rounds < 1 or args.real_calls < 0 or args.warmup < 1:
        parser.error("counts must be positive")
    result: int = anyio.run(partial(_run, args), backend=args.backend)
    return result


if __name__ == "__main__":
    sys.exit(main())

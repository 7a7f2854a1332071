"""A durable worker process for the crash tests (``python tests/durable_worker.py ...``).

It runs a `DurableRuntime` with a scripted model whose answer depends only on the model
call's step number (so a process started again answers the same), against one MCP server
(``--server URL``, an Apps server with `TurnHeaders`). ``kill`` directives make it SIGKILL
itself at one point of the turn, the first time only (a marker file remembers):

- ``{"kill": "model"}`` as a script step: during that model call;
- ``--kill-after-tool N``: right after the N-th tool call of the turn finished;
- ``--kill-in-end-hook``: during the turn's end hooks.

Modes: ``--submit TEXT`` queues a turn, prints ``{"submitted": turn_id}`` and then its
result; ``--drain`` recovers and waits until no turn is unfinished, printing each result;
``--serve`` works until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from codex_runtime import ServerConfig, Session, SqliteStore, TurnHeaders
from codex_runtime.agent import AgentEvent, ModelRequest, ModelResponse, ToolCall, ToolCallFinished
from codex_runtime.durable import DurableRuntime
from codex_runtime.store import SessionStore


def _die_once(markers: Path, point: str) -> None:
    marker = markers / f"killed-{point}"
    if marker.exists():
        return
    marker.write_text("1")
    os.kill(os.getpid(), signal.SIGKILL)


class StepModel:
    """Answers model call n of a turn with script[n - 1]."""

    def __init__(self, script: list[dict[str, Any]], markers: Path) -> None:
        self.script = script
        self.markers = markers

    async def respond(self, request: ModelRequest) -> ModelResponse:
        step = self.script[min(request.step, len(self.script)) - 1]
        if step.get("kill") == "model":
            _die_once(self.markers, f"model-{request.step}")
            step = self.script[request.step]  # a kill step stands before the real answer
        if "calls" in step:
            calls = [ToolCall(c["name"], c.get("arguments") or {}) for c in step["calls"]]
            return ModelResponse(tool_calls=tuple(calls))
        text = step["text"]
        seen = [m.content for m in request.messages if m.role == "tool"]
        return ModelResponse(text=f"{text} | tool results: {json.dumps(seen)}")


class KillInEndHook:
    def __init__(self, markers: Path) -> None:
        self.markers = markers

    async def on_turn_end(self, turn: Any, outcome: Any) -> None:
        _die_once(self.markers, "end-hook")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--database")
    parser.add_argument("--executor", default="local")
    parser.add_argument("--server", required=True)
    parser.add_argument("--script", required=True, help="JSON list of model steps")
    parser.add_argument("--markers", required=True)
    parser.add_argument("--session", default="s1")
    parser.add_argument("--kill-after-tool", type=int, default=0)
    parser.add_argument("--kill-in-end-hook", action="store_true")
    parser.add_argument("--takeover-after", type=float)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--submit")
    mode.add_argument("--drain", action="store_true")
    mode.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    markers = Path(args.markers)
    script = json.loads(args.script)
    finished = 0

    async def on_event(event: AgentEvent) -> None:
        nonlocal finished
        if isinstance(event, ToolCallFinished):
            finished += 1
            if finished == args.kill_after_tool:
                _die_once(markers, f"tool-{finished}")

    def sessions(session_id: str, settings: Mapping[str, Any], store: SessionStore) -> Session:
        hooks: list[object] = [TurnHeaders()]
        if args.kill_in_end_hook:
            hooks.insert(0, KillInEndHook(markers))
        config = ServerConfig(name="rec", url=settings["server"], apps=True)
        return Session([config], store=store, session_id=session_id, hooks=hooks)

    def models(settings: Mapping[str, Any]) -> StepModel:
        return StepModel(script, markers)

    async def run() -> None:
        store = SqliteStore(args.store)
        runtime = DurableRuntime(
            store,
            sessions=sessions,
            models=models,
            database_url=args.database,
            executor_id=args.executor,
            takeover_after=args.takeover_after,
            heartbeat=0.2,
            loop_options={"parallel_tool_calls": False, "on_event": on_event},
        )
        async with store, runtime:
            if args.submit is not None:
                turn_id = await runtime.submit_turn(
                    args.session, args.submit, settings={"server": args.server}, metadata={"model": "step"}
                )
                print(json.dumps({"submitted": turn_id}), flush=True)
                result = await runtime.result(turn_id)
                print(json.dumps({"result": _plain(result)}), flush=True)
            elif args.drain:
                for turn_id in await runtime.unfinished_turns():
                    result = await runtime.result(turn_id)
                    print(json.dumps({"result": _plain(result)}), flush=True)
            else:
                print(json.dumps({"serving": args.executor}), flush=True)
                await anyio.to_thread.run_sync(sys.stdin.read)

    anyio.run(run)


def _plain(result: Any) -> dict[str, Any]:
    return {
        "turn_id": result.turn_id,
        "session_id": result.session_id,
        "index": result.index,
        "state": result.state.value,
        "text": result.text,
        "error": result.error,
        "abort_reason": result.abort_reason.value if result.abort_reason else None,
    }


if __name__ == "__main__":
    main()

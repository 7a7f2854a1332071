"""A durable agent turn, killed mid-turn and finished by a new process.

Run it: ``python examples/durable_agent.py`` (needs ``pip install "codex-runtime[durable]"``).

It starts a recording MCP server in its own process, then a worker process that runs one
durable turn (DBOS on SQLite beside a session store). The model asks for three tools in
order: ``lookup`` (annotated idempotent), ``echo``, then ``block``, which never answers.
While ``block`` is in flight the worker is killed with SIGKILL. A second worker process
starts on the same store: the turn resumes with the same id, the finished calls are not
run again, and ``block`` (not idempotent) is not resent: the model is told its outcome is
unknown and answers. At the end the script prints what the server received.

DBOS is asyncio-based: the durable layer runs on asyncio only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from codex_runtime import ServerConfig, Session, SqliteStore, TurnHeaders
from codex_runtime.agent import ModelRequest, ModelResponse, ToolCall
from codex_runtime.durable import DurableRuntime
from codex_runtime.store import SessionStore
from codex_runtime.testing import RecordingServer

PLAN = [
    ToolCall("tools__lookup", {"key": "open issues"}),
    ToolCall("tools__echo", {"text": "draft the fix"}),
    ToolCall("tools__block", {"key": "deploy"}),
]


class PlannedModel:
    """Step n asks for PLAN[n - 1]; then it answers with what the tools said."""

    async def respond(self, request: ModelRequest) -> ModelResponse:
        if request.step <= len(PLAN):
            call = PLAN[request.step - 1]
            return ModelResponse(tool_calls=(ToolCall(call.name, call.arguments),))
        last = [m.content or "" for m in request.messages if m.role == "tool"][-1]
        return ModelResponse(text=f"stopped before the deploy; its outcome: {last[:60]}...")


def build_session(session_id: str, settings: Mapping[str, Any], store: SessionStore) -> Session:
    # Rebuilt from configuration in whichever process runs (or resumes) the turn.
    config = ServerConfig(name="tools", url=settings["server"], apps=True)
    return Session([config], store=store, session_id=session_id, hooks=[TurnHeaders()])


async def worker(store_path: str, server_url: str, submit: bool) -> None:
    async with (
        SqliteStore(store_path) as store,
        DurableRuntime(store, sessions=build_session, models=lambda settings: PlannedModel()) as runtime,
    ):
        if submit:
            turn_id = await runtime.submit_turn("demo", "fix and deploy", settings={"server": server_url})
            print(json.dumps({"turn": turn_id}), flush=True)
            await runtime.result(turn_id)  # killed before this returns
        else:
            for turn_id in await runtime.unfinished_turns():
                result = await runtime.result(turn_id)
                print(json.dumps({"turn": result.turn_id, "state": result.state.value, "text": result.text}))


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store_path = str(Path(tmp) / "sessions.db")
        async with RecordingServer.subprocess("tools") as server:
            me = [sys.executable, __file__, "--worker", store_path, server.url]
            first = await anyio.open_process([*me, "submit"])
            try:
                assert first.stdout is not None
                turn_id = json.loads((await first.stdout.receive()).decode().splitlines()[0])["turn"]
                print(f"worker 1 (pid {first.pid}) runs durable turn {turn_id}")
                await server.wait_for_calls("block", 1, timeout=60)
            finally:
                first.send_signal(signal.SIGKILL)
                await first.wait()
            print(f"worker 1 killed (SIGKILL) while 'block' was in flight; calls so far: {_calls(server)}")

            second = await anyio.run_process([*me, "resume"])
            result = json.loads(second.stdout.decode().splitlines()[-1])
            print(f"worker 2 resumed turn {result['turn']}: {result['state']}")
            print(f"  answer: {result['text']}")
            print(f"calls the server received in all: {_calls(server)}")
            turns = {json.loads(c.headers["x-codex-turn-metadata"])["turn_id"] for c in server.tool_calls()}
            print(f"turn ids the server saw: {sorted(turns)}")
        async with SqliteStore(store_path) as store:
            stored = await store.get_session("demo")
            assert stored is not None
            [turn] = stored.turns
            calls = await store.tool_calls(turn.turn_id)
            print(
                f"stored turn #{turn.index} {turn.state}: " + ", ".join(f"{c.tool}={c.status}" for c in calls)
            )


def _calls(server: Any) -> str:
    return ", ".join(f"{c.tool}:{c.outcome}" for c in server.tool_calls())


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        anyio.run(worker, sys.argv[2], sys.argv[3], sys.argv[4] == "submit")
    else:
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        anyio.run(main)

"""What the per-call shortcuts must never change: what servers receive.

The turn-metadata header is rebuilt only when the metadata changed, resolved turn headers
are reused while their callables return the same values, and no span is made while no
tracer provider records. Each test checks the server's records.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codex_runtime import ServerConfig, Session, TurnHeaders
from codex_runtime.testing import RecordingServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


async def test_turn_metadata_changes_reach_the_next_call(server: RecordingServer) -> None:
    config = ServerConfig(name="apps", url=server.url, apps=True)
    async with Session([config], hooks=[TurnHeaders()]) as session:
        async with session.turn(metadata={"model": "a", "n": 1, "tags": ["x"]}) as turn:
            await turn.call_tool("apps", "echo", {"text": "1"})
            await turn.call_tool("apps", "echo", {"text": "2"})  # unchanged: the same text
            turn.metadata["n"] = True  # equal to 1 in Python, not in JSON
            await turn.call_tool("apps", "echo", {"text": "3"})
            turn.metadata["tags"].append("y")  # a change inside a nested value
            await turn.call_tool("apps", "echo", {"text": "4"})
            turn.metadata = {"model": "b"}  # a new dict altogether
            await turn.call_tool("apps", "echo", {"text": "5"})
    sent = {
        r.arguments["text"]: json.loads(r.header("x-codex-turn-metadata") or "{}")
        for r in server.requests("tools/call")
    }
    assert sent["1"] == sent["2"]
    assert (sent["2"]["n"], sent["3"]["n"]) == (1, True)
    assert (sent["3"]["tags"], sent["4"]["tags"]) == (["x"], ["x", "y"])
    assert sent["5"]["model"] == "b" and "n" not in sent["5"]
    assert {s["turn_id"] for s in sent.values()} == {turn.id}
    for record in server.requests("tools/call"):
        assert record.header("session_id") == session.session_id


def test_without_an_sdk_calls_work_and_make_no_span(server: RecordingServer) -> None:
    """Only the OpenTelemetry API: no span is made, and the wire carries no trace context."""
    code = f"""
import anyio, json
from opentelemetry import trace
from codex_runtime import ServerConfig, Session, TraceTurns, TurnHeaders
from codex_runtime._trace import active_tracer, tool_call_span

async def main():
    assert active_tracer() is None
    assert not tool_call_span("s", "t", transport="stdio", url=None).__enter__().is_recording()
    config = ServerConfig(name="apps", url={server.url!r}, apps=True)
    async with Session([config], hooks=[TurnHeaders(), TraceTurns()]) as session:
        async with session.turn() as turn:
            result = await turn.call_tool("apps", "echo", {{"text": "no-sdk"}})
    print(json.dumps({{"error": bool(result.is_error)}}))

anyio.run(main)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"error": False}
    [record] = [r for r in server.requests("tools/call") if r.arguments.get("text") == "no-sdk"]
    assert record.header("traceparent") is None and "traceparent" not in record.meta
    assert record.header("x-codex-turn-metadata") is not None

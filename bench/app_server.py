"""App-server overhead: a turn driven over stdio against the same turn in-process.

(a) Turn round trip. One agent turn = a streamed Responses API answer asking for one tool
call on a loopback MCP server (an Apps server: turn headers on), the call, then a streamed
text answer. In-process: ``await AgentLoop.run_turn(...)``. Over stdio: a
``codex-runtime app-server`` process configured with the same provider and server; the
time from writing ``turn/start`` to reading ``turn/completed``. Measured side by side in
alternating rounds; the overhead is the difference of the medians.

(b) Time to first delta: for a text answer, from the moment the stand-in provider sent
the first byte of its stream to the moment the text delta reached its consumer — the
`TextDelta` event in-process, the ``item/agentMessage/delta`` line read by the client over
stdio (both clocks are this machine's ``time.time()``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from codex_runtime import OpenAIResponsesModel, ServerConfig, Session, TextDelta, TurnHeaders
from codex_runtime.agent import AgentEvent, AgentLoop
from codex_runtime.testing import ProviderStub, RecordingServer, StubReply

DESCRIPTION = "turn round trip over stdio vs in-process; time to first delta vs the provider's first byte"


def _turn_replies() -> list[StubReply]:
    return [
        StubReply.tool_calls(("apps__echo", {"text": "bench"})),
        StubReply.text("The echo came back fine."),
    ]


class _Lines:
    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message


class _Remote:
    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self.lines = _Lines(process.stdout)
        self._id = 0

    async def send(self, method: str, params: dict[str, Any]) -> int:
        self._id += 1
        message = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        await self._stdin.send((json.dumps(message) + "\n").encode())
        return self._id

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = await self.send(method, params)
        while True:
            message = await self.lines.next()
            if message.get("id") == request_id and "method" not in message:
                assert "result" in message, message
                result: dict[str, Any] = message["result"]
                return result

    async def turn(self, thread_id: str, text: str) -> tuple[float, float | None]:
        """(round trip in s, time.time() of the first delta)."""
        start = time.perf_counter()
        await self.send("turn/start", {"threadId": thread_id, "input": [{"type": "text", "text": text}]})
        first_delta = None
        while True:
            message = await self.lines.next()
            method = message.get("method")
            if method == "item/agentMessage/delta" and first_delta is None:
                first_delta = time.time()
            elif method == "turn/completed":
                assert message["params"]["turn"]["status"] == "completed", message
                return time.perf_counter() - start, first_delta


async def _run(rounds: int, turns: int) -> dict[str, Any]:
    local_rt: list[float] = []
    remote_rt: list[float] = []
    local_first: list[float] = []
    remote_first: list[float] = []
    with RecordingServer("apps") as apps, ProviderStub() as provider:
        folder = Path(tempfile.mkdtemp(prefix="bench-app-server-"))
        config = folder / "config.toml"
        config.write_text(
            f'model = "stub-model"\nmodel_provider = "stub"\n[model_providers.stub]\n'
            f'base_url = "{provider.base_url}"\nwire_api = "responses"\n'
            f'[mcp_servers.apps]\nurl = "{apps.url}"\napps = true\n',
            encoding="utf-8",
        )
        command = [sys.executable, "-m", "codex_runtime", "app-server", "--config", str(config)]
        model = OpenAIResponsesModel(provider.base_url, "stub-model")
        first_delta: list[float] = []

        def on_event(event: AgentEvent) -> None:
            if isinstance(event, TextDelta) and not first_delta:
                first_delta.append(time.time())

        servers = [ServerConfig(name="apps", url=apps.url, apps=True)]
        async with (
            model,
            Session(servers, hooks=[TurnHeaders()]) as session,
            await anyio.open_process(command, stderr=subprocess.DEVNULL) as process,
        ):
            loop = AgentLoop(session, model, on_event=on_event)
            remote = _Remote(process)
            await remote.call("initialize", {"clientInfo": {"name": "bench", "version": "1"}})
            thread_id = (await remote.call("thread/start", {}))["thread"]["id"]
            # warm-up: connections, first imports
            provider.add(*_turn_replies(), *_turn_replies())
            await loop.run_turn("warm up")
            await remote.turn(thread_id, "warm up")
            for _ in range(rounds):
                provider.add(*(_turn_replies() * turns))
                for _ in range(turns):
                    first_delta.clear()
                    start = time.perf_counter()
                    await loop.run_turn("echo bench")
                    local_rt.append(time.perf_counter() - start)
                    local_first.append(first_delta[0] - provider.first_bytes[-1])
                provider.add(*(_turn_replies() * turns))
                for _ in range(turns):
                    elapsed, delta_at = await remote.turn(thread_id, "echo bench")
                    remote_rt.append(elapsed)
                    assert delta_at is not None
                    remote_first.append(delta_at - provider.first_bytes[-1])
            await process.stdin.aclose()  # type: ignore[union-attr]
            await process.wait()
    local, over = statistics.median(local_rt), statistics.median(remote_rt)
    first_local, first_remote = statistics.median(local_first), statistics.median(remote_first)
    return {
        "turns_each": len(local_rt),
        "in_process_ms": round(local * 1000, 2),
        "stdio_ms": round(over * 1000, 2),
        "stdio_overhead_ms": round((over - local) * 1000, 2),
        "ratio_stdio_over_in_process": round(over / local, 3),
        "first_delta_after_first_byte_in_process_ms": round(first_local * 1000, 2),
        "first_delta_after_first_byte_stdio_ms": round(first_remote * 1000, 2),
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench app_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--turns", type=int, default=20, help="turns per round and side (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    result = anyio.run(_run, args.rounds, args.turns)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"turn round trip (tool call + streamed answers), median of {result['turns_each']} turns each:")
    print(f"  in-process   {result['in_process_ms']:8.2f} ms")
    print(f"  over stdio   {result['stdio_ms']:8.2f} ms")
    print(
        f"  overhead     {result['stdio_overhead_ms']:8.2f} ms per turn "
        f"(ratio {result['ratio_stdio_over_in_process']:.3f})"
    )
    print("time to first delta after the provider's first byte (median):")
    print(f"  in-process   {result['first_delta_after_first_byte_in_process_ms']:8.2f} ms")
    print(f"  over stdio   {result['first_delta_after_first_byte_stdio_ms']:8.2f} ms")
    return 0

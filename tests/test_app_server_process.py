"""`codex-runtime app-server` as a process: driven by a Node client, and left by its client mid-turn."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import pytest
from app_protocol import ProtocolChecker, protocol_schema

from codex_runtime.testing import ProviderStub, RecordingServer, StubReply

__all__ = ["protocol_schema"]

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_node_example_drives_the_app_server() -> None:
    env = {**os.environ, "CODEX_RUNTIME_PYTHON": sys.executable}
    done = subprocess.run(
        ["node", str(REPO / "examples" / "app_server_client.mjs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    first, second, third = summary["turns"]
    assert [first["status"], second["status"], third["status"]] == ["completed", "interrupted", "completed"]
    assert first["text"] == "Let me look that up. Paris is sunny and Oslo is snowy today."
    assert "Paris is sunny" in done.stdout  # printed as it streamed
    assert summary["resumed"] == ["completed", "interrupted"]
    assert summary["app_server_exit"] == 0 and summary["fixture_exit"] == 0
    calls = summary["servers"]["tool_calls"]
    assert [(c["tool"], c["outcome"]) for c in calls] == [
        ("echo", "ok"),
        ("echo", "ok"),
        ("block", "cancelled"),
    ]
    # what the MCP server received carries the thread and turn ids the client saw
    assert [c["turn_metadata"]["turn_id"] for c in calls] == [first["id"], first["id"], second["id"]]
    assert {c["turn_metadata"]["thread_id"] for c in calls} == {summary["thread_id"]}
    assert all(r["streamed"] and r["path"] == "/v1/responses" for r in summary["servers"]["model_requests"])
    assert {"item/agentMessage/delta", "turn/completed", "thread/started"} <= set(summary["methods"])


@pytest.mark.anyio
async def test_a_client_that_disappears_mid_turn_ends_the_turn_and_the_process(
    protocol_schema: Path, tmp_path: Path, server: RecordingServer, provider: ProviderStub
) -> None:
    key = uuid.uuid4().hex[:10]
    provider.add(StubReply.tool_calls(("apps__block", {"key": key})))
    config = tmp_path / "config.toml"
    config.write_text(
        f'model = "m"\nmodel_provider = "stub"\n[model_providers.stub]\nbase_url = "{provider.base_url}"\n'
        f'[mcp_servers.apps]\nurl = "{server.url}"\napps = true\n',
        encoding="utf-8",
    )
    checker = ProtocolChecker(protocol_schema)
    checker.methods.update({1: "initialize", 2: "thread/start", 3: "turn/start"})
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"clientInfo": {"name": "t", "version": "1"}},
        },
        {"jsonrpc": "2.0", "method": "initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "thread/start", "params": {}},
    ]
    command = [sys.executable, "-m", "codex_runtime", "app-server", "--config", str(config)]
    with anyio.fail_after(60):
        async with await anyio.open_process(command, stderr=subprocess.DEVNULL) as process:
            assert process.stdin is not None and process.stdout is not None
            for message in requests:
                await process.stdin.send((json.dumps(message) + "\n").encode())
            buffer = b""
            tool_started = False
            while not tool_started:
                buffer += await process.stdout.receive()
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    message = json.loads(line)
                    checker.check(message)
                    if message.get("id") == 2:
                        turn = {
                            "threadId": message["result"]["thread"]["id"],
                            "input": [{"type": "text", "text": "b"}],
                        }
                        start = {"jsonrpc": "2.0", "id": 3, "method": "turn/start", "params": turn}
                        await process.stdin.send((json.dumps(start) + "\n").encode())
                    elif message.get("method") == "item/started":
                        tool_started = tool_started or message["params"]["item"]["type"] == "mcpToolCall"
            await server.wait_for_calls("block", 1)
            await process.stdin.aclose()  # the client disappears mid-turn
            rest = b""
            async for chunk in process.stdout:
                rest += chunk
            assert await process.wait() == 0
    tail = [json.loads(line) for line in (buffer + rest).split(b"\n") if line.strip()]
    for message in tail:
        checker.check(message)
    completed = [m for m in tail if m.get("method") == "turn/completed"]
    assert completed and completed[-1]["params"]["turn"]["status"] == "interrupted"
    await server.wait_for(lambda s: s.tool_calls("block")[0].outcome == "cancelled")

"""Loopback servers for examples/app_server_client.mjs: an MCP server and a stand-in model provider.

Starts a recording MCP server ("apps", an Apps server: it gets Codex's turn headers) and a
stand-in Responses API provider on 127.0.0.1 with a scripted conversation, writes a Codex
``config.toml`` naming both, and prints ``{"config": PATH}`` as one JSON line. It runs until
its standard input closes, then prints one JSON line with what the servers received and
exits. Run by the Node example; on its own::

    python examples/app_server_fixture.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from codex_runtime.testing import ProviderStub, RecordingServer, StubReply

SCRIPT = [
    # turn 1: two tool calls, then a streamed answer
    StubReply.tool_calls(
        ("apps__echo", {"text": "weather in Paris"}, "call_weather"),
        ("apps__echo", {"text": "weather in Oslo"}, "call_oslo"),
        text="Let me look that up.",
    ),
    StubReply.text("Paris is sunny and Oslo is snowy today."),
    # turn 2: a tool call that waits until the client interrupts the turn
    StubReply.tool_calls(("apps__block", {"key": "until-interrupted"}, "call_block")),
    # turn 3, after the thread is resumed
    StubReply.text("Still here: the thread remembers Paris and Oslo."),
]


def main() -> int:
    with RecordingServer("apps") as apps, ProviderStub(SCRIPT) as provider:
        folder = Path(tempfile.mkdtemp(prefix="codex-runtime-app-server-"))
        config = folder / "config.toml"
        config.write_text(
            f"""model = "stub-model"
model_provider = "stub"

[model_providers.stub]
name = "Stand-in provider"
base_url = "{provider.base_url}"
wire_api = "responses"

[mcp_servers.apps]
url = "{apps.url}"
apps = true
""",
            encoding="utf-8",
        )
        print(json.dumps({"config": str(config)}), flush=True)
        sys.stdin.read()  # until the client closes our stdin
        calls = [
            {
                "tool": call.tool,
                "arguments": call.arguments,
                "outcome": call.outcome,
                "turn_metadata": json.loads(call.headers.get("x-codex-turn-metadata", "null")),
            }
            for call in apps.tool_calls()
        ]
        model_requests = [{"path": r.path, "streamed": r.streamed} for r in provider.chat_requests()]
        print(json.dumps({"tool_calls": calls, "model_requests": model_requests}), flush=True)
        apps.release_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

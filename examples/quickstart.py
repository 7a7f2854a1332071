"""Quickstart: a session, one turn, one tool call, against a loopback MCP server."""

import anyio

from codex_runtime import ServerConfig, Session, TurnHeaders
from codex_runtime.testing import RecordingServer


async def main() -> None:
    async with RecordingServer("apps") as server:  # a real MCP server that records what it gets
        apps = ServerConfig(name="apps", url=server.url, apps=True)
        async with Session([apps], hooks=[TurnHeaders()]) as session:
            async with session.turn(metadata={"model": "gpt-x"}) as turn:
                result = await turn.call_tool("apps", "echo", {"text": "hello"})
        print(f"turn {turn.id}: {turn.state.value}, tool error: {result.is_error}")
        [call] = server.requests("tools/call")  # what the server received
        print("session_id:", call.header("session_id"))
        print("x-codex-turn-metadata:", call.header("x-codex-turn-metadata"))


if __name__ == "__main__":
    anyio.run(main)

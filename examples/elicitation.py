"""Answer what an MCP server asks the client: elicitation, sampling, roots, progress.

A loopback server's tools ask the user a question (elicitation), ask the client's model
(sampling) and ask for the client's roots, in both protocol eras: on a legacy session
the server sends requests mid-call; on 2026-07-28 the call comes back "input required"
and the client answers in a second round. The same handlers serve both, and each is told
which turn and tool call the request belongs to. Run: ``python examples/elicitation.py``.
"""

import json

import anyio
from mcp_types import CreateMessageResult, ElicitResult, TextContent

from codex_runtime import ClientHandlers, ServerConfig, ServerRequest, Session
from codex_runtime.testing import RecordingServer

ANSWERS = {"What is your name?": {"name": "Ada"}}  # a stand-in for asking a person


async def ask_user(request: ServerRequest) -> ElicitResult:
    question = request.params.message
    print(f"  [{request.server}/{request.tool}] asks the user: {question}")
    answer = ANSWERS.get(question)
    if answer is None:
        return ElicitResult(action="decline")
    return ElicitResult(action="accept", content=answer)


async def run_model(request: ServerRequest) -> CreateMessageResult:
    prompt = request.params.messages[-1].content.text
    print(f"  [{request.server}/{request.tool}] asks the model: {prompt}")
    reply = TextContent(type="text", text=f"(a model's answer to {prompt!r})")
    return CreateMessageResult(role="assistant", content=reply, model="example-model")


def show_progress(progress: float, total: float | None, message: str | None) -> None:
    print(f"  progress {progress:g}/{total:g}: {message}")


async def main() -> None:
    handlers = ClientHandlers(elicitation=ask_user, sampling=run_model, roots=("file:///work/repo",))
    async with RecordingServer("tools") as server:
        for protocol in ("legacy", "auto"):
            cfg = ServerConfig(name="tools", url=server.url, protocol=protocol)
            async with Session([cfg], handlers=handlers) as session:
                client = session.clients["tools"]
                print(f"protocol {client.protocol_version}:")
                async with session.turn() as turn:
                    asked = await turn.call_tool("tools", "ask", {})
                    print("  ask ->", json.loads(asked.content[0].text)["data"])
                    sampled = await turn.call_tool("tools", "sample", {"prompt": "Name a colour"})
                    print("  sample ->", json.loads(sampled.content[0].text)["text"])
                    roots = await turn.call_tool("tools", "roots", {})
                    print("  roots ->", json.loads(roots.content[0].text))
                    await turn.call_tool("tools", "progress", {"steps": 2}, on_progress=show_progress)
                    readme = await turn.read_resource("tools", "res://readme")
                    print("  res://readme ->", readme.contents[0].text)
                    prompt = await turn.get_prompt("tools", "greet", {"name": "Ada"})
                    print("  prompt greet ->", prompt.messages[0].content.text)


if __name__ == "__main__":
    anyio.run(main)

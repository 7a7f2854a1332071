"""Ask the user before any tool that is not read-only.

`AskBeforeWrites` is a tool-call hook: before every call it looks up the tool's
annotations (the server's ``tools/list``, cached by the client) and lets read-only tools
(``readOnlyHint: true``) through; for any other tool it asks, and denies the call unless
the user says yes. A denied call never reaches the server, and the agent loop hands the
reason to the model, which goes on.

The example starts its own MCP server (this file, run with ``serve``, over stdio: a tiny
file store with a read-only ``read_file`` and a destructive ``delete_file``) and drives
one agent turn with a scripted model. Answer the question on the terminal; with no
terminal (stdin closed) the answer is "no".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import anyio

from codex_runtime import (
    ServerConfig,
    Session,
    ToolCallRecord,
    ToolCallRequest,
    ToolDecision,
    Turn,
)
from codex_runtime.agent import AgentLoop, ModelRequest, ModelResponse, ScriptedModel, ToolCall


def serve() -> None:
    """The example's MCP server, over stdio."""
    from mcp.server.mcpserver import MCPServer
    from mcp_types import ToolAnnotations

    server = MCPServer(name="files", log_level="WARNING")
    files = {"notes.txt": "buy milk", "plan.txt": "ship it"}

    @server.tool(name="read_file", annotations=ToolAnnotations(read_only_hint=True))
    def read_file(path: str) -> str:
        """Read a file."""
        return files.get(path, f"no such file: {path}")

    @server.tool(name="delete_file", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
    def delete_file(path: str) -> str:
        """Delete a file."""
        return f"deleted {path}" if files.pop(path, None) is not None else f"no such file: {path}"

    server.run("stdio")


def ask_on_terminal(question: str) -> bool:
    """Ask a yes/no question on the terminal; no answer (stdin closed) is no."""
    print(question, end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    print(answer.strip() or "(no answer)")
    return answer.strip().lower() in ("y", "yes")


class AskBeforeWrites:
    """Denies every call of a tool that is not annotated read-only, unless the user agrees."""

    def __init__(self, ask: Callable[[str], bool] = ask_on_terminal) -> None:
        self.ask = ask

    async def on_tool_call_start(self, turn: Turn, call: ToolCallRequest) -> ToolDecision | None:
        tools = await turn.session.clients[call.server].list_tools()
        tool = next((t for t in tools if t.name == call.tool), None)
        if tool is not None and tool.annotations is not None and tool.annotations.read_only_hint:
            return None  # read-only: no question asked
        question = f"allow {call.server}.{call.tool}({json.dumps(call.arguments)})? [y/N] "
        # Off the event loop: the other turns and servers go on while the user thinks.
        if await anyio.to_thread.run_sync(self.ask, question):
            return None
        return ToolDecision.deny(f"the user did not approve {call.tool}")

    async def on_tool_call_end(self, turn: Turn, call: ToolCallRequest, record: ToolCallRecord) -> None:
        print(f"  {call.tool}: {record.status.value}" + (f" ({record.error})" if record.error else ""))


def final_answer(request: ModelRequest) -> ModelResponse:
    last = [m for m in request.messages if m.role == "tool"][-1]
    return ModelResponse(text=f"The model saw: {last.content}")


async def main(ask: Callable[[str], bool] = ask_on_terminal) -> None:
    files = ServerConfig(name="files", command=sys.executable, args=(__file__, "serve"))
    model = ScriptedModel(
        [
            ToolCall(name="files__read_file", arguments={"path": "plan.txt"}),
            ToolCall(name="files__delete_file", arguments={"path": "plan.txt"}),
            final_answer,
        ]
    )
    async with Session([files], hooks=[AskBeforeWrites(ask)]) as session:
        result = await AgentLoop(session, model).run_turn("Read the plan, then delete it.")
    print(result.text)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        anyio.run(main)

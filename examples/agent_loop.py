"""A coding-agent style loop: a scripted model, two loopback MCP servers, two turns.

The "apps" server is a first-party Apps server (it gets the turn headers of
`TurnHeaders`); "workspace" is a third-party server with its own API key. The model is a
`ScriptedModel`, so the run is deterministic: in turn 1 it looks things up on both
servers at once, reruns a failing check (a tool error, fed back to the model, not
raised) and answers; in turn 2 it applies a fix, and the conversation of turn 1 is
still there. Every step is printed as it happens, then what each server received.

    python examples/agent_loop.py
"""

import json

import anyio

from codex_runtime import ServerConfig, Session, TurnHeaders
from codex_runtime.agent import (
    AgentEvent,
    AgentLoop,
    ModelRequest,
    ModelResponse,
    ModelStep,
    ScriptedModel,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
)
from codex_runtime.testing import RecordingServer


def show(event: AgentEvent) -> None:
    """Print each step of the loop as it happens."""
    if isinstance(event, ModelStep):
        calls = event.response.tool_calls
        what = f"asks for {len(calls)} tool call(s)" if calls else f"answers: {event.response.text}"
        print(f"  step {event.step}: the model {what}")
    elif isinstance(event, ToolCallStarted):
        print(f"    -> {event.call.name} {json.dumps(event.call.arguments)}")
    elif isinstance(event, ToolCallFinished):
        status = "error" if event.result.is_error else "ok"
        first_line = event.result.output.splitlines()[0][:60] if event.result.output else ""
        print(f"    <- {event.result.name} [{status}] {first_line}")


def summarize(request: ModelRequest) -> ModelResponse:
    """The scripted model's last step of turn 1: an answer built from the tool results."""
    results = [m for m in request.messages if m.role == "tool"]
    failed = [m.content for m in results if m.is_error]
    return ModelResponse(text=f"I read {len(results)} tool results; the failing check says: {failed[0]}")


def recall(request: ModelRequest) -> ModelResponse:
    """Turn 2's answer: the conversation of turn 1 is still in the request."""
    asked = [m.content for m in request.messages if m.role == "user"]
    return ModelResponse(text=f"Fixed. (This conversation has {len(asked)} user messages: {asked})")


async def main() -> None:
    async with RecordingServer("apps") as apps, RecordingServer("workspace") as workspace:
        servers = [
            ServerConfig(name="apps", url=apps.url, apps=True),
            ServerConfig(name="workspace", url=workspace.url, headers={"x-api-key": "workspace-key"}),
        ]
        model = ScriptedModel(
            [
                # Turn 1, step 1: two lookups at once, on both servers.
                [
                    ToolCall("apps__echo", {"text": "search issues: build failure"}),
                    ToolCall("workspace__echo", {"text": "read: pyproject.toml"}),
                ],
                # Step 2: rerun the failing check; the tool reports an error.
                ToolCall("workspace__fail", {"message": "tests/test_build.py::test_wheel FAILED"}),
                # Step 3: the answer.
                summarize,
                # Turn 2.
                ToolCall("workspace__echo", {"text": "apply patch: pin hatchling"}),
                recall,
            ]
        )
        async with Session(servers, hooks=[TurnHeaders()]) as session:
            loop = AgentLoop(session, model, instructions="You are a coding agent.", on_event=show)
            for index, prompt in enumerate(["Why does the build fail?", "Fix it."], start=1):
                print(f"turn {index}: {prompt}")
                result = await loop.run_turn(prompt, metadata={"model": "scripted"})
                print(f"  => {result.outcome.state.value} after {result.steps} model calls")

        print("what the servers received:")
        for name, server in (("apps", apps), ("workspace", workspace)):
            for request in server.requests("tools/call"):
                turn = json.loads(request.header("x-codex-turn-metadata") or "{}").get("turn_id")
                print(f"  {name} {request.tool_name}: turn headers {'yes' if turn else 'no'}")


if __name__ == "__main__":
    anyio.run(main)

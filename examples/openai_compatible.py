"""The agent loop with a real model: any OpenAI-compatible Chat Completions endpoint.

It starts two loopback MCP servers ("apps", an Apps server, and "workspace"), gives
their tools to the model and runs one turn, printing the tool calls as they happen and
the final answer. Point it at a provider with environment variables:

    OPENAI_BASE_URL   the API base (required), e.g. https://api.openai.com/v1,
                      http://localhost:8000/v1 (vLLM, SGLang), http://localhost:8080/v1
                      (llama.cpp), http://localhost:11434/v1 (Ollama)
    OPENAI_MODEL      the model name (required)
    OPENAI_API_KEY    sent as "Authorization: Bearer ..." (optional)
    AGENT_PROMPT      the user's message (optional)

    OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_MODEL=qwen3 python examples/openai_compatible.py

Exit codes: 0 ok, 1 the turn failed (e.g. the provider refused), 2 missing settings.
"""

import json
import os
import sys

import anyio

from codex_runtime import ServerConfig, Session, TurnHeaders
from codex_runtime.agent import (
    AgentError,
    AgentEvent,
    AgentLoop,
    OpenAIChatModel,
    ToolCallFinished,
    ToolCallStarted,
)
from codex_runtime.testing import RecordingServer

DEFAULT_PROMPT = (
    "Use the apps__echo tool to echo the text 'hello from the agent', "
    "then tell me in one sentence what it returned."
)


def show(event: AgentEvent) -> None:
    if isinstance(event, ToolCallStarted):
        print(f"-> {event.call.name} {json.dumps(event.call.arguments)}", flush=True)
    elif isinstance(event, ToolCallFinished):
        status = "error" if event.result.is_error else "ok"
        first_line = event.result.output.splitlines()[0][:80] if event.result.output else ""
        print(f"<- {event.result.name} [{status}] {first_line}", flush=True)


async def main() -> int:
    base_url = os.environ.get("OPENAI_BASE_URL")
    model_name = os.environ.get("OPENAI_MODEL")
    if not base_url or not model_name:
        print("set OPENAI_BASE_URL and OPENAI_MODEL (see the top of this file)", file=sys.stderr)
        return 2
    prompt = os.environ.get("AGENT_PROMPT") or DEFAULT_PROMPT
    model = OpenAIChatModel(base_url, model_name, api_key=os.environ.get("OPENAI_API_KEY") or None)

    async with RecordingServer("apps") as apps, RecordingServer("workspace") as workspace:
        servers = [
            ServerConfig(name="apps", url=apps.url, apps=True),
            ServerConfig(name="workspace", url=workspace.url, headers={"x-api-key": "workspace-key"}),
        ]
        async with model, Session(servers, hooks=[TurnHeaders()]) as session:
            instructions = "You are a helpful agent. Use tools when asked."
            loop = AgentLoop(session, model, instructions=instructions, on_event=show)
            try:
                result = await loop.run_turn(prompt, metadata={"model": model_name})
            except AgentError as exc:
                print(f"the turn failed: {exc}", file=sys.stderr)
                return 1
    print(f"answer: {result.text}")
    print(f"({result.outcome.state.value}, {result.steps} model calls, {len(result.tool_calls)} tool calls)")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))

"""The agent loop and the tools a server offers: made-up tool names, tools the client cannot
call (task-augmented only), and image results.

A small MCP server built with the SDK's `MCPServer` runs on 127.0.0.1 (uvicorn in its own
thread); the model is `ScriptedModel` or `OpenAIChatModel` against the `ProviderStub`.
Assertions are on what the servers and the provider received.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent, ToolExecution

from codex_runtime import ServerConfig, Session
from codex_runtime._loopback import ThreadServer, listen_socket
from codex_runtime._provider_stub import ProviderStub, StubReply
from codex_runtime.agent import AgentLoop, OpenAIChatModel, ScriptedModel, ToolCall

pytestmark = pytest.mark.anyio

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(32))).decode("ascii")


class _MediaServer(MCPServer):
    """Lists ``long_job`` as callable only task-augmented (``execution.taskSupport``)."""

    def __init__(self) -> None:
        super().__init__("media")
        self.calls: list[str] = []

        @self.tool()
        def snapshot() -> CallToolResult:
            self.calls.append("snapshot")
            return CallToolResult(
                content=[
                    TextContent(type="text", text="a tiny picture"),
                    ImageContent(type="image", data=PNG, mime_type="image/png"),
                ]
            )

        @self.tool()
        def long_job() -> str:
            self.calls.append("long_job")
            return "ran"

        @self.tool()
        def ping() -> str:
            self.calls.append("ping")
            return "pong"

    async def list_tools(self) -> list[Any]:
        tools = await super().list_tools()
        required = ToolExecution(task_support="required")
        return [t.model_copy(update={"execution": required}) if t.name == "long_job" else t for t in tools]


@pytest.fixture(scope="module")
def media() -> Iterator[tuple[str, _MediaServer]]:
    holder: dict[str, _MediaServer] = {}

    def make_app() -> Any:
        holder["server"] = _MediaServer()
        return holder["server"].streamable_http_app(session_idle_timeout=None)

    sock = listen_socket(0)
    thread = ThreadServer(make_app, sock, name="media server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", holder["server"]
    finally:
        thread.stop()


@pytest.fixture
def media_server(media: tuple[str, _MediaServer]) -> _MediaServer:
    media[1].calls.clear()
    return media[1]


async def test_tools_that_require_task_augmentation_are_not_offered(
    media: tuple[str, _MediaServer], media_server: _MediaServer
) -> None:
    # `execution.taskSupport` exists in the 2025-11-25 protocol (legacy era) only.
    model = ScriptedModel([ToolCall("media__long_job", {}), "gave up"])
    async with Session([ServerConfig(name="media", url=media[0], protocol="legacy")]) as session:
        listed = {t.name: t.tool for t in await session.list_tools()}
        result = await AgentLoop(session, model).run_turn("run the job")
    execution = listed["media__long_job"].execution
    assert execution is not None and execution.task_support == "required"
    offered = {t.name for t in model.requests[0].tools}
    assert "media__ping" in offered and "media__long_job" not in offered
    # Asked for anyway, it is an unknown tool for the model; the server never ran it.
    [call] = result.tool_calls
    assert call.is_error and "unknown tool" in call.output
    assert result.text == "gave up"
    assert media_server.calls == []


async def test_image_results_reach_the_provider_as_image_parts(
    media: tuple[str, _MediaServer], media_server: _MediaServer, provider: ProviderStub
) -> None:
    provider.add(StubReply.tool_calls(("media__snapshot", {}), ("media__ping", {})), "I see it")
    model = OpenAIChatModel(provider.base_url, "m")
    async with model, Session([ServerConfig(name="media", url=media[0])]) as session:
        result = await AgentLoop(session, model).run_turn("look")
    assert result.text == "I see it"
    assert sorted(media_server.calls) == ["ping", "snapshot"]
    _, second = provider.chat_requests()
    roles = [m["role"] for m in second.messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    tool_texts = [m["content"] for m in second.messages if m["role"] == "tool"]
    assert any("a tiny picture" in text for text in tool_texts)
    parts = second.messages[-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"


async def test_a_text_only_provider_gets_no_image_parts(
    media: tuple[str, _MediaServer], media_server: _MediaServer, provider: ProviderStub
) -> None:
    provider.add(StubReply.tool_calls(("media__snapshot", {})), "ok")
    model = OpenAIChatModel(provider.base_url, "m", accepts_images=False)
    async with model, Session([ServerConfig(name="media", url=media[0])]) as session:
        await AgentLoop(session, model).run_turn("look")
    _, second = provider.chat_requests()
    assert [m["role"] for m in second.messages] == ["user", "assistant", "tool"]
    assert "[image: image/png]" in second.messages[-1]["content"]
    assert PNG not in str(second.body)


async def test_a_made_up_tool_from_the_provider_goes_back_as_a_tool_error(
    media: tuple[str, _MediaServer], media_server: _MediaServer, provider: ProviderStub
) -> None:
    provider.add(StubReply.tool_calls(("made_up_tool", {"x": 1}), ("media__ping", {})), "recovered")
    model = OpenAIChatModel(provider.base_url, "m")
    async with model, Session([ServerConfig(name="media", url=media[0])]) as session:
        result = await AgentLoop(session, model).run_turn("hi")
    assert result.text == "recovered" and result.outcome.state.value == "completed"
    assert media_server.calls == ["ping"]
    _, second = provider.chat_requests()
    made_up = next(m for m in second.messages if m["role"] == "tool" and "made_up_tool" in m["content"])
    assert made_up["content"].startswith("ERROR: unknown tool 'made_up_tool'")
    assert "media__ping" in made_up["content"]

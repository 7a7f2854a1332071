"""The agent loop and the rest of MCP: resource tools, sampling by the session's model,
progress events. Real loopback servers; assertions on what they received.
"""

from __future__ import annotations

import json

import pytest

from codex_runtime import ClientHandlers, ModelSampling, ServerConfig, Session, TurnHeaders
from codex_runtime._provider_stub import ProviderStub, StubReply
from codex_runtime.agent import (
    AgentEvent,
    AgentLoop,
    ModelRequest,
    ModelResponse,
    OpenAIChatModel,
    ScriptedModel,
    ToolCall,
    ToolCallProgress,
)
from codex_runtime.testing import RecordingServer

pytestmark = pytest.mark.anyio


async def test_the_model_follows_a_resource_link(server: RecordingServer) -> None:
    model = ScriptedModel(
        [
            ToolCall("apps__link", {"uri": "res://items/7"}),
            lambda request: ModelResponse(
                tool_calls=(ToolCall("read_resource", {"server": "apps", "uri": "res://items/7"}),)
            ),
            ToolCall("list_resources", {}),
            ToolCall("read_resource", {"server": "nope", "uri": "res://readme"}),
            "done",
        ]
    )
    cfg = ServerConfig(
        name="apps", url=server.url, apps=True, turn_header_methods=("tools/call", "resources/read")
    )
    async with Session([cfg], hooks=[TurnHeaders()]) as session:
        result = await AgentLoop(session, model).run_turn("read the link")
    names = [r.name for r in result.tool_calls]
    assert names == ["apps__link", "read_resource", "list_resources", "read_resource"]
    link, read, listed, bad = result.tool_calls
    assert "res://items/7" in link.output
    assert (read.output, read.is_error) == ("item 7", False)
    assert {(i["server"], i["uri"]) for i in json.loads(listed.output)} >= {("apps", "res://readme")}
    assert bad.is_error and "unknown server" in bad.output
    # The read went through the turn: the Apps server got the turn entries on resources/read.
    [record] = server.requests("resources/read")
    assert json.loads(record.header("x-codex-turn-metadata") or "{}")["turn_id"] == result.turn.id


async def test_resource_tools_are_offered_only_when_wanted(server: RecordingServer) -> None:
    requests: list[ModelRequest] = []

    def capture(request: ModelRequest) -> ModelResponse:
        requests.append(request)
        return ModelResponse(text="ok")

    async with Session([ServerConfig(name="apps", url=server.url)]) as session:
        await AgentLoop(session, ScriptedModel([capture])).run_turn("hi")
        await AgentLoop(session, ScriptedModel([capture]), resource_tools=False).run_turn("hi")
    default, off = ({t.name for t in r.tools} for r in requests)
    assert {"read_resource", "list_resources", "apps__echo"} <= default
    assert not {"read_resource", "list_resources"} & off


async def test_progress_is_an_agent_event(server: RecordingServer) -> None:
    events: list[AgentEvent] = []
    model = ScriptedModel([ToolCall("apps__progress", {"steps": 2}), "done"])
    async with Session([ServerConfig(name="apps", url=server.url)]) as session:
        await AgentLoop(session, model, on_event=events.append).run_turn("go")
    progress = [e for e in events if isinstance(e, ToolCallProgress)]
    assert sorted((e.progress, e.total, e.message) for e in progress) == [
        (1.0, 2.0, "step 1"),
        (2.0, 2.0, "step 2"),
    ]
    assert {e.call.name for e in progress} == {"apps__progress"}


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_sampling_is_served_by_the_sessions_model(
    server: RecordingServer, provider: ProviderStub, protocol: str
) -> None:
    provider.add(
        # The turn's own step, the sampling request from inside the tool, the final answer.
        StubReply.tool_calls(("apps__sample", {"prompt": "Write a haiku"})),
        "a sampled haiku",
        "all done",
    )
    model = OpenAIChatModel(provider.base_url, "stub-model")
    sampling = ModelSampling(model)
    cfg = ServerConfig(name="apps", url=server.url, protocol=protocol)
    async with model, Session([cfg], handlers=ClientHandlers(sampling=sampling)) as session:
        result = await AgentLoop(session, model).run_turn(
            "use the sampler", forwarded_headers={"x-request-id": "r1"}
        )
    assert result.text == "all done"
    [call] = result.tool_calls
    assert json.loads(call.output) == {"model": "stub-model", "text": "a sampled haiku"}
    _first, sampled, _last = provider.chat_requests()
    assert sampled.body["messages"][-1] == {"role": "user", "content": "Write a haiku"}
    assert "tools" not in sampled.body
    # The sampling model call was made on behalf of the turn: it carries its provider headers.
    assert sampled.header("x-request-id") == "r1"


async def test_sampling_outside_a_turn_is_refused(server: RecordingServer) -> None:
    sampling = ModelSampling(ScriptedModel(["never"]))
    cfg = ServerConfig(name="apps", url=server.url)
    async with Session([cfg], handlers=ClientHandlers(sampling=sampling)) as session:
        AgentLoop(session, sampling.model)
        assert sampling.session is session
        client = session.clients["apps"]
        try:
            result = await client.call_tool("sample", {})
        except Exception as exc:
            assert type(exc).__module__.startswith("codex_runtime")
        else:
            assert result.is_error

"""Streaming models, the Responses API and Codex model providers, against the stand-in provider.

`ProviderStub` streams (server-sent events) whenever a request says ``"stream": true``;
assertions are on what it received and on what the loop reported.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from codex_runtime import (
    AbortReason,
    ConfigError,
    OpenAIResponsesModel,
    ServerConfig,
    Session,
    TextDelta,
    TurnHeaders,
    TurnState,
)
from codex_runtime._model_providers import load_model_settings, model_settings
from codex_runtime.agent import AgentEvent, AgentLoop, ModelError, OpenAIChatModel, ToolCallStarted
from codex_runtime.testing import ProviderStub, RecordingServer, StubReply

pytestmark = pytest.mark.anyio

MODELS = [OpenAIChatModel, OpenAIResponsesModel]


def _events(into: list[AgentEvent]) -> Any:
    def record(event: AgentEvent) -> None:
        into.append(event)

    return record


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
@pytest.mark.parametrize("cls", MODELS, ids=["chat", "responses"])
async def test_a_turn_with_tool_calls_streamed_and_not(
    server: RecordingServer, provider: ProviderStub, cls: type[OpenAIChatModel], stream: bool
) -> None:
    provider.add(
        StubReply.tool_calls(
            ("apps__echo", {"text": "one"}, "call_a"), ("apps__echo", {"text": "two"}, "call_b")
        ),
        StubReply.text("Both echoed back, all fine."),
    )
    events: list[AgentEvent] = []
    model = cls(provider.base_url, "stub-model", api_key="sk-test", stream=stream)
    async with model, Session([ServerConfig(name="apps", url=server.url, apps=True)]) as session:
        loop = AgentLoop(session, model, on_event=_events(events))
        result = await loop.run_turn("echo twice")
    assert result.text == "Both echoed back, all fine."
    assert sorted(c.arguments["text"] for c in server.tool_calls("echo")) == ["one", "two"]
    first, second = provider.chat_requests()
    assert first.path == ("/v1/chat/completions" if cls is OpenAIChatModel else "/v1/responses")
    assert first.streamed is stream and second.streamed is stream
    assert first.header("authorization") == "Bearer sk-test"
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    if stream:
        assert len(deltas) > 1 and "".join(deltas) == "Both echoed back, all fine."
    else:
        assert deltas == []
    if cls is OpenAIResponsesModel:
        assert "apps__echo" in first.tool_names and first.body["tools"][0]["type"] == "function"
        outputs = [i for i in second.input if i.get("type") == "function_call_output"]
        assert sorted(o["call_id"] for o in outputs) == ["call_a", "call_b"]
        calls = [i for i in second.input if i.get("type") == "function_call"]
        assert sorted(json.loads(c["arguments"])["text"] for c in calls) == ["one", "two"]
    else:
        tool_messages = [m for m in second.messages if m["role"] == "tool"]
        assert sorted(m["tool_call_id"] for m in tool_messages) == ["call_a", "call_b"]


@pytest.mark.parametrize("cls", MODELS, ids=["chat", "responses"])
async def test_an_interrupt_closes_the_stream_at_once(
    provider: ProviderStub, cls: type[OpenAIChatModel]
) -> None:
    # a key used once: released keys stay released for the shared stub
    provider.add(StubReply.text("this answer never ends because the stream stalls", stall=uuid.uuid4().hex))
    events: list[AgentEvent] = []
    model = cls(provider.base_url, "stub-model")
    async with model, Session() as session:
        loop: AgentLoop

        def on_event(event: AgentEvent) -> None:
            events.append(event)
            if isinstance(event, TextDelta):
                loop.interrupt()

        loop = AgentLoop(session, model, on_event=on_event)
        result = await loop.run_turn("talk")
        # the stub's stream is still stalled: only closing the connection ends it
        await provider.wait_for_closed_streams(1)
    assert result.outcome.state is TurnState.ABORTED
    assert result.outcome.abort_reason is AbortReason.INTERRUPTED
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["this "]


@pytest.mark.parametrize("cls", MODELS, ids=["chat", "responses"])
async def test_stream_errors_are_model_errors(provider: ProviderStub, cls: type[OpenAIChatModel]) -> None:
    provider.add(
        StubReply.error(429, "slow down"),
        StubReply.raw_body("data: {not json}\n\n", content_type="text/event-stream"),
        StubReply.raw_body(
            'data: {"type": "response.failed", "response": {"error": {"message": "boom"}}}\n\n'
            if cls is OpenAIResponsesModel
            else 'data: {"error": {"message": "boom"}}\n\n',
            content_type="text/event-stream",
        ),
    )
    model = cls(provider.base_url, "stub-model")
    async with model, Session() as session:
        for expected in ("HTTP 429: slow down", "not JSON", "boom"):
            loop = AgentLoop(session, model)
            with pytest.raises(ModelError, match=expected):
                await loop.run_turn("hi")


async def test_tool_call_events_come_after_the_streamed_text(
    server: RecordingServer, provider: ProviderStub
) -> None:
    provider.add(
        StubReply.tool_calls(("apps__echo", {"text": "x"}), text="Let me check."),
        StubReply.text("Checked."),
    )
    events: list[AgentEvent] = []
    model = OpenAIResponsesModel(provider.base_url, "stub-model")
    async with model, Session([ServerConfig(name="apps", url=server.url)]) as session:
        await AgentLoop(session, model, on_event=_events(events)).run_turn("go")
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("TextDelta") < kinds.index("ToolCallStarted")
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    assert started[0].call.arguments == {"text": "x"}


# -- Codex model providers ---------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("wire_api", ["responses", "chat"])
async def test_a_codex_provider_table_builds_the_model_and_its_requests(
    tmp_path: Path, provider: ProviderStub, monkeypatch: pytest.MonkeyPatch, wire_api: str
) -> None:
    monkeypatch.setenv("STUB_KEY", "sk-from-env")
    monkeypatch.setenv("STUB_TENANT", "tenant-7")
    monkeypatch.delenv("STUB_MISSING", raising=False)
    path = _write(
        tmp_path,
        f"""
model = "stub-model-x"
model_provider = "stub"

[model_providers.stub]
name = "Stub"
base_url = "{provider.base_url}"
env_key = "STUB_KEY"
wire_api = "{wire_api}"
http_headers = {{ "x-team" = "infra" }}
env_http_headers = {{ "x-tenant" = "STUB_TENANT", "x-absent" = "STUB_MISSING" }}
query_params = {{ api-version = "2025-04-01-preview" }}
""",
    )
    settings = load_model_settings(path)
    assert settings is not None and settings.provider.wire_api == wire_api
    assert "sk-from-env" not in repr(settings)
    model = settings.build()
    assert type(model) is (OpenAIResponsesModel if wire_api == "responses" else OpenAIChatModel)
    provider.add(StubReply.text("hello"))
    async with model, Session(hooks=[TurnHeaders()]) as session:
        result = await AgentLoop(session, model).run_turn("hi")
    assert result.text == "hello"
    [request] = provider.chat_requests()
    assert request.path.endswith("/responses" if wire_api == "responses" else "/chat/completions")
    assert request.query == "api-version=2025-04-01-preview"
    assert request.body["model"] == "stub-model-x"
    assert request.header("authorization") == "Bearer sk-from-env"
    assert request.header("x-team") == "infra" and request.header("x-tenant") == "tenant-7"
    assert request.header("x-absent") is None


def test_builtin_providers_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-o"}
    settings = model_settings({"model": "gpt-x"}, environ=env)
    assert settings is not None and settings.provider.id == "openai"
    assert settings.provider.base_url == "http://127.0.0.1:9/v1" and settings.provider.wire_api == "responses"
    model = settings.build(environ=env)
    assert isinstance(model, OpenAIResponsesModel) and model.endpoint == "http://127.0.0.1:9/v1/responses"
    plain = model_settings({"model": "gpt-x"}, environ={})
    assert plain is not None and plain.provider.base_url == "https://api.openai.com/v1"
    ollama = model_settings({"model": "qwen", "model_provider": "ollama"}, environ={})
    assert ollama is not None and ollama.provider.base_url == "http://localhost:11434/v1"
    assert model_settings({"mcp_servers": {}}, environ={}) is None
    # a table cannot redefine a built-in provider (as in Codex)
    kept = model_settings(
        {"model": "m", "model_providers": {"openai": {"base_url": "http://evil.example/v1"}}}, environ={}
    )
    assert kept is not None and kept.provider.base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": "m", "model_provider": "nope"}, "model_provider 'nope' is not defined"),
        ({"model": "m", "model_provider": "p", "model_providers": {"p": {"name": "P"}}}, "needs `base_url`"),
        (
            {
                "model": "m",
                "model_provider": "p",
                "model_providers": {"p": {"base_url": "http://x", "wire_api": "x"}},
            },
            "`wire_api` must be",
        ),
        ({"model": 3}, "`model` must be a non-empty string"),
    ],
)
def test_bad_provider_settings_are_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        model_settings(data, environ={})


def test_a_missing_key_is_a_config_error_that_names_the_variable() -> None:
    settings = model_settings(
        {
            "model": "m",
            "model_provider": "p",
            "model_providers": {"p": {"base_url": "http://x", "env_key": "P_KEY"}},
        },
        environ={},
    )
    assert settings is not None
    with pytest.raises(ConfigError, match=r"\$P_KEY"):
        settings.build(environ={})


def test_codex_runtime_run_works_from_a_codex_config_as_it_is(
    tmp_path: Path,
    server: RecordingServer,
    provider: ProviderStub,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from codex_runtime.cli import main

    monkeypatch.setenv("STUB_KEY", "sk-run")
    path = _write(
        tmp_path,
        f"""
model = "stub-model"
model_provider = "stub"

[model_providers.stub]
base_url = "{provider.base_url}"
env_key = "STUB_KEY"

[mcp_servers.apps]
url = "{server.url}"
apps = true
""",
    )
    provider.add(StubReply.tool_calls(("apps__echo", {"text": "hi"})), StubReply.text("The echo said hi."))
    assert main(["run", "--config", str(path), "Echo hi"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == '-> apps__echo {"text": "hi"}'
    assert out[-1] == "The echo said hi."  # streamed, printed once
    first, second = provider.chat_requests()
    assert first.path == "/v1/responses" and first.streamed and first.body["model"] == "stub-model"
    assert second.input[-1]["type"] == "function_call_output"
    assert first.header("authorization") == "Bearer sk-run"
    assert [c.arguments for c in server.tool_calls("echo")] == [{"text": "hi"}]

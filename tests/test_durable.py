"""`codex_runtime.durable` in one process: a durable turn end to end, and bad input.

DBOS runs on asyncio only: these tests run on asyncio, except the one that checks that the
runtime refuses trio. The crash tests (processes killed mid-turn) are in
``test_durable_crash.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dbos")

from codex_runtime import ServerConfig, Session, SqliteStore, TurnHeaders, TurnState
from codex_runtime.agent import ModelRequest, ModelResponse, ScriptedModel, ToolCall
from codex_runtime.durable import DurableError, DurableRuntime
from codex_runtime.store import SessionStore
from codex_runtime.testing import RecordingServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _sessions(server: RecordingServer) -> Any:
    def build(session_id: str, settings: Mapping[str, Any], store: SessionStore) -> Session:
        config = ServerConfig(name="rec", url=server.url, apps=True)
        return Session([config], store=store, session_id=session_id, hooks=[TurnHeaders()])

    return build


def _model(settings: Mapping[str, Any]) -> ScriptedModel:
    def answer(request: ModelRequest) -> ModelResponse:
        if request.step == 1:
            return ModelResponse(tool_calls=(ToolCall("rec__echo", {"text": settings["say"]}),))
        return ModelResponse(text=f"said {settings['say']}")

    return ScriptedModel([answer, answer])


async def test_a_durable_turn_runs_and_is_recorded(server: RecordingServer, tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        async with DurableRuntime(store, sessions=_sessions(server), models=_model) as runtime:
            first = await runtime.run_turn("s1", "hi", settings={"say": "one"}, metadata={"model": "m"})
            second = await runtime.run_turn("s1", "again", settings={"say": "two"})
            assert await runtime.unfinished_turns() == []
        assert (first.state, first.index, first.text) == (TurnState.COMPLETED, 1, "said one")
        assert (second.state, second.index) == (TurnState.COMPLETED, 2)
        stored = await store.get_session("s1")
        assert stored is not None
        assert [(t.turn_id, t.state, t.durable, t.input) for t in stored.turns] == [
            (first.turn_id, "completed", {"say": "one"}, "hi"),
            (second.turn_id, "completed", {"say": "two"}, "again"),
        ]
        assert stored.turns[0].metadata == {"model": "m"}
        messages = await store.load_messages("s1")
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"] * 2
    calls = server.tool_calls("echo")
    assert [c.arguments["text"] for c in calls] == ["one", "two"]
    turn_ids = [json.loads(c.headers["x-codex-turn-metadata"])["turn_id"] for c in calls]
    assert turn_ids == [first.turn_id, second.turn_id]


async def test_secrets_in_settings_are_refused_before_anything_is_queued(
    server: RecordingServer, tmp_path: Path
) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        async with DurableRuntime(store, sessions=_sessions(server), models=_model) as runtime:
            with pytest.raises(DurableError, match="secrets"):
                await runtime.submit_turn("s1", "hi", settings={"api_key": "sk-1"})
            with pytest.raises(DurableError, match="JSON"):
                await runtime.submit_turn("s1", "hi", settings={"x": object()})
            with pytest.raises(ValueError):
                await runtime.submit_turn("", "hi")
            assert await runtime.unfinished_turns() == []
        assert await store.list_sessions() == []


async def test_a_factory_that_ignores_the_store_fails_the_turn_clearly(
    server: RecordingServer, tmp_path: Path
) -> None:
    def wrong(session_id: str, settings: Mapping[str, Any], store: SessionStore) -> Session:
        return Session([ServerConfig(name="rec", url=server.url)], session_id=session_id)

    async with SqliteStore(tmp_path / "s.db") as store:
        async with DurableRuntime(store, sessions=wrong, models=_model) as runtime:
            result = await runtime.run_turn("s1", "hi", settings={"say": "x"})
    assert result.state is TurnState.FAILED
    assert result.error is not None and "store=store" in result.error
    assert server.tool_calls() == []


async def test_one_runtime_per_process(server: RecordingServer, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    async with DurableRuntime(store, sessions=_sessions(server), models=_model):
        with pytest.raises(DurableError, match="already open"):
            async with DurableRuntime(store, sessions=_sessions(server), models=_model):
                pass
    await store.aclose()


def test_bad_arguments(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(TypeError):
        DurableRuntime(object(), sessions=_sessions, models=_model)  # type: ignore[arg-type]
    with pytest.raises(DurableError):
        DurableRuntime(store, sessions=_sessions, models=_model, database_url="mysql://x")
    with pytest.raises(ValueError):
        DurableRuntime(store, sessions=_sessions, models=_model, loop_options={"model": 1})
    with pytest.raises(ValueError):
        DurableRuntime(store, sessions=_sessions, models=_model, takeover_after=0.5, heartbeat=1.0)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_durable_layer_refuses_trio(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(DurableError, match="asyncio only"):
        async with DurableRuntime(store, sessions=_sessions, models=_model):
            pass
    await store.aclose()

"""`codex_runtime.store`: a session's history in SQLite, resume, lost turns, no secrets.

Sessions talk to real loopback MCP servers; assertions read the store back (and the
database file's bytes, for the secrets).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

from codex_runtime import (
    AbortReason,
    ConfigError,
    ForwardHeaders,
    HeaderPolicy,
    ServerConfig,
    Session,
    SqliteStore,
    StoreError,
    TurnHeaders,
    TurnState,
)
from codex_runtime.agent import AgentLoop, Message, ScriptedModel, ToolCall
from codex_runtime.store import SCHEMA_VERSION, StoredToolCall, StoredTurn
from codex_runtime.testing import RecordingServer

pytestmark = pytest.mark.anyio


def _cfg(server: RecordingServer, **options: Any) -> ServerConfig:
    return ServerConfig(name="tools", url=server.url, **options)


async def test_a_session_records_its_turns_and_tool_calls(server: RecordingServer, tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        async with Session([_cfg(server)], store=store) as session:
            async with session.turn(metadata={"model": "m1"}) as turn:
                await turn.call_tool("tools", "echo", {"text": "hi"})
                await turn.call_tool("tools", "fail", {"message": "nope"})
                turn.metadata["effort"] = "high"
            with pytest.raises(RuntimeError):
                async with session.turn() as failing:
                    raise RuntimeError("boom")
        stored = await store.get_session(session.session_id)
        assert stored is not None
        first, second = stored.turns
        assert (first.turn_id, first.index, first.state) == (turn.id, 1, "completed")
        assert first.metadata == {"model": "m1", "effort": "high"}
        assert [s for s, _ in first.states] == ["pending", "running", "completed"]
        assert first.ended_at is not None and first.ended_at >= first.started_at
        assert (second.turn_id, second.index, second.state) == (failing.id, 2, "failed")
        assert second.error == "RuntimeError: boom"
        calls = await store.tool_calls(turn.id)
        assert [(c.seq, c.tool, c.status) for c in calls] == [(1, "echo", "ok"), (2, "fail", "error")]
        assert calls[0].arguments == {"text": "hi"}
        assert json.loads(calls[0].result or "")["arguments"] == {"text": "hi"}
        assert calls[1].result == "nope"
    # What the server ran is what was recorded.
    assert [c.tool for c in server.tool_calls()] == ["echo", "fail"]


async def test_resume_continues_indexes_and_the_conversation(server: RecordingServer, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    model = ScriptedModel([ToolCall("tools__echo", {"text": "one"}), "first answer", "second answer"])
    async with Session([_cfg(server)], store=store) as session:
        loop = AgentLoop(session, model, instructions="be brief")
        result = await loop.run_turn("hello")
        assert result.text == "first answer"
    await store.aclose()  # a later use reopens the file

    async with Session([_cfg(server)], store=store, session_id=session.session_id) as again:
        loop2 = AgentLoop(again, model, instructions="be brief")
        result2 = await loop2.run_turn("and again")
        assert result2.turn.index == 2
    sent = model.requests[-1].messages
    assert [m.role for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[1] == Message.user("hello") and sent[-1] == Message.user("and again")
    assert sent[3].tool_call_id == sent[2].tool_calls[0].id
    stored = await store.get_session(session.session_id)
    assert stored is not None and [t.index for t in stored.turns] == [1, 2]
    assert len(await store.load_messages(session.session_id)) == 7
    assert [c.tool for c in server.tool_calls()] == ["echo"]
    await store.aclose()


async def test_reset_replaces_the_stored_conversation(server: RecordingServer, tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "s.db") as store:
        async with Session([_cfg(server)], store=store) as session:
            loop = AgentLoop(session, ScriptedModel(["a", "b"]))
            await loop.run_turn("one")
            loop.reset()
            await loop.run_turn("two")
        stored = await store.load_messages(session.session_id)
        assert [Message.from_json(m) for m in stored] == [Message.user("two"), Message.assistant("b")]


_CHILD = textwrap.dedent(
    """
    import sys, anyio
    from codex_runtime import ServerConfig, Session, SqliteStore

    async def main(url, path, session_id):
        store = SqliteStore(path)
        async with Session([ServerConfig(name="tools", url=url)], store=store, session_id=session_id) as s:
            async with s.turn() as turn:
                await turn.call_tool("tools", "echo", {"text": "done before the crash"})
                print(turn.id, flush=True)
                await turn.call_tool("tools", "block", {"key": sys.argv[4]})

    anyio.run(main, *sys.argv[1:4])
    """
)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )


def _files(directory: Path, prefix: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name.startswith(prefix)}


async def test_a_turn_left_running_by_a_killed_process_is_lost(
    server: RecordingServer, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    session_id = f"killed-{os.getpid()}-{id(path)}"
    key = f"lost-{id(path)}"
    child = _spawn(server.url, str(path), session_id, key)
    try:
        assert child.stdout is not None
        turn_id = (await anyio.to_thread.run_sync(child.stdout.readline)).decode().strip()
        await server.wait_for_calls("block", 1)
    finally:
        child.send_signal(signal.SIGKILL)
        await anyio.to_thread.run_sync(child.wait)
        server.release(key)
    async with SqliteStore(path) as store:
        before = await store.get_session(session_id)
        assert before is not None and [t.state for t in before.turns] == ["pending"]
        async with Session([_cfg(server)], store=store, session_id=session_id) as session:
            async with session.turn() as turn:
                pass
        assert turn.index == 2
        stored = await store.get_session(session_id)
        assert stored is not None
        lost, new = stored.turns
        assert (lost.turn_id, lost.state, lost.abort_reason) == (turn_id, "aborted", AbortReason.LOST.value)
        assert [s for s, _ in lost.states][-1] == "aborted"
        assert new.state == TurnState.COMPLETED.value


async def test_no_header_value_or_secret_reaches_the_file(server: RecordingServer, tmp_path: Path) -> None:
    secrets = ["STATIC-s3cr3t-1", "CALL-s3cr3t-2", "FORWARDED-s3cr3t-3", "META-s3cr3t-4", "ARG-s3cr3t-5"]
    path = tmp_path / "s.db"
    config = _cfg(server, headers={"authorization": f"Bearer {secrets[0]}"}, apps=True, forward=True)
    async with SqliteStore(path) as store:
        hooks = [TurnHeaders(), ForwardHeaders(HeaderPolicy.smg())]
        async with Session([config], store=store, hooks=hooks) as session:
            model = ScriptedModel([ToolCall("tools__headers"), ToolCall("tools__echo"), "done"])
            loop = AgentLoop(session, model)
            await loop.run_turn(
                "go",
                metadata={"model": "m", "api_token": secrets[3]},
                forwarded_headers={"x-smg-oci-delegation-token": secrets[2], "x-request-id": "r1"},
            )
            async with session.turn() as turn:
                await turn.call_tool(
                    "tools", "echo", {"data": {"password": secrets[4]}}, headers={"x-api-key": secrets[1]}
                )
        # The server did receive them: the test would catch a store that kept them.
        calls = server.tool_calls()
        received = json.dumps([c.headers for c in calls] + [c.meta for c in calls])
        assert secrets[0] in received and secrets[1] in received and secrets[2] in received
        stored = await store.get_session(session.session_id)
        assert stored is not None and len(stored.turns) == 2
    raw = b"".join(_files(tmp_path, "s.db").values())
    for secret in secrets:
        assert secret.encode() not in raw, secret


async def test_a_corrupt_or_foreign_file_is_refused_untouched(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database\n" * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE other(x)")
    db.close()
    truncated = tmp_path / "truncated.db"
    async with SqliteStore(tmp_path / "good.db") as good:
        await good.open_session("x")
    truncated.write_bytes((tmp_path / "good.db").read_bytes()[:150])
    for path in (corrupt, foreign, truncated):
        before = path.read_bytes()
        store = SqliteStore(path)
        with pytest.raises(ConfigError, match=r"left untouched|not a codex-runtime"):
            await store.list_sessions()
        with pytest.raises(ConfigError):
            async with Session(store=store):
                pass
        await store.aclose()
        assert path.read_bytes() == before
        assert list(_files(tmp_path, path.name)) == [path.name]


async def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SqliteStore(path) as store:
        await store.open_session("a")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    store = SqliteStore(path)
    with pytest.raises(ConfigError, match="newer codex-runtime"):
        await store.get_session("a")
    await store.aclose()
    assert path.read_bytes() == before


async def test_opens_lazily_and_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "s.db"
    store = SqliteStore(path)
    assert not path.exists()
    assert await store.list_sessions() == []
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    await store.aclose()
    empty = tmp_path / "empty.db"
    empty.touch()
    async with SqliteStore(empty) as store2:
        assert await store2.open_session("s") == 0
        with sqlite3.connect(empty) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()


async def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SqliteStore(":memory:")
    with pytest.raises(TypeError):
        SqliteStore(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Session(store=object())  # type: ignore[arg-type]
    async with SqliteStore(tmp_path / "s.db") as store:
        with pytest.raises(ValueError):
            await store.save_messages("s", -1, [])


class _BrokenStore(SqliteStore):
    async def record_turn(self, turn: StoredTurn, tool_calls: Any = ()) -> None:
        raise StoreError("disk full")


async def test_a_failing_store_never_fails_a_turn(
    server: RecordingServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _BrokenStore(tmp_path / "s.db") as store, Session([_cfg(server)], store=store) as session:
        async with session.turn() as turn:
            await turn.call_tool("tools", "echo", {"text": "x"})
    assert turn.outcome is not None and turn.outcome.ok
    assert "recording turn" in caplog.text
    assert len(server.tool_calls("echo")) == 1


async def test_two_processes_share_one_file(tmp_path: Path) -> None:
    # Writers from several connections (as several processes would) wait for each other.
    path = tmp_path / "s.db"
    stores = [SqliteStore(path) for _ in range(3)]

    async def write(store: SqliteStore, n: int) -> None:
        for i in range(20):
            turn = StoredTurn(f"t-{n}-{i}", f"s{n}", i + 1, "completed", {}, 1.0, 2.0)
            call = StoredToolCall(turn.turn_id, 1, "srv", "tool", {}, "ok", "r", None, 1.0, 2.0)
            await store.record_turn(turn, [call])

    async with anyio.create_task_group() as tg:
        for n, store in enumerate(stores):
            tg.start_soon(write, store, n)
    sessions = await stores[0].list_sessions()
    assert sorted(len(s.turns) for s in sessions) == [20, 20, 20]
    for store in stores:
        await store.aclose()

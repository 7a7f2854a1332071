"""Durable turns killed with SIGKILL at each interesting point, then run to the end.

Each test runs real worker processes (``tests/durable_worker.py``) against a real MCP
server in a child process (`RecordingServer.subprocess()`), kills a worker mid-turn,
starts one again and asserts on what the server recorded: every tool ran at most once,
an idempotent one was sent again, the turn kept its id (and its turn headers), the
conversation is whole. On SQLite, and on PostgreSQL when ``CODEX_RUNTIME_TEST_POSTGRES``
holds a server URL (``.ci/run`` starts a throwaway one).

These tests start many processes: they run in their own CI step (marker
``durable_crash``), and only when ``CODEX_RUNTIME_CRASH_TESTS=1`` or a Postgres URL is set.
DBOS is asyncio-only, so they run on asyncio.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

pytest.importorskip("dbos")

from codex_runtime import SqliteStore
from codex_runtime.durable import QUEUE_NAME, UNKNOWN_OUTCOME, WORKFLOW_NAME
from codex_runtime.testing import RecordedToolCall, RecordingServer, SubprocessRecordingServer

POSTGRES = os.environ.get("CODEX_RUNTIME_TEST_POSTGRES")
ENABLED = bool(os.environ.get("CODEX_RUNTIME_CRASH_TESTS") or POSTGRES)
WORKER = Path(__file__).with_name("durable_worker.py")
ROOT = str(Path(__file__).resolve().parent.parent)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.durable_crash,
    pytest.mark.skipif(not ENABLED, reason="set CODEX_RUNTIME_CRASH_TESTS=1 (or a Postgres URL) to run"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # DBOS runs on asyncio only


def _postgres_database() -> str:
    if not POSTGRES:
        pytest.skip("CODEX_RUNTIME_TEST_POSTGRES is not set")
    return POSTGRES.rsplit("/", 1)[0] + f"/crash_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """DBOS's database: None (SQLite beside the store) or a fresh Postgres database."""
    return None if request.param == "sqlite" else _postgres_database()


@pytest.fixture
def rec() -> Iterator[SubprocessRecordingServer]:
    with RecordingServer.subprocess("rec") as server:
        yield server


class Workers:
    """Starts `durable_worker.py` processes that share one store and one database."""

    def __init__(self, tmp_path: Path, server_url: str, database: str | None) -> None:
        self.store = tmp_path / "store.db"
        self.markers = tmp_path
        self.server_url = server_url
        self.database = database

    def command(self, script: list[dict[str, Any]], *extra: str) -> list[str]:
        args = [sys.executable, str(WORKER), "--store", str(self.store), "--server", self.server_url]
        args += ["--script", json.dumps(script), "--markers", str(self.markers)]
        if self.database is not None:
            args += ["--database", self.database]
        return [*args, *extra]

    @staticmethod
    def env() -> dict[str, str]:
        path = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": ROOT if not path else os.pathsep.join((ROOT, path))}

    async def run(self, script: list[dict[str, Any]], *extra: str) -> tuple[int, list[dict[str, Any]]]:
        done = await anyio.run_process(self.command(script, *extra), check=False, env=self.env())
        lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
        if done.returncode not in (0, -9):
            raise AssertionError(done.stderr.decode()[-3000:])
        return done.returncode, lines

    async def start(self, script: list[dict[str, Any]], *extra: str) -> anyio.abc.Process:
        return await anyio.open_process(self.command(script, *extra), env=self.env())


async def _first_line(process: anyio.abc.Process) -> dict[str, Any]:
    assert process.stdout is not None
    buffer = b""
    async for chunk in process.stdout:
        buffer += chunk
        if b"\n" in buffer:
            break
    line = buffer.split(b"\n", 1)[0]
    return dict(json.loads(line))


def _turn_ids(calls: list[RecordedToolCall]) -> set[str]:
    """The turn id each call carried in its `x-codex-turn-metadata` header."""
    return {json.loads(c.headers["x-codex-turn-metadata"])["turn_id"] for c in calls}


async def _check_stored_turn(workers: Workers, turn_id: str) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    async with SqliteStore(workers.store) as store:
        stored = await store.get_session("s1")
        assert stored is not None
        [turn] = [t for t in stored.turns if t.turn_id == turn_id]
        calls = await store.tool_calls(turn_id)
        messages = await store.load_messages("s1")
    assert turn.state == "completed" and turn.index == 1
    assert turn.durable == {"server": workers.server_url}
    # Whole: each tool call answered exactly once, and one final answer.
    asked = [c["id"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls", ())]
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert sorted(asked) == sorted(answered) and len(set(asked)) == len(asked)
    assert messages[0] == {"role": "user", "content": "go"}
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"].startswith("done")
    return turn, calls, messages


async def test_killed_during_a_model_call(
    tmp_path: Path, rec: SubprocessRecordingServer, database: str | None
) -> None:
    workers = Workers(tmp_path, rec.url, database)
    script = [
        {"calls": [{"name": "rec__echo", "arguments": {"text": "once"}}]},
        {"kill": "model"},
        {"text": "done"},
    ]
    code, lines = await workers.run(script, "--submit", "go")
    assert code == -9 and "result" not in lines[-1]
    turn_id = lines[0]["submitted"]
    code, lines = await workers.run(script, "--drain")
    assert code == 0
    assert lines[-1]["result"]["state"] == "completed" and lines[-1]["result"]["turn_id"] == turn_id
    echo = rec.tool_calls("echo")
    assert len(echo) == 1 and echo[0].outcome == "ok"
    assert _turn_ids(rec.tool_calls()) == {turn_id}
    _, calls, _ = await _check_stored_turn(workers, turn_id)
    assert [(c.tool, c.status) for c in calls] == [("echo", "ok")]


async def test_a_tool_in_flight_is_not_sent_again(
    tmp_path: Path, rec: SubprocessRecordingServer, database: str | None
) -> None:
    workers = Workers(tmp_path, rec.url, database)
    key = uuid.uuid4().hex
    script = [{"calls": [{"name": "rec__block", "arguments": {"key": key}}]}, {"text": "done"}]
    process = await workers.start(script, "--submit", "go")
    try:
        turn_id = (await _first_line(process))["submitted"]
        await rec.wait_for_calls("block", 1, timeout=60)
    finally:
        process.kill()
        await process.wait()
    code, lines = await workers.run(script, "--drain")
    assert code == 0 and lines[-1]["result"]["state"] == "completed"
    assert len(rec.tool_calls("block")) == 1  # never resent
    assert UNKNOWN_OUTCOME[:40] in lines[-1]["result"]["text"]
    _, calls, messages = await _check_stored_turn(workers, turn_id)
    assert [(c.tool, c.status) for c in calls] == [("block", "unknown")]
    [tool_message] = [m for m in messages if m["role"] == "tool"]
    assert tool_message["content"] == UNKNOWN_OUTCOME and tool_message["is_error"]


async def test_an_idempotent_tool_in_flight_is_sent_again(
    tmp_path: Path, rec: SubprocessRecordingServer, database: str | None
) -> None:
    workers = Workers(tmp_path, rec.url, database)
    key = uuid.uuid4().hex
    script = [
        {"calls": [{"name": "rec__lookup", "arguments": {"key": key, "seconds": 120}}]},
        {"text": "done"},
    ]
    process = await workers.start(script, "--submit", "go")
    try:
        turn_id = (await _first_line(process))["submitted"]
        await rec.wait_for_calls("lookup", 1, timeout=60)
    finally:
        process.kill()
        await process.wait()
    code, lines = await workers.run(script, "--drain")
    assert code == 0 and lines[-1]["result"]["state"] == "completed"
    lookups = rec.tool_calls("lookup")
    assert len(lookups) == 2 and lookups[1].outcome == "ok"  # annotated idempotent: resent
    assert _turn_ids(lookups) == {turn_id}
    _, calls, messages = await _check_stored_turn(workers, turn_id)
    assert [(c.tool, c.status) for c in calls] == [("lookup", "ok")]
    assert [m["content"] for m in messages if m["role"] == "tool"] == [f"found {key}"]


async def test_killed_between_two_tool_calls(
    tmp_path: Path, rec: SubprocessRecordingServer, database: str | None
) -> None:
    workers = Workers(tmp_path, rec.url, database)
    calls = [
        {"name": "rec__echo", "arguments": {"text": "first"}},
        {"name": "rec__echo", "arguments": {"text": "second"}},
    ]
    script = [{"calls": calls}, {"text": "done"}]
    code, lines = await workers.run(script, "--submit", "go", "--kill-after-tool", "1")
    assert code == -9
    turn_id = lines[0]["submitted"]
    assert [c.arguments["text"] for c in rec.tool_calls("echo")] == ["first"]
    code, lines = await workers.run(script, "--drain", "--kill-after-tool", "1")
    assert code == 0 and lines[-1]["result"]["state"] == "completed"
    assert [c.arguments["text"] for c in rec.tool_calls("echo")] == ["first", "second"]
    assert _turn_ids(rec.tool_calls()) == {turn_id}
    # One continuous turn: the same turn entries before and after the crash.
    assert len({c.headers["x-codex-turn-metadata"] for c in rec.tool_calls()}) == 1
    _, stored_calls, messages = await _check_stored_turn(workers, turn_id)
    assert [(c.tool, c.status) for c in stored_calls] == [("echo", "ok"), ("echo", "ok")]
    assert len([m for m in messages if m["role"] == "tool"]) == 2


async def test_killed_during_end_hooks(
    tmp_path: Path, rec: SubprocessRecordingServer, database: str | None
) -> None:
    workers = Workers(tmp_path, rec.url, database)
    script = [{"calls": [{"name": "rec__echo", "arguments": {"text": "once"}}]}, {"text": "done"}]
    code, lines = await workers.run(script, "--submit", "go", "--kill-in-end-hook")
    assert code == -9
    turn_id = lines[0]["submitted"]
    code, lines = await workers.run(script, "--drain", "--kill-in-end-hook")
    assert code == 0 and lines[-1]["result"]["state"] == "completed"
    assert lines[-1]["result"]["turn_id"] == turn_id
    assert len(rec.tool_calls("echo")) == 1
    turn, _, _ = await _check_stored_turn(workers, turn_id)
    assert turn.hook_errors == ()


# -- two workers on one Postgres ------------------------------------------------------------


class Client:
    """Queues turns and reads their results like any process on the database (no worker)."""

    def __init__(self, database: str) -> None:
        from dbos import DBOSClient, DBOSPortableJSONSerializer

        self._client = DBOSClient(system_database_url=database, serializer=DBOSPortableJSONSerializer())

    def submit(self, session_id: str, server_url: str) -> str:
        from dbos import EnqueueOptions, WorkflowSerializationFormat

        turn_id = uuid.uuid4().hex
        options: EnqueueOptions = {
            "workflow_name": WORKFLOW_NAME,
            "queue_name": QUEUE_NAME,
            "workflow_id": turn_id,
            "queue_partition_key": session_id,
            "serialization_type": WorkflowSerializationFormat.PORTABLE,
        }
        self._client.enqueue(options, session_id, "go", {"server": server_url}, {})
        return turn_id

    def result(self, turn_id: str) -> dict[str, Any]:
        return dict(self._client.retrieve_workflow(turn_id).get_result())

    def executor(self, turn_id: str) -> str:
        [status] = self._client.list_workflows(workflow_ids=[turn_id])
        return str(status.executor_id)

    def close(self) -> None:
        self._client.destroy()


@pytest.fixture
def two_workers_database() -> str:
    return _postgres_database()


async def _serve(workers: Workers, script: list[dict[str, Any]], executor: str) -> anyio.abc.Process:
    process = await workers.start(script, "--serve", "--executor", executor, "--takeover-after", "1.5")
    assert (await _first_line(process)) == {"serving": executor}
    return process


async def _stop(process: anyio.abc.Process) -> None:
    if process.returncode is None:
        assert process.stdin is not None
        await process.stdin.aclose()  # a worker serves until its stdin closes
        with anyio.move_on_after(30):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_two_workers_one_turn_at_a_time_per_session(
    tmp_path: Path, two_workers_database: str, server: RecordingServer
) -> None:
    key = f"two-{uuid.uuid4().hex[:8]}"
    script = [{"calls": [{"name": "rec__block", "arguments": {"key": key}}]}, {"text": "done"}]
    workers = Workers(tmp_path, server.url, two_workers_database)
    a = await _serve(workers, script, "a")
    b = await _serve(workers, script, "b")
    client = await anyio.to_thread.run_sync(Client, two_workers_database)  # the workers made the database
    try:
        first = await anyio.to_thread.run_sync(client.submit, "s1", server.url)
        second = await anyio.to_thread.run_sync(client.submit, "s1", server.url)
        other = await anyio.to_thread.run_sync(client.submit, "s2", server.url)
        # Both sessions block at once; the second turn of s1 waits for the first.
        await server.wait_for_calls("block", 2, timeout=60)
        sessions = [json.loads(c.headers["x-codex-turn-metadata"])["session_id"] for c in server.tool_calls()]
        assert sorted(sessions) == ["s1", "s2"]
        server.release(key)
        for turn_id in (first, second, other):
            result = await anyio.to_thread.run_sync(client.result, turn_id)
            assert result["state"] == "completed", result
        s1 = [
            c
            for c in server.tool_calls("block")
            if json.loads(c.headers["x-codex-turn-metadata"])["session_id"] == "s1"
        ]
        s1.sort(key=lambda c: c.started_at)
        assert len(s1) == 2 and s1[0].ended_at is not None and s1[0].ended_at <= s1[1].started_at
        assert _turn_ids(s1) == {first, second}
        executors = {await anyio.to_thread.run_sync(client.executor, t) for t in (first, second, other)}
        assert executors <= {"a", "b"}
    finally:
        server.release_all()
        await _stop(a)
        await _stop(b)
        await anyio.to_thread.run_sync(client.close)


async def test_killing_a_worker_moves_its_turn_to_the_other(
    tmp_path: Path, two_workers_database: str, rec: SubprocessRecordingServer
) -> None:
    key = uuid.uuid4().hex
    script = [
        {"calls": [{"name": "rec__lookup", "arguments": {"key": key, "seconds": 120}}]},
        {"text": "done"},
    ]
    workers = Workers(tmp_path, rec.url, two_workers_database)
    a = await _serve(workers, script, "a")
    b = await _serve(workers, script, "b")
    client = await anyio.to_thread.run_sync(Client, two_workers_database)  # the workers made the database
    try:
        turn_id = await anyio.to_thread.run_sync(client.submit, "s1", rec.url)
        await rec.wait_for_calls("lookup", 1, timeout=60)
        owner = await anyio.to_thread.run_sync(client.executor, turn_id)
        victim, survivor = (a, "b") if owner == "a" else (b, "a")
        victim.kill()
        await victim.wait()
        result = await anyio.to_thread.run_sync(client.result, turn_id)
        assert result["state"] == "completed" and result["turn_id"] == turn_id
        assert await anyio.to_thread.run_sync(client.executor, turn_id) == survivor
        lookups = rec.tool_calls("lookup")
        assert len(lookups) == 2 and _turn_ids(lookups) == {turn_id}
    finally:
        await _stop(a)
        await _stop(b)
        await anyio.to_thread.run_sync(client.close)

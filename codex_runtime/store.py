"""Session stores: where sessions, turns, tool calls and conversations outlive the process.

`SqliteStore(path)` is the embedded default: one SQLite file (standard library
``sqlite3``, run off the event loop in worker threads), WAL mode so readers never wait for
the writer, one writer at a time, and a versioned schema migrated forward on open::

    async with SqliteStore("sessions.db") as store:
        async with Session(servers, store=store) as session:
            ...
        async with Session(servers, store=store, session_id=session.session_id) as again:
            ...  # turn indexes go on; AgentLoop(again, model) gets its conversation back

A file that is not a store (corrupt, another program's database) or that a newer version
of codex-runtime wrote raises `ConfigError` when first used, and is left untouched.
Nothing secret is written: the session never hands header values or tokens to a store,
and values under secret-looking keys in metadata and tool arguments are redacted.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ._server_config import ConfigError
from ._session_store import SessionStore, StoredSession, StoredToolCall, StoredTurn, scrub
from .headers import CodexRuntimeError

__all__ = [
    "SCHEMA_VERSION",
    "SessionStore",
    "SqliteStore",
    "StoreError",
    "StoredSession",
    "StoredToolCall",
    "StoredTurn",
]

T = TypeVar("T")

#: The schema version this code writes; it migrates older files forward to it.
SCHEMA_VERSION = 1
_APPLICATION_ID = 0x43525354  # "CRST": marks the file as a codex-runtime store
_SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(CodexRuntimeError):
    """A store operation failed (the disk is full, the file is locked too long...)."""


def _migrate_to_1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE turns (
            turn_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(session_id),
            idx INTEGER NOT NULL,
            state TEXT NOT NULL,
            abort_reason TEXT,
            error TEXT,
            metadata TEXT NOT NULL,
            states TEXT NOT NULL,
            hook_errors TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            durable TEXT,
            input TEXT
        )"""
    )
    db.execute("CREATE INDEX turns_by_session ON turns(session_id, idx)")
    db.execute(
        """CREATE TABLE tool_calls (
            turn_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            server TEXT NOT NULL,
            tool TEXT NOT NULL,
            arguments TEXT,
            status TEXT NOT NULL,
            result TEXT,
            error TEXT,
            started_at REAL NOT NULL,
            ended_at REAL,
            PRIMARY KEY (turn_id, seq)
        )"""
    )
    db.execute(
        """CREATE TABLE messages (
            session_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            message TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        )"""
    )


# Index i migrates a file from schema version i to i + 1.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migrate_to_1,)
assert len(_MIGRATIONS) == SCHEMA_VERSION


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _turn_from_row(row: sqlite3.Row) -> StoredTurn:
    return StoredTurn(
        turn_id=row["turn_id"],
        session_id=row["session_id"],
        index=row["idx"],
        state=row["state"],
        metadata=json.loads(row["metadata"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        abort_reason=row["abort_reason"],
        error=row["error"],
        hook_errors=tuple(json.loads(row["hook_errors"])),
        states=tuple((s, t) for s, t in json.loads(row["states"])),
        durable=json.loads(row["durable"]) if row["durable"] is not None else None,
        input=row["input"],
    )


class SqliteStore:
    """A `SessionStore` in one SQLite file (created on first use, mode 0600).

    Opens lazily on first use; ``await store.aclose()`` (or ``async with store``)
    closes it, and a later use opens it again. Several processes may share one file
    (WAL; writers wait up to ``busy_timeout`` seconds for each other).

    Raises `ConfigError` on first use when the file is not a codex-runtime store (a
    corrupt file, another program's database) or was written by a newer version; the
    file is not modified then. Other failures raise `StoreError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise TypeError("SqliteStore() takes a file path")
        if str(path) == ":memory:":
            raise ValueError("SqliteStore needs a file (an in-memory database is one per connection)")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or busy_timeout <= 0:
            raise ValueError("busy_timeout must be a positive number of seconds")
        self.path = Path(path)
        self.busy_timeout = float(busy_timeout)
        self._db: sqlite3.Connection | None = None
        # One connection, used by one worker thread at a time: the process's one writer.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the file (a later use opens it again)."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    # -- opening -----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self.path
        existed = path.exists() and path.stat().st_size > 0
        if existed:
            with open(path, "rb") as fh:
                if fh.read(16) != _SQLITE_MAGIC:
                    raise ConfigError(
                        f"{path} is not a codex-runtime session store (not an SQLite database, or "
                        "corrupt); it was left untouched: pass another path"
                    )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            db = sqlite3.connect(
                f"file:{path}?mode=rw",
                uri=True,
                timeout=self.busy_timeout,
                check_same_thread=False,
                isolation_level=None,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the session store {path}: {exc}") from None
        try:
            db.row_factory = sqlite3.Row
            self._check_and_migrate(db, existed)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        return db

    def _check_and_migrate(self, db: sqlite3.Connection, existed: bool) -> None:
        path = self.path

        def read() -> tuple[int, int, int]:
            try:
                app_id = db.execute("PRAGMA application_id").fetchone()[0]
                version = db.execute("PRAGMA user_version").fetchone()[0]
                tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise ConfigError(
                    f"{path} is not a readable codex-runtime session store ({exc}); it was left "
                    "untouched: pass another path"
                ) from None
            return int(app_id), int(version), int(tables)

        def check(app_id: int, version: int, tables: int) -> None:
            if app_id != _APPLICATION_ID and (app_id != 0 or tables):
                raise ConfigError(
                    f"{path} is an SQLite database of another program, not a codex-runtime session "
                    "store; it was left untouched: pass another path"
                )
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{path} was written by a newer codex-runtime (store schema {version}; this "
                    f"version reads up to {SCHEMA_VERSION}); upgrade codex-runtime or use another file"
                )

        app_id, version, _ = read()
        if app_id == _APPLICATION_ID and version == SCHEMA_VERSION:
            return
        if app_id == _APPLICATION_ID:
            check(app_id, version, 1)
        # Anything else is decided under the write lock: another process may be creating or
        # migrating the file right now. Nothing is written to a file that is refused.
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"{path} cannot be opened as a session store ({exc}); it was left untouched"
            ) from None
        try:
            app_id, version, tables = read()
            check(app_id, version, tables)
            for migrate in _MIGRATIONS[version:]:
                migrate(db)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # -- running in a worker thread ------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._db is None:
                self._db = self._open()
            db = self._db
            try:
                return fn(db, *args)
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"session store {self.path}: {type(exc).__name__}: {exc}") from None
                raise

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(self._call, fn, *args))

    @staticmethod
    def _write(db: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        db.execute("BEGIN IMMEDIATE")
        result = fn(db, *args)
        db.execute("COMMIT")
        return result

    # -- the protocol ---------------------------------------------------------------------

    async def open_session(self, session_id: str) -> int:
        return await self._run(self._write, self._open_session, session_id, time.time())

    @staticmethod
    def _open_session(db: sqlite3.Connection, session_id: str, now: float) -> int:
        db.execute(
            "INSERT INTO sessions(session_id, created_at, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(session_id) DO UPDATE SET updated_at = excluded.updated_at",
            (session_id, now, now),
        )
        lost = db.execute(
            "SELECT turn_id, states FROM turns WHERE session_id = ? AND state IN ('pending', 'running') "
            "AND durable IS NULL",
            (session_id,),
        ).fetchall()
        for row in lost:
            states = [*json.loads(row["states"]), ["aborted", now]]
            db.execute(
                "UPDATE turns SET state = 'aborted', abort_reason = 'lost', ended_at = ?, states = ?, "
                "error = 'the process running the turn ended before the turn did' WHERE turn_id = ?",
                (now, _dumps(states), row["turn_id"]),
            )
        top = db.execute("SELECT max(idx) FROM turns WHERE session_id = ?", (session_id,)).fetchone()[0]
        return int(top or 0)

    async def record_turn(self, turn: StoredTurn, tool_calls: Sequence[StoredToolCall] = ()) -> None:
        await self._run(self._write, self._record_turn, turn, tuple(tool_calls))

    @staticmethod
    def _record_turn(db: sqlite3.Connection, turn: StoredTurn, calls: tuple[StoredToolCall, ...]) -> None:
        now = time.time()
        db.execute(
            "INSERT INTO sessions(session_id, created_at, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(session_id) DO UPDATE SET updated_at = excluded.updated_at",
            (turn.session_id, now, now),
        )
        db.execute(
            "INSERT OR REPLACE INTO turns(turn_id, session_id, idx, state, abort_reason, error, metadata, "
            "states, hook_errors, started_at, ended_at, durable, input) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                turn.turn_id,
                turn.session_id,
                turn.index,
                turn.state,
                turn.abort_reason,
                turn.error,
                _dumps(scrub(turn.metadata)),
                _dumps([list(s) for s in turn.states]),
                _dumps(list(turn.hook_errors)),
                turn.started_at,
                turn.ended_at,
                _dumps(scrub(turn.durable)) if turn.durable is not None else None,
                turn.input,
            ),
        )
        if calls:
            db.executemany(
                "INSERT OR REPLACE INTO tool_calls(turn_id, seq, server, tool, arguments, status, result, "
                "error, started_at, ended_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.turn_id,
                        c.seq,
                        c.server,
                        c.tool,
                        _dumps(scrub(c.arguments)) if c.arguments is not None else None,
                        c.status,
                        c.result,
                        c.error,
                        c.started_at,
                        c.ended_at,
                    )
                    for c in calls
                ],
            )

    async def save_messages(self, session_id: str, first: int, messages: Sequence[Mapping[str, Any]]) -> None:
        if isinstance(first, bool) or not isinstance(first, int) or first < 0:
            raise ValueError("first must be a position >= 0")
        rows = [(session_id, first + i, _dumps(scrub(m))) for i, m in enumerate(messages)]
        await self._run(self._write, self._save_messages, session_id, first, rows)

    @staticmethod
    def _save_messages(
        db: sqlite3.Connection, session_id: str, first: int, rows: list[tuple[str, int, str]]
    ) -> None:
        db.execute("DELETE FROM messages WHERE session_id = ? AND seq >= ?", (session_id, first))
        db.executemany("INSERT INTO messages(session_id, seq, message) VALUES (?, ?, ?)", rows)

    async def load_messages(self, session_id: str) -> list[dict[str, Any]]:
        return await self._run(self._load_messages, session_id)

    @staticmethod
    def _load_messages(db: sqlite3.Connection, session_id: str) -> list[dict[str, Any]]:
        rows = db.execute(
            "SELECT message FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
        ).fetchall()
        return [json.loads(r["message"]) for r in rows]

    async def get_session(self, session_id: str) -> StoredSession | None:
        found = await self._run(self._sessions, session_id)
        return found[0] if found else None

    async def list_sessions(self) -> list[StoredSession]:
        return await self._run(self._sessions, None)

    @staticmethod
    def _sessions(db: sqlite3.Connection, session_id: str | None) -> list[StoredSession]:
        if session_id is None:
            rows = db.execute("SELECT * FROM sessions ORDER BY created_at, session_id").fetchall()
            turn_rows = db.execute("SELECT * FROM turns ORDER BY session_id, idx").fetchall()
        else:
            rows = db.execute("SELECT * FROM sessions WHERE session_id = ?", (session_id,)).fetchall()
            turn_rows = db.execute(
                "SELECT * FROM turns WHERE session_id = ? ORDER BY idx", (session_id,)
            ).fetchall()
        turns: dict[str, list[StoredTurn]] = {}
        for row in turn_rows:
            turns.setdefault(row["session_id"], []).append(_turn_from_row(row))
        return [
            StoredSession(
                r["session_id"], r["created_at"], r["updated_at"], tuple(turns.get(r["session_id"], ()))
            )
            for r in rows
        ]

    async def tool_calls(self, turn_id: str) -> list[StoredToolCall]:
        return await self._run(self._tool_calls, turn_id)

    @staticmethod
    def _tool_calls(db: sqlite3.Connection, turn_id: str) -> list[StoredToolCall]:
        rows = db.execute("SELECT * FROM tool_calls WHERE turn_id = ? ORDER BY seq", (turn_id,)).fetchall()
        return [
            StoredToolCall(
                turn_id=r["turn_id"],
                seq=r["seq"],
                server=r["server"],
                tool=r["tool"],
                arguments=json.loads(r["arguments"]) if r["arguments"] is not None else None,
                status=r["status"],
                result=r["result"],
                error=r["error"],
                started_at=r["started_at"],
                ended_at=r["ended_at"],
            )
            for r in rows
        ]

    async def get_turn(self, turn_id: str) -> StoredTurn | None:
        """One stored turn, or None."""
        return await self._run(self._get_turn, turn_id)

    @staticmethod
    def _get_turn(db: sqlite3.Connection, turn_id: str) -> StoredTurn | None:
        row = db.execute("SELECT * FROM turns WHERE turn_id = ?", (turn_id,)).fetchone()
        return _turn_from_row(row) if row is not None else None

    async def unfinished_durable_turns(self) -> list[StoredTurn]:
        """Durable turns that have not ended (a dead process left them), oldest first."""
        return await self._run(self._unfinished_durable)

    @staticmethod
    def _unfinished_durable(db: sqlite3.Connection) -> list[StoredTurn]:
        rows = db.execute(
            "SELECT * FROM turns WHERE durable IS NOT NULL AND state IN ('pending', 'running') "
            "ORDER BY started_at"
        ).fetchall()
        return [_turn_from_row(r) for r in rows]


def _check_protocol(store: SqliteStore) -> SessionStore:
    return store  # mypy checks that SqliteStore implements the protocol

"""Worker heartbeats in the durable database, so that live workers take over silent ones."""

from __future__ import annotations

import time

import sqlalchemy as sa

__all__ = ["Workers"]

_TABLE = "codex_runtime_workers"


def _engine_url(url: str) -> str:
    # DBOS talks to Postgres through psycopg 3; SQLAlchemy's default driver is psycopg2.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Workers:
    """One row per worker (executor id, last heartbeat); blocking calls, run in a thread."""

    def __init__(self, database_url: str, executor_id: str) -> None:
        self.executor_id = executor_id
        self._engine = sa.create_engine(_engine_url(database_url), pool_size=1, max_overflow=0)
        try:
            self._create()
        except sa.exc.DBAPIError:
            self._create()  # two workers creating it at once on Postgres: one of them loses

    def _create(self) -> None:
        with self._engine.begin() as c:
            c.execute(
                sa.text(
                    f"CREATE TABLE IF NOT EXISTS {_TABLE} "
                    "(executor_id TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)"
                )
            )

    def beat(self) -> None:
        with self._engine.begin() as c:
            c.execute(
                sa.text(
                    f"INSERT INTO {_TABLE} (executor_id, seen_at) VALUES (:e, :t) "
                    "ON CONFLICT (executor_id) DO UPDATE SET seen_at = excluded.seen_at"
                ),
                {"e": self.executor_id, "t": time.time()},
            )

    def claim_silent(self, older_than: float) -> list[str]:
        """Executors silent for ``older_than`` seconds, each claimed by this worker alone
        (its row is deleted by whoever claims it first)."""
        limit = time.time() - older_than
        claimed: list[str] = []
        with self._engine.begin() as c:
            rows = c.execute(
                sa.text(f"SELECT executor_id FROM {_TABLE} WHERE seen_at < :limit AND executor_id <> :me"),
                {"limit": limit, "me": self.executor_id},
            ).fetchall()
        for (executor_id,) in rows:
            with self._engine.begin() as c:
                gone = c.execute(
                    sa.text(f"DELETE FROM {_TABLE} WHERE executor_id = :e AND seen_at < :limit"),
                    {"e": executor_id, "limit": limit},
                )
                if gone.rowcount == 1:
                    claimed.append(str(executor_id))
        return claimed

    def close(self) -> None:
        self._engine.dispose()

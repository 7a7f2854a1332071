"""Isolation stress: random interleavings of turns, calls and background tasks leak nothing.

Three sessions share two Apps clients and one third-party (forwarding) client; seeded
random operations (`bench.isolation`) interleave turn starts, ends, interrupts and
replacements with concurrent calls, call-level headers and background tasks that outlive
their turn (some racing its end). Every ``tools/call`` the servers recorded is checked
against the turn and task that sent it. ``CODEX_RUNTIME_ISOLATION_SEED=N`` reruns the
operations of a seed printed by a failure (the timing of replies still varies).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator

import pytest

from bench.isolation import (
    TOKEN,
    TURN_METADATA,
    Expected,
    check_record,
    recording_servers,
    run_isolation,
)
from codex_runtime.testing import RecordedRequest, RecordingServer

OPS = 500


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RecordingServer]]:
    with recording_servers() as running:
        yield running


def _seed() -> int:
    chosen = os.environ.get("CODEX_RUNTIME_ISOLATION_SEED")
    return int(chosen) if chosen else random.randrange(1 << 32)


@pytest.mark.anyio
async def test_random_interleavings_leak_nothing(servers: dict[str, RecordingServer]) -> None:
    seed = _seed()
    result = await run_isolation(servers, ops=OPS, seed=seed)
    assert result.ok, f"seed {seed} (rerun with CODEX_RUNTIME_ISOLATION_SEED={seed})\n{result.report()}"
    # Not vacuous: every kind of operation ran, and every kind of call reached a server.
    assert sum(result.ops.values()) >= OPS, f"seed {seed}: {result.ops}"
    for op in ("start", "replace", "end", "interrupt"):
        assert result.ops[op] > 0, f"seed {seed}: no {op} in {result.ops}"
    for kind in ("turn_call", "direct_call", "background", "racer", "outside_call"):
        assert result.returned_by_kind[kind] > 0, f"seed {seed}: no {kind} returned"
    assert result.requests >= result.completed > 0


# -- the checker itself ------------------------------------------------------------------------

SESSIONS = {0: "session-0", 1: "session-1"}
TURNS = {1: "turn-one", 2: "turn-two"}


def record(
    server: str, tag: str, headers: dict[str, str], meta: dict[str, object] | None = None
) -> RecordedRequest:
    params: dict[str, object] = {"name": "echo", "arguments": {"text": tag}}
    if meta is not None:
        params["_meta"] = meta
    return RecordedRequest(
        server=server,
        http_method="POST",
        path="/mcp",
        header_pairs=tuple(headers.items()),
        body={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params},
        time=0.0,
    )


def turn_json(session: str, turn: str, model: str) -> str:
    return json.dumps({"session_id": session, "thread_id": session, "turn_id": turn, "model": model})


PLANS = {
    "a1": Expected("a1", "apps-a", "turn_call", 0, 1, {"x-call-tag": "tag-a1"}, {}),
    "b1": Expected("b1", "apps-a", "background", 0, 1, {}, {}),
    "f1": Expected("f1", "third", "direct_call", 1, 2, {}, {"x-call-scope": "scope-f1"}),
    "r1": Expected("r1", "apps-a", "racer", 0, 1, {}, {}),
}


def check(rec: RecordedRequest) -> str | None:
    return check_record(rec, rec.server, PLANS, SESSIONS, TURNS)


def test_checker_accepts_exactly_what_was_planned() -> None:
    own = {
        "session_id": "session-0",
        TURN_METADATA: turn_json("session-0", "turn-one", "m-1"),
        "x-call-tag": "tag-a1",
    }
    assert check(record("apps-a", "a1", own)) is None
    assert check(record("apps-a", "b1", {})) is None
    # A call racing its turn's end: all of that turn's entries, or none.
    assert check(record("apps-a", "r1", {k: v for k, v in own.items() if k != "x-call-tag"})) is None
    assert check(record("apps-a", "r1", {})) is None
    forwarded = {TOKEN: "tok-2", "x-call-scope": "scope-f1"}
    assert check(record("third", "f1", forwarded, {"extra_headers": forwarded})) is None


@pytest.mark.parametrize(
    "rec",
    [
        # another session's turn entry on a turn call
        record(
            "apps-a",
            "a1",
            {
                "session_id": "session-1",
                TURN_METADATA: turn_json("session-1", "turn-two", "m-2"),
                "x-call-tag": "tag-a1",
            },
        ),
        # its own turn, but the metadata of another turn
        record(
            "apps-a",
            "a1",
            {
                "session_id": "session-0",
                TURN_METADATA: turn_json("session-0", "turn-two", "m-1"),
                "x-call-tag": "tag-a1",
            },
        ),
        # a background task carrying the ended turn's entry
        record(
            "apps-a",
            "b1",
            {"session_id": "session-0", TURN_METADATA: turn_json("session-0", "turn-one", "m-1")},
        ),
        # a background task carrying another call's headers
        record("apps-a", "b1", {"x-call-tag": "tag-a1"}),
        # a racer carrying part of its turn's entries, or another turn's
        record("apps-a", "r1", {"session_id": "session-0"}),
        record(
            "apps-a",
            "r1",
            {"session_id": "session-1", TURN_METADATA: turn_json("session-1", "turn-two", "m-2")},
        ),
        # the forwarded token missing from _meta.extra_headers
        record(
            "third",
            "f1",
            {TOKEN: "tok-2", "x-call-scope": "scope-f1"},
            {"extra_headers": {"x-call-scope": "scope-f1"}},
        ),
        # Apps metadata reaching the third-party server
        record(
            "third",
            "f1",
            {TOKEN: "tok-2", "x-call-scope": "scope-f1"},
            {"extra_headers": {TOKEN: "tok-2", "x-call-scope": "scope-f1"}, "threadId": "session-1"},
        ),
        # received by the wrong server, or made by nobody
        record("third", "a1", {}),
        record("apps-a", "zz", {}),
    ],
    ids=[
        "other-session",
        "other-turn-metadata",
        "background-with-turn",
        "background-with-call-headers",
        "racer-with-part-of-its-turn",
        "racer-with-another-turn",
        "token-missing-from-meta",
        "apps-meta-on-third-party",
        "wrong-server",
        "unknown-tag",
    ],
)
def test_checker_flags_every_leak(rec: RecordedRequest) -> None:
    assert check(rec) is not None

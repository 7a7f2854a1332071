"""End-to-end tests of SMG-style header forwarding: `ForwardHeaders` with `HeaderPolicy`.

A caller's incoming headers go in as ``turn.forwarded_headers``; what reaches each MCP
server is read from what real recording servers received (HTTP headers and
``params._meta.extra_headers``), on asyncio and trio.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from codex_runtime import (
    ForwardHeaders,
    HeaderPolicy,
    Headers,
    InvalidHeaderError,
    McpClient,
    ServerConfig,
    Session,
    ToolCallError,
    TurnHeaders,
    TurnState,
)
from codex_runtime.testing import RecordedRequest, RecordingServer, StdioRecording, stdio_server_config

pytestmark = pytest.mark.anyio

TOKEN = "x-smg-oci-delegation-token"
COMPARTMENT = "x-smg-oci-compartment-id"
OCI_NAMES = (TOKEN, COMPARTMENT)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# Names the SMG policy sends to the provider only, or to nobody: never to an MCP server.
NOT_FOR_MCP = ("authorization", "cookie", "x-request-id", "x-smg-routing-key", "x-unrelated")


def caller_headers(
    token: str = "deleg-token-1", compartment: str = "ocid1.compartment.oc1..aaaa"
) -> list[tuple[str, str]]:
    """Headers of an incoming gateway request, as (name, value) pairs in mixed case."""
    return [
        ("Authorization", "Bearer caller-secret"),
        ("X-SMG-OCI-Delegation-Token", token),
        ("x-smg-oci-compartment-id", compartment),
        ("traceparent", TRACEPARENT),
        ("X-Request-Id", "req-1"),
        ("x-smg-routing-key", "route-7"),
        ("x-unrelated", "u"),
        ("Cookie", "session=abc"),
    ]


def oci(token: str = "deleg-token-1", compartment: str = "ocid1.compartment.oc1..aaaa") -> dict[str, str]:
    return {TOKEN: token, COMPARTMENT: compartment}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, RecordingServer]]:
    """Four recording servers shared by this module's tests (emptied by `fresh`)."""
    names = ("fwd", "fwd2", "plain", "late")
    started = [RecordingServer(name) for name in names]
    for srv in started:
        srv.start()
    try:
        yield dict(zip(names, started, strict=True))
    finally:
        for srv in started:
            srv.release_all()
            srv.stop()


@pytest.fixture
def fresh(servers: dict[str, RecordingServer]) -> dict[str, RecordingServer]:
    for srv in servers.values():
        srv.clear()
    return servers


def cfg(srv: RecordingServer, **options: Any) -> ServerConfig:
    return ServerConfig(name=srv.name, url=srv.url, **options)


def one_call(srv: RecordingServer, text: str) -> RecordedRequest:
    matches = [r for r in srv.requests("tools/call") if r.arguments.get("text") == text]
    assert len(matches) == 1, f"{srv.name}: expected one tools/call {text!r}, got {len(matches)}"
    return matches[0]


def extra_headers(record: RecordedRequest) -> dict[str, str] | None:
    extra = record.meta.get("extra_headers")
    assert extra is None or isinstance(extra, dict)
    return extra


def http_oci(record: RecordedRequest) -> dict[str, str]:
    return {name: value for name in OCI_NAMES if (value := record.header(name)) is not None}


def assert_nothing_forwarded(record: RecordedRequest) -> None:
    assert http_oci(record) == {}
    extra = extra_headers(record) or {}
    assert not set(extra) & {*OCI_NAMES, *NOT_FOR_MCP}


def assert_never_provider_side(srv: RecordingServer) -> None:
    """No request of ``srv`` carries a header the SMG policy keeps away from MCP servers."""
    for record in srv.requests():
        for name in NOT_FOR_MCP:
            assert record.header(name) is None, (srv.name, name)
            assert name not in (extra_headers(record) or {}), (srv.name, name)


def assert_forwarded(record: RecordedRequest, expected: dict[str, str], delivery: str) -> None:
    if delivery in ("meta", "both"):
        assert extra_headers(record) == expected
    else:
        assert "extra_headers" not in record.meta
    if delivery in ("http", "both"):
        assert http_oci(record) == expected
        for name in expected:
            assert len(record.header_values(name)) == 1
    else:
        assert http_oci(record) == {}


def no_entries(clients: Sequence[McpClient]) -> bool:
    return all(not client.turn_entry_ids() for client in clients)


# -- delivery ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
@pytest.mark.parametrize("delivery", ["meta", "http", "both"])
async def test_forward_servers_receive_mcp_headers_in_their_delivery(
    fresh: dict[str, RecordingServer], delivery: str, protocol: str
) -> None:
    fwd, plain = fresh["fwd"], fresh["plain"]
    configs = [
        cfg(fwd, forward=True, header_delivery=delivery, protocol=protocol),
        cfg(plain, header_delivery="both", protocol=protocol),
    ]
    async with Session(configs, hooks=[ForwardHeaders(HeaderPolicy.smg())]) as session:
        async with session.turn(forwarded_headers=caller_headers()) as turn:
            await turn.call_tool("fwd", "echo", {"text": "to-fwd"})
            await turn.call_tool("plain", "echo", {"text": "to-plain"})
        assert turn.state is TurnState.COMPLETED
        assert no_entries(list(session.clients.values()))

    assert_forwarded(one_call(fwd, "to-fwd"), oci(), delivery)
    assert_nothing_forwarded(one_call(plain, "to-plain"))
    assert "extra_headers" not in one_call(plain, "to-plain").meta
    for srv in (fwd, plain):
        assert_never_provider_side(srv)
        # Only tools/call carries turn entries: initialize, tools/list, ... never do.
        for record in srv.requests():
            if record.method != "tools/call":
                assert http_oci(record) == {}
                assert "extra_headers" not in record.meta


async def test_stdio_forward_server_receives_them_in_meta(
    fresh: dict[str, RecordingServer], tmp_path: Path
) -> None:
    record_file = tmp_path / "stdio.jsonl"
    config = stdio_server_config("tool-stdio", record_file, forward=True)
    async with Session([config], hooks=[ForwardHeaders()]) as session:
        async with session.turn(forwarded_headers=caller_headers()) as turn:
            await turn.call_tool("tool-stdio", "echo", {"text": "over-stdio"})
    [call] = StdioRecording(record_file).requests("tools/call")
    assert call.meta["extra_headers"] == oci()


async def test_forward_and_turn_headers_both_reach_a_server_that_takes_both(
    fresh: dict[str, RecordingServer],
) -> None:
    fwd = fresh["fwd"]
    config = cfg(fwd, apps=True, forward=True, header_delivery="both")
    async with Session([config], hooks=[TurnHeaders(), ForwardHeaders()], session_id="sess-1") as session:
        async with session.turn(forwarded_headers=caller_headers(), metadata={"model": "m1"}) as turn:
            await turn.call_tool("fwd", "echo", {"text": "both-hooks"})
        assert no_entries(list(session.clients.values()))
    record = one_call(fwd, "both-hooks")
    assert http_oci(record) == oci()
    assert record.header("session_id") == "sess-1"
    turn_meta = json.loads(record.header("x-codex-turn-metadata") or "{}")
    assert turn_meta["turn_id"] == turn.id
    assert turn_meta["model"] == "m1"
    extra = extra_headers(record) or {}
    assert {name: extra[name] for name in OCI_NAMES} == oci()
    assert extra["session_id"] == "sess-1"


async def test_custom_policy_prefixes_and_deny_list(fresh: dict[str, RecordingServer]) -> None:
    fwd = fresh["fwd"]
    policy = HeaderPolicy(mcp_allow=("x-tenant-*", "x-region"), deny=("x-tenant-secret",))
    incoming = [
        ("X-Tenant-Id", "t1"),
        ("x-tenant-plan", "gold"),
        ("x-tenant-secret", "s"),
        ("x-region", "eu"),
    ]
    async with Session(
        [cfg(fwd, forward=True, header_delivery="meta")], hooks=[ForwardHeaders(policy)]
    ) as session:
        async with session.turn(forwarded_headers=incoming) as turn:
            await turn.call_tool("fwd", "echo", {"text": "custom"})
    assert extra_headers(one_call(fwd, "custom")) == {
        "x-tenant-id": "t1",
        "x-tenant-plan": "gold",
        "x-region": "eu",
    }


async def test_identical_repeats_collapse_and_unforwarded_duplicates_are_ignored(
    fresh: dict[str, RecordingServer],
) -> None:
    fwd = fresh["fwd"]
    incoming = [
        *caller_headers(),
        ("x-smg-oci-delegation-token", "deleg-token-1"),  # the same value again: one value
        ("tracestate", "a=1"),
        ("tracestate", "b=2"),  # a list header: joined, for the provider
        ("x-unrelated", "other"),  # differs, but neither side forwards it
    ]
    async with Session([cfg(fwd, forward=True, header_delivery="both")], hooks=[ForwardHeaders()]) as session:
        async with session.turn(forwarded_headers=incoming) as turn:
            await turn.call_tool("fwd", "echo", {"text": "repeats"})
        assert turn.state is TurnState.COMPLETED
    assert_forwarded(one_call(fwd, "repeats"), oci(), "both")


# -- turn scope -------------------------------------------------------------------------------


async def test_entries_live_exactly_as_long_as_their_turn(fresh: dict[str, RecordingServer]) -> None:
    fwd = fresh["fwd"]
    async with Session([cfg(fwd, forward=True, header_delivery="both")], hooks=[ForwardHeaders()]) as session:
        client = session.clients["fwd"]
        async with session.turn(forwarded_headers=caller_headers("token-a")) as turn:
            assert client.turn_entry_ids() == {turn.id}
            await turn.call_tool("fwd", "echo", {"text": "turn-a"})
        assert client.turn_entry_ids() == frozenset()
        await client.call_tool("echo", {"text": "between"})

        async with session.turn(forwarded_headers=caller_headers("token-b")) as turn:
            await turn.call_tool("fwd", "echo", {"text": "turn-b"})
        async with session.turn() as turn:
            await turn.call_tool("fwd", "echo", {"text": "no-forwarded"})

        # Failed and interrupted turns clear their entries too.
        with pytest.raises(RuntimeError, match="body failed"):
            async with session.turn(forwarded_headers=caller_headers("token-c")) as turn:
                await turn.call_tool("fwd", "echo", {"text": "turn-c"})
                raise RuntimeError("body failed")
        assert turn.state is TurnState.FAILED
        assert client.turn_entry_ids() == frozenset()

        release = anyio.Event()

        async def body(turn: Any) -> None:
            await turn.call_tool("fwd", "echo", {"text": "turn-d"})
            release.set()
            await anyio.sleep_forever()

        handle = await session.start_turn(body, forwarded_headers=caller_headers("token-d"))
        await release.wait()
        handle.interrupt()
        outcome = await handle.wait()
        assert outcome.state is TurnState.ABORTED
        assert client.turn_entry_ids() == frozenset()
        await client.call_tool("echo", {"text": "after-d"})

    assert_forwarded(one_call(fwd, "turn-a"), oci("token-a"), "both")
    assert_forwarded(one_call(fwd, "turn-b"), oci("token-b"), "both")
    assert_forwarded(one_call(fwd, "turn-c"), oci("token-c"), "both")
    assert_forwarded(one_call(fwd, "turn-d"), oci("token-d"), "both")
    for text in ("between", "no-forwarded", "after-d"):
        assert_nothing_forwarded(one_call(fwd, text))


async def test_concurrent_turns_of_two_sessions_on_a_shared_client_never_cross(
    fresh: dict[str, RecordingServer],
) -> None:
    fwd = fresh["fwd"]
    hook = ForwardHeaders()  # one hook instance shared by both sessions, as a gateway would
    async with McpClient(cfg(fwd, forward=True, header_delivery="both")) as shared:
        async with (
            Session(clients=[shared], hooks=[hook]) as first,
            Session(clients=[shared], hooks=[hook]) as second,
        ):
            both_running = anyio.Event()
            a_called = anyio.Event()

            async def run(session: Session, token: str, mine: anyio.Event, other: anyio.Event) -> None:
                async with session.turn(forwarded_headers=caller_headers(token)) as turn:
                    if token == "token-b":
                        both_running.set()
                    await both_running.wait()
                    async with anyio.create_task_group() as tg:
                        for i in range(5):
                            tg.start_soon(turn.call_tool, "fwd", "echo", {"text": f"{token}-{i}"})
                    mine.set()
                    await other.wait()  # the other turn's calls are sent while this one runs

            b_called = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, first, "token-a", a_called, b_called)
                tg.start_soon(run, second, "token-b", b_called, a_called)
        assert shared.turn_entry_ids() == frozenset()
    for token in ("token-a", "token-b"):
        for i in range(5):
            assert_forwarded(one_call(fwd, f"{token}-{i}"), oci(token), "both")


# -- servers added during a session ------------------------------------------------------------


async def test_server_added_during_a_turn_gets_that_turns_entries(fresh: dict[str, RecordingServer]) -> None:
    plain, late, fwd2 = fresh["plain"], fresh["late"], fresh["fwd2"]
    async with Session([cfg(plain)], hooks=[ForwardHeaders()]) as session:
        async with session.turn(forwarded_headers=caller_headers("token-a")) as turn:
            added = await session.add_server(cfg(late, forward=True, header_delivery="meta"))
            # A request-scoped server the caller named: not trusted with forwarded headers.
            caller_named = await session.add_server(cfg(fwd2, header_delivery="both"))
            await turn.call_tool("late", "echo", {"text": "late-a"})
            await turn.call_tool("fwd2", "echo", {"text": "caller-named-a"})
            await turn.call_tool("plain", "echo", {"text": "plain-a"})
        assert added.turn_entry_ids() == frozenset()
        assert caller_named.turn_entry_ids() == frozenset()

        async with session.turn(forwarded_headers=caller_headers("token-b")) as turn:
            await turn.call_tool("late", "echo", {"text": "late-b"})
            await turn.call_tool("fwd2", "echo", {"text": "caller-named-b"})
        await added.call_tool("echo", {"text": "late-after"})

    assert_forwarded(one_call(late, "late-a"), oci("token-a"), "meta")
    assert_forwarded(one_call(late, "late-b"), oci("token-b"), "meta")
    for srv, text in (
        (fwd2, "caller-named-a"),
        (fwd2, "caller-named-b"),
        (plain, "plain-a"),
        (late, "late-after"),
    ):
        assert_nothing_forwarded(one_call(srv, text))
    for srv in (plain, late, fwd2):
        assert_never_provider_side(srv)


async def test_server_added_between_turns_gets_only_the_next_turns_entries(
    fresh: dict[str, RecordingServer],
) -> None:
    fwd, late = fresh["fwd"], fresh["late"]
    async with Session([cfg(fwd, forward=True)], hooks=[ForwardHeaders()]) as session:
        async with session.turn(forwarded_headers=caller_headers("token-a")) as turn:
            await turn.call_tool("fwd", "echo", {"text": "fwd-a"})
        added = await session.add_server(cfg(late, forward=True, header_delivery="both"))
        assert added.turn_entry_ids() == frozenset()
        async with session.turn(forwarded_headers=caller_headers("token-b")) as turn:
            await turn.call_tool("late", "echo", {"text": "late-b"})
            await turn.call_tool("fwd", "echo", {"text": "fwd-b"})
    assert_forwarded(one_call(fwd, "fwd-a"), oci("token-a"), "http")
    assert_forwarded(one_call(fwd, "fwd-b"), oci("token-b"), "http")
    assert_forwarded(one_call(late, "late-b"), oci("token-b"), "both")


async def test_a_caller_cannot_direct_a_call_to_a_url(fresh: dict[str, RecordingServer]) -> None:
    fwd, plain = fresh["fwd"], fresh["plain"]
    async with Session([cfg(fwd, forward=True)], hooks=[ForwardHeaders()]) as session:
        fresh["fwd"].clear()
        async with session.turn(forwarded_headers=caller_headers()) as turn:
            with pytest.raises(ToolCallError, match="no such server"):
                await turn.call_tool(plain.url, "echo", {"text": "by-url"})
    assert plain.requests() == []
    assert fwd.requests() == []


# -- invalid incoming headers ---------------------------------------------------------------------

SECRET = "Bearer secret-two"

BAD_INCOMING = {
    "two authorization values": [("authorization", "Bearer one"), ("Authorization", SECRET)],
    "two traceparents": [
        ("traceparent", TRACEPARENT),
        ("traceparent", "00-11111111111111111111111111111111-2222222222222222-01"),
    ],
    "two delegation tokens": [(TOKEN, "token-one"), ("X-SMG-OCI-Delegation-Token", SECRET)],
    "two compartments": [(COMPARTMENT, "c1"), (COMPARTMENT, "c2")],
    "two prefixed request ids": [("x-request-id-upstream", "a"), ("x-request-id-upstream", "b")],
    "obs-text in a forwarded value": [(TOKEN, "t\xe9st")],
    "obs-text in a provider value": [("x-request-id", "r\xe9q")],
    "non-latin-1 in a forwarded value": [(TOKEN, "t\u20acst")],
    "line break in a value": [(TOKEN, "a\r\nx-injected: 1")],
    "space-padded value": [(COMPARTMENT, " c1")],
    "invalid name under a forwarded prefix": [("x-request-id-bad name", "v")],
}


@pytest.mark.parametrize("incoming", BAD_INCOMING.values(), ids=BAD_INCOMING.keys())
async def test_invalid_incoming_headers_fail_the_turn_before_its_body(
    fresh: dict[str, RecordingServer], incoming: list[tuple[str, str]]
) -> None:
    fwd, plain = fresh["fwd"], fresh["plain"]
    configs = [cfg(fwd, forward=True, header_delivery="both"), cfg(plain)]
    async with Session(configs, hooks=[ForwardHeaders()]) as session:
        clients = list(session.clients.values())
        for srv in (fwd, plain):
            srv.clear()
        ran: list[str] = []
        forwarded = [*caller_headers(), *incoming]
        with pytest.raises(InvalidHeaderError) as raised:
            async with session.turn(forwarded_headers=forwarded) as turn:
                ran.append("body")
                await turn.call_tool("fwd", "echo", {"text": "never"})
        assert SECRET not in str(raised.value)
        assert session.current_turn is None
        assert no_entries(clients)

        async def body(turn: Any) -> None:
            ran.append("task body")
            await turn.call_tool("fwd", "echo", {"text": "never"})

        try:
            handle = await session.start_turn(body, forwarded_headers=forwarded)
        except InvalidHeaderError:
            pass  # rejected while building the turn's headers
        else:
            outcome = await handle.wait()
            assert outcome.state is TurnState.FAILED
            assert isinstance(outcome.error, InvalidHeaderError)
        assert ran == []
        assert session.current_turn is None
        assert no_entries(clients)

        # The session is still usable.
        async with session.turn(forwarded_headers=caller_headers()) as turn:
            await turn.call_tool("fwd", "echo", {"text": "still-works"})
    assert [r.arguments["text"] for r in fwd.requests("tools/call")] == ["still-works"]
    assert plain.requests("tools/call") == []


async def test_headers_input_forms_are_equivalent(fresh: dict[str, RecordingServer]) -> None:
    fwd = fresh["fwd"]
    forms: dict[str, Any] = {
        "pairs": caller_headers("token-pairs"),
        "mapping": dict(caller_headers("token-mapping")),
        "headers": Headers(caller_headers("token-headers")),
    }
    async with Session([cfg(fwd, forward=True, header_delivery="meta")], hooks=[ForwardHeaders()]) as session:
        for label, form in forms.items():
            async with session.turn(forwarded_headers=form) as turn:
                await turn.call_tool("fwd", "echo", {"text": label})
    for label in forms:
        assert_forwarded(one_call(fwd, label), oci(f"token-{label}"), "meta")

"""Bad input that once slipped past validation: refused, typed, before anything is sent.

Header values must be sendable (httpx2 sends ASCII only); ``_meta.extra_headers`` is a
header channel with the rules of HTTP headers; deeply nested metadata, a ``meta`` that is
no mapping and an end hook that overruns its bound are reported as such; and only the
incoming headers a policy forwards can refuse a turn.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import anyio
import pytest

from codex_runtime import (
    ConfigError,
    ForwardHeaders,
    HeaderPolicy,
    InvalidHeaderError,
    InvalidMetadataError,
    McpClient,
    ServerConfig,
    Session,
    Turn,
    TurnHeaders,
    TurnOutcome,
    TurnState,
    bind_turn,
)
from codex_runtime.testing import RecordingServer

pytestmark = pytest.mark.anyio

SECRET = "Jos\xe9-s3cr3t"  # Latin-1, but not ASCII: valid by RFC 9110, not sendable


def _config(server: RecordingServer, **options: Any) -> ServerConfig:
    return ServerConfig(name="srv", url=server.url, **options)


# -- header values must be sendable ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_non_ascii_header_value_is_refused_before_sending_and_costs_nothing(
    server: RecordingServer, protocol: str
) -> None:
    key = f"beside-{uuid.uuid4().hex[:8]}"
    async with McpClient(_config(server, protocol=protocol)) as client:
        server.clear()
        results: list[Any] = []

        async def beside() -> None:
            results.append(await client.call_tool("block", {"key": key}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(beside)
            await server.wait_for_calls("block", 1)
            errors: list[InvalidHeaderError] = []
            with pytest.raises(InvalidHeaderError) as raised:
                await client.call_tool("echo", {"text": "call"}, headers={"x-user": SECRET})
            errors.append(raised.value)
            with pytest.raises(InvalidHeaderError) as raised:
                client.set_turn_headers("t1", {"x-user": SECRET})
            errors.append(raised.value)
            client.set_turn_headers("t2", {"x-user": lambda: SECRET})
            with bind_turn("t2"), pytest.raises(InvalidHeaderError) as raised:
                await client.call_tool("echo", {"text": "lazy turn value"})
            errors.append(raised.value)
            server.release(key)
        for error in errors:
            assert (error.name, error.rule) == ("x-user", "value-not-ascii")
            assert "s3cr3t" not in str(error) and "s3cr3t" not in repr(error)
        # The call beside them on the same connection was not torn down with them.
        assert len(results) == 1 and not results[0].is_error
        assert client.connected
        assert not (await client.call_tool("echo", {"text": "next"})).is_error
    assert [c.arguments["text"] for c in server.tool_calls("echo")] == ["next"]


def test_a_non_ascii_static_header_is_a_config_error_without_its_value(
    server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for headers in ({"x-api-key": SECRET}, {"authorization": f"Bearer {SECRET}"}):
        with pytest.raises(ConfigError) as raised:
            _config(server, headers=headers)
        assert "s3cr3t" not in str(raised.value) and "s3cr3t" not in repr(raised.value)
        assert "not-ascii" in str(raised.value) or "ASCII" in str(raised.value)
    assert not any("s3cr3t" in record.getMessage() for record in caplog.records)


# -- _meta.extra_headers is a header channel ------------------------------------------------------

BAD_EXTRA_HEADERS = {
    "CR/LF in a value": ({"x-a": "v\r\nx-injected: 1"}, "value-control-char"),
    "protected name": ({"mcp-session-id": "stolen"}, "protected"),
    "trace name": ({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, "protected"),
    "value not a string": ({"x-a": 42}, "value-not-str"),
    "name not a token": ({"x a": "v"}, "name-not-token"),
    "not a mapping": ([("x-a", "v")], "meta-not-mapping"),
    "non-ASCII value": ({"x-a": SECRET}, "value-not-ascii"),
}


@pytest.mark.parametrize(("extra", "rule"), BAD_EXTRA_HEADERS.values(), ids=BAD_EXTRA_HEADERS.keys())
async def test_extra_headers_in_meta_follow_the_rules_of_headers(
    server: RecordingServer, extra: Any, rule: str
) -> None:
    async with McpClient(_config(server, header_delivery="both")) as client:
        server.clear()
        with pytest.raises(InvalidHeaderError) as raised:
            await client.call_tool("echo", {"text": "caller meta"}, meta={"extra_headers": extra})
        assert raised.value.rule == rule
        # A turn entry of that name is refused when set, and leaves no entry behind...
        with pytest.raises(InvalidHeaderError) as raised:
            client.set_turn_headers("t1", meta={"extra_headers": extra})
        assert raised.value.rule == rule
        assert client.turn_entry_ids() == frozenset()
        # ... or, when it is computed at send time, when the call is made.
        client.set_turn_headers("t2", meta={"extra_headers": lambda: extra})
        with bind_turn("t2"), pytest.raises(InvalidHeaderError) as raised:
            await client.call_tool("echo", {"text": "turn meta"})
        assert raised.value.rule == rule
    assert server.requests("tools/call") == []


async def test_valid_extra_headers_in_meta_merge_with_the_header_layers(server: RecordingServer) -> None:
    async with McpClient(_config(server, header_delivery="meta")) as client:
        server.clear()
        client.set_turn_headers("t", {"x-turn": "t"}, meta={"extra_headers": {"x-turn-meta": "tm"}})
        with bind_turn("t"):
            await client.call_tool("echo", {"text": "turn"})
            await client.call_tool(
                "echo", {"text": "call"}, headers={"x-call": "c"}, meta={"extra_headers": {"X-Mine": "m"}}
            )
    turn_call, call_call = server.requests("tools/call")
    assert turn_call.meta["extra_headers"] == {"x-turn-meta": "tm", "x-turn": "t"}
    assert call_call.meta["extra_headers"] == {"x-mine": "m", "x-call": "c", "x-turn": "t"}


# -- typed errors for the rest -------------------------------------------------------------------


async def test_a_turn_meta_that_is_not_a_mapping_is_a_typed_error(server: RecordingServer) -> None:
    async with McpClient(_config(server)) as client:
        with pytest.raises(InvalidHeaderError) as raised:
            client.set_turn_headers("t", meta=[("k", "v")])  # type: ignore[arg-type]
        assert raised.value.rule == "meta-not-mapping"
        assert client.turn_entry_ids() == frozenset()


async def test_deeply_nested_turn_metadata_is_invalid_metadata(server: RecordingServer) -> None:
    deep: Any = "bottom"
    for _ in range(100_000):
        deep = [deep]
    config = _config(server, apps=True)
    async with Session([config], hooks=[TurnHeaders("both")]) as session:
        server.clear()
        with pytest.raises(InvalidMetadataError):
            async with session.turn(metadata={"deep": deep}) as turn:
                await turn.call_tool("srv", "echo", {"text": "never"})
        assert session.current_turn is None
        assert session.clients["srv"].turn_entry_ids() == frozenset()
    assert server.requests("tools/call") == []


async def test_deeply_nested_arguments_or_meta_are_refused_before_sending(server: RecordingServer) -> None:
    deep: Any = "bottom"
    for _ in range(100_000):
        deep = [deep]
    async with McpClient(_config(server)) as client:
        server.clear()
        with pytest.raises(TypeError, match="JSON values"):
            await client.call_tool("echo", {"text": "deep", "data": {"deep": deep}})
        with pytest.raises(TypeError, match="JSON values"):
            await client.call_tool("echo", {"text": "deep meta"}, meta={"deep": deep})
        assert not (await client.call_tool("echo", {"text": "next"})).is_error
    assert [c.arguments["text"] for c in server.tool_calls("echo")] == ["next"]


async def test_an_end_hook_that_swallows_its_cancellation_is_reported(server: RecordingServer) -> None:
    outcomes: list[TurnOutcome] = []
    async with Session([_config(server)], end_hook_timeout=0.05) as session:

        @session.on_turn_end
        async def stubborn(turn: Turn, outcome: TurnOutcome) -> None:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                pass  # swallowed: the hook returns late instead of being cancelled

        @session.on_turn_end
        async def record(turn: Turn, outcome: TurnOutcome) -> None:
            outcomes.append(outcome)

        async with session.turn() as turn:
            pass
    final = turn.outcome
    assert final is not None and final.state is TurnState.COMPLETED
    [failure] = final.hook_errors
    assert failure.hook.endswith("stubborn") and failure.phase == "end"
    assert isinstance(failure.error, TimeoutError)
    assert len(outcomes) == 1  # the other end hook still ran


async def test_only_headers_the_policy_forwards_can_refuse_a_turn(server: RecordingServer) -> None:
    token = "x-smg-oci-delegation-token"
    big_cookie = "c=" + "x" * 9 * 1024  # over the 8 KiB limit, and forwarded nowhere
    forwarded = [("cookie", big_cookie), ("x-bad name", "v"), ("x-user", SECRET), (token, "deleg-1")]
    async with Session(
        [_config(server, forward=True)], hooks=[ForwardHeaders(HeaderPolicy.smg())]
    ) as session:
        server.clear()
        async with session.turn(forwarded_headers=forwarded) as turn:
            await turn.call_tool("srv", "echo", {"text": "forwarded"})
        assert turn.outcome is not None and turn.outcome.state is TurnState.COMPLETED
        # Only the valid ones are in the turn's `Headers`.
        assert turn.forwarded_headers.get(token) == "deleg-1"
        assert turn.forwarded_headers.get("cookie") is None
        # A forwarded header that is invalid still refuses the turn before its body.
        with pytest.raises(InvalidHeaderError) as raised:
            async with session.turn(forwarded_headers=[("cookie", big_cookie), (token, "x" * 9 * 1024)]):
                pytest.fail("the body must not run")
        assert raised.value.name == token
    [call] = server.requests("tools/call")
    assert call.header(token) == "deleg-1"
    assert call.header("cookie") is None and call.header("x-user") is None

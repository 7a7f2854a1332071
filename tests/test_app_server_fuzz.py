"""Malformed client input (hypothesis): the app-server answers every request and never dies.

Each example starts a server, initializes it, opens a thread, then sends a random mix of
garbage lines, JSON values of every kind and requests with random methods, ids and params
(some aimed at real methods and the real thread). Afterwards every request that had a
valid id got exactly one answer, no answer is an internal error, every message matches
Codex's schema, a last request is still answered, and the server ends when input ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from app_protocol import Client, ProtocolChecker, protocol_schema, run_server, text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_runtime import ModelResponse
from codex_runtime.app_server import AppServer

__all__ = ["protocol_schema"]

METHODS = [
    "initialize",
    "thread/start",
    "thread/resume",
    "thread/read",
    "thread/list",
    "turn/start",
    "turn/steer",
    "turn/interrupt",
    "thread/fork",
    "",
    "initialized",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

THREAD = "<thread>"
field_values = st.one_of(json_values, st.just(THREAD), st.just("turn_x"))
inputs = st.one_of(
    json_values,
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image", 3, None])}, optional={"text": json_values}
        ),
        max_size=3,
    ),
    st.just(text("hello")),
)
params = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "threadId": field_values,
            "turnId": field_values,
            "expectedTurnId": field_values,
            "input": inputs,
            "includeTurns": json_values,
            "limit": json_values,
            "cursor": json_values,
            "clientInfo": json_values,
        },
    ),
)
bad_ids = st.one_of(st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2), st.none())
requests = st.fixed_dictionaries(
    {"method": st.one_of(st.sampled_from(METHODS), json_values)},
    optional={"params": params, "id": st.one_of(st.just("valid"), bad_ids), "jsonrpc": st.just("2.0")},
)
lines = st.one_of(
    st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
    json_values.map(json.dumps),
    requests,
    requests,
    requests,
)


class Echo:
    model = "echo"

    async def respond(self, request: Any) -> ModelResponse:
        await anyio.lowlevel.checkpoint()
        return ModelResponse(text="ok")


async def _exercise(schema: Path, script: list[Any]) -> None:
    client = Client(ProtocolChecker(schema))
    expected: list[Any] = []
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_server, AppServer(Echo()), client)
            await client.initialize()
            thread = (await client.request("thread/start", {}))["result"]["thread"]["id"]
            for number, item in enumerate(script):
                if not isinstance(item, dict):
                    await client.send_raw(item)
                    continue
                message = json.loads(json.dumps(item).replace(json.dumps(THREAD), json.dumps(thread)))
                if message.get("id") == "valid":
                    message["id"] = f"fuzz-{number}" if number % 2 else 10_000 + number
                    if isinstance(message["method"], str):
                        expected.append(message["id"])
                        client.checker.methods[message["id"]] = message["method"]  # type: ignore[union-attr]
                await client.send(message)
            last = await client.request("thread/list", {})
            assert "result" in last
            client.close()
    answers: dict[Any, int] = {}
    for message in client.messages:
        if "id" in message and "method" not in message:
            answers[message["id"]] = answers.get(message["id"], 0) + 1
            if "error" in message:
                assert message["error"]["code"] != -32603, message
    for request_id in expected:
        assert answers.get(request_id) == 1, (request_id, answers.get(request_id))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(lines, min_size=1, max_size=15))
def test_malformed_input_never_kills_the_server(
    protocol_schema: Path, backend: str, script: list[Any]
) -> None:
    anyio.run(_exercise, protocol_schema, script, backend=backend)

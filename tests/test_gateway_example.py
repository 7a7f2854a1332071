"""Tests of the SMG-style gateway example (``examples/gateway.py``), driven over real HTTP.

The gateway, its stand-in provider and its MCP servers run on loopback (uvicorn threads);
these tests are HTTP callers on asyncio and trio, and assert on what each party received.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx2
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from codex_runtime.testing import RecordedRequest

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "gateway.py"

TOKEN = "x-smg-oci-delegation-token"
COMPARTMENT = "x-smg-oci-compartment-id"
# Headers the gateway must never hand to an MCP server.
PROVIDER_OR_NOBODY = ("authorization", "cookie", "x-request-id", "x-smg-routing-key", "x-unrelated")


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


gateway = _load_example()


@pytest.fixture(scope="module")
def demo() -> Iterator[Any]:
    """The example's gateway, provider and MCP servers, running for this module."""
    with gateway.running_demo() as running:
        yield running


@pytest.fixture
def fresh(demo: Any) -> Any:
    demo.clear()
    return demo


def traceparent() -> tuple[str, str, str]:
    """A fresh caller ``traceparent`` and its trace id and span id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def caller(rid: str, token: str = "oci-token", key: str = "caller-key") -> list[tuple[str, str]]:
    return [
        ("Authorization", f"Bearer {key}"),
        ("X-SMG-OCI-Delegation-Token", token),
        (COMPARTMENT, "ocid1.compartment.oc1..tenant"),
        ("x-request-id", rid),
        ("x-smg-routing-key", "route-1"),
        ("x-unrelated", "u"),
        ("cookie", "session=abc"),
    ]


def body(demo: Any, text: str = "hello", **extra: Any) -> dict[str, Any]:
    tool = {
        "type": "mcp",
        "server_label": gateway.CALLER_SERVER,
        "server_url": demo.caller_server_url,
        **extra,
    }
    return {"model": "stand-in-model", "input": text, "tools": [tool]}


def call_of(demo: Any, server: str, rid: str) -> RecordedRequest:
    calls: list[RecordedRequest] = [
        r
        for r in demo.servers[server].requests("tools/call")
        if (r.arguments.get("data") or {}).get("request_id") == rid
    ]
    assert len(calls) == 1, f"{server}: {len(calls)} tools/call for {rid}"
    return calls[0]


def oci_http(record: RecordedRequest) -> dict[str, str]:
    return {n: v for n in (TOKEN, COMPARTMENT) if (v := record.header(n)) is not None}


async def post(demo: Any, headers: Any, payload: Any) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=30.0) as http:
        return await http.post(demo.gateway_url, headers=headers, json=payload)


async def test_oci_headers_reach_forward_servers_only(fresh: Any) -> None:
    rid = f"req-{secrets.token_hex(4)}"
    reply = await post(fresh, caller(rid, token="tok-1"), body(fresh))
    assert reply.status_code == 200, reply.text
    assert reply.json()["tools"] == {name: "ok" for name in fresh.servers}
    expected = {TOKEN: "tok-1", COMPARTMENT: "ocid1.compartment.oc1..tenant"}

    meta_only = call_of(fresh, "oci-tools", rid)  # SMG's shape
    assert meta_only.meta["extra_headers"] == expected
    assert oci_http(meta_only) == {}
    both = call_of(fresh, "oci-audit", rid)
    assert both.meta["extra_headers"] == expected
    assert oci_http(both) == expected
    for name in ("public-docs", gateway.CALLER_SERVER):  # forward=False, or named by the caller
        record = call_of(fresh, name, rid)
        assert "extra_headers" not in record.meta
        assert oci_http(record) == {}

    for name, server in fresh.servers.items():
        for record in server.requests():
            for header in PROVIDER_OR_NOBODY:
                assert record.header(header) is None, (name, header)
                assert header not in (record.meta.get("extra_headers") or {}), (name, header)

    [call] = fresh.provider.calls
    assert call.header_values("authorization") == ["Bearer caller-key"]
    assert call.header("x-request-id") == rid
    assert call.header("x-smg-routing-key") == "route-1"
    for header in (TOKEN, COMPARTMENT, "cookie", "x-unrelated"):
        assert call.header(header) is None, header
    assert call.body["messages"][0] == {"role": "user", "content": "hello"}


async def test_a_caller_cannot_ask_for_forwarding_to_its_own_server(fresh: Any) -> None:
    rid = f"req-{secrets.token_hex(4)}"
    reply = await post(fresh, caller(rid), body(fresh, forward=True, header_delivery="both"))
    assert reply.status_code == 200, reply.text
    record = call_of(fresh, gateway.CALLER_SERVER, rid)
    assert "extra_headers" not in record.meta
    assert oci_http(record) == {}


async def test_the_trace_continues_from_the_callers_traceparent(
    fresh: Any, spans: InMemorySpanExporter
) -> None:
    pytest.importorskip("codex_runtime.tracing")
    from codex_runtime.tracing import parse_traceparent

    rid = f"req-{secrets.token_hex(4)}"
    incoming, trace_id, caller_span = traceparent()
    reply = await post(fresh, [*caller(rid), ("traceparent", incoming)], body(fresh))
    assert reply.status_code == 200, reply.text

    [turn_span] = [
        s
        for s in spans.get_finished_spans()
        if s.name == "turn" and s.context is not None and format(s.context.trace_id, "032x") == trace_id
    ]
    assert turn_span.parent is not None and turn_span.parent.is_remote
    assert format(turn_span.parent.span_id, "016x") == caller_span
    assert turn_span.context is not None
    turn_span_id = format(turn_span.context.span_id, "016x")

    for name in fresh.servers:
        record = call_of(fresh, name, rid)
        http = parse_traceparent(record.header("traceparent"))
        assert http is not None and http.trace_id == trace_id, name
        assert http.span_id not in (caller_span, turn_span_id)  # a descendant of the turn
        assert record.meta.get("traceparent") == record.header("traceparent")
    [call] = fresh.provider.calls
    sent = parse_traceparent(call.header("traceparent"))
    assert sent is not None
    assert (sent.trace_id, sent.span_id) == (trace_id, turn_span_id)
    assert call.header_values("traceparent") == [str(sent)]


BAD = {
    "duplicated authorization": ([("authorization", "Bearer other")], "authorization", "duplicate-differs"),
    "two traceparents": (
        [("traceparent", traceparent()[0]), ("traceparent", traceparent()[0])],
        "traceparent",
        "duplicate-differs",
    ),
    "two delegation tokens": ([(TOKEN, "second-secret")], TOKEN, "duplicate-differs"),
    "non-ASCII compartment": ([(COMPARTMENT.upper(), b"ocid1.compartment.\xe9")], COMPARTMENT, None),
}


@pytest.mark.parametrize("extra, name, rule", BAD.values(), ids=BAD.keys())
async def test_invalid_caller_headers_get_400_and_nothing_is_sent(
    fresh: Any, extra: list[tuple[str, Any]], name: str, rule: str | None
) -> None:
    rid = f"req-{secrets.token_hex(4)}"
    headers: list[tuple[str, Any]] = [*caller(rid, token="first-secret", key="first-key"), *extra]
    reply = await post(fresh, headers, body(fresh))
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["header"] == name
    if rule is not None:
        assert error["rule"] == rule
    for value in ("first-secret", "second-secret", "first-key", "Bearer other"):
        assert value not in reply.text
    for server in fresh.servers.values():
        assert server.requests() == [], server.name
    assert fresh.provider.calls == []


@pytest.mark.parametrize(
    "payload",
    [
        "not an object",
        {"input": 42},
        {"input": "x", "tools": [{"type": "mcp", "server_label": "bad label!", "server_url": "http://x"}]},
        {"input": "x", "tools": [{"type": "mcp", "server_label": "ok", "server_url": "ftp://nowhere"}]},
        {
            "input": "x",
            "tools": [{"type": "mcp", "server_label": "oci-tools", "server_url": "http://127.0.0.1:9/"}],
        },
    ],
    ids=["not-an-object", "input-not-text", "bad-label", "bad-url", "label-clash"],
)
async def test_invalid_bodies_get_400_and_nothing_is_sent(fresh: Any, payload: Any) -> None:
    reply = await post(fresh, caller("req-bad-body"), payload)
    assert reply.status_code == 400, reply.text
    for server in fresh.servers.values():
        assert server.requests() == [], server.name
    assert fresh.provider.calls == []


async def test_concurrent_requests_each_forward_their_own_headers(fresh: Any) -> None:
    count = 8
    replies: dict[int, httpx2.Response] = {}
    async with httpx2.AsyncClient(timeout=30.0) as http:

        async def send(i: int) -> None:
            headers = caller(f"req-c{i}", token=f"tok-c{i}", key=f"key-c{i}")
            replies[i] = await http.post(fresh.gateway_url, headers=headers, json=body(fresh, f"q{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(count):
                tg.start_soon(send, i)
    assert all(reply.status_code == 200 for reply in replies.values())
    for i in range(count):
        assert call_of(fresh, "oci-tools", f"req-c{i}").meta["extra_headers"][TOKEN] == f"tok-c{i}"
        assert oci_http(call_of(fresh, "oci-audit", f"req-c{i}"))[TOKEN] == f"tok-c{i}"
    by_request = {call.header("x-request-id"): call for call in fresh.provider.calls}
    assert len(by_request) == count
    for i in range(count):
        assert by_request[f"req-c{i}"].header_values("authorization") == [f"Bearer key-c{i}"]


async def test_run_demo_reports_no_problems(demo: Any) -> None:
    report = await gateway.run_demo(demo)
    assert [ex.status for ex in report.exchanges] == [200, 400]
    assert report.problems() == []


def test_the_example_runs_as_a_script() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== good request: HTTP 200" in out
    assert "== duplicated authorization: HTTP 400" in out
    assert out.rstrip().endswith("ok")
    # Secret values are shown redacted, never in clear.
    for secret in ("oci-delegation-token-123", "caller-api-key", "someone-else"):
        assert secret not in out
    assert "[REDACTED]" in out

"""Trace propagation end to end: a caller's trace, through a turn, into an MCP tool server.

Run it with ``python examples/trace_propagation.py`` (needs ``pip install
'codex-runtime[otel]'``; add ``--backend trio`` to run the agent side on trio).

Two sides run in this one process, sharing the OpenTelemetry SDK's in-memory exporter:

- the **tool server** ("kb", an MCP server built with the SDK's own `MCPServer`, served
  over streamable HTTP on 127.0.0.1 by uvicorn in a thread of its own). Its ``lookup``
  tool extracts the W3C trace context twice, from the HTTP headers and from the
  request's ``params._meta`` (SEP-414), checks that both name the same span, and
  records its own span under it;
- the **agent side**: a `Session` with the `TraceTurns` hook, running one turn the way a
  gateway does for an incoming HTTP request: ``forwarded_headers`` carry the caller's
  ``traceparent``, so the turn continues the caller's trace. The turn calls the tool
  twice, concurrently.

It prints the whole span tree of the caller's trace, then what the server received.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from opentelemetry import propagate, trace

from codex_runtime import ServerConfig, Session
from codex_runtime.tracing import (
    KEY_ATTRIBUTES,
    TraceTurns,
    TracingUnavailableError,
    format_span_tree,
    install_memory_exporter,
    parse_traceparent,
)

#: What a gateway received from its caller (the caller's own span is "00f067aa0ba902b7").
CALLER_HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "caller=t61rcWkgMzE",
    "x-request-id": "req-42",
}

server_tracer = trace.get_tracer("example.kb-server")


# -- the tool server ------------------------------------------------------------------------


def build_tool_server(received: list[dict[str, Any]]) -> MCPServer:
    """An MCP server whose ``lookup`` tool continues the caller's trace by itself."""
    server = MCPServer(name="kb", log_level="WARNING")

    @server.tool(name="lookup", description="Look a topic up; traces itself under the caller's trace.")
    async def lookup(ctx: Context[Any, Any], topic: str) -> str:
        headers = dict(ctx.headers or {})
        raw_meta = ctx.request_context.meta
        if raw_meta is None:
            meta: dict[str, Any] = {}
        elif isinstance(raw_meta, dict):
            meta = dict(raw_meta)
        else:
            meta = raw_meta.model_dump(by_alias=True, exclude_none=True)
        # The same extraction a server does for any W3C carrier: HTTP headers, or `_meta`.
        from_http = trace.get_current_span(propagate.extract(headers)).get_span_context()
        from_meta_context = propagate.extract(meta)
        from_meta = trace.get_current_span(from_meta_context).get_span_context()
        agree = from_http == from_meta and from_meta.is_valid
        # `_meta` is what MCP defines for this (it also reaches stdio servers): parent on it.
        with server_tracer.start_as_current_span(
            "kb.lookup",
            context=from_meta_context,
            attributes={"kb.topic": topic, "kb.http_matches_meta": agree},
        ):
            await anyio.sleep(0.01)  # the "work"
        received.append(
            {
                "topic": topic,
                "http_traceparent": headers.get("traceparent"),
                "meta_traceparent": meta.get("traceparent"),
                "tracestate": meta.get("tracestate"),
                "agree": agree,
            }
        )
        return f"{topic}: 42"

    return server


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1 in its own thread and asyncio loop.

    The app is built inside that loop: the MCP server's synchronization primitives
    belong to the event loop they are made in.
    """

    def __init__(self, make_app: Callable[[], Any]) -> None:
        self.make_app = make_app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"
        self.server: Any = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    async def _serve(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.make_app(), log_level="warning", log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        await self.server.serve(sockets=[self.sock])

    def start(self) -> None:
        """Start serving; blocks until the socket accepts."""
        self.thread.start()
        while self.server is None or not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the tool server failed to start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


# -- the agent side --------------------------------------------------------------------------


def trace_id_of(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


async def run_turn(url: str) -> list[str]:
    """Run one turn continuing the caller's trace; return the ids of the traces it made."""
    hook = TraceTurns()
    config = ServerConfig(name="kb", url=url)
    async with Session([config], hooks=[hook]) as session:
        session_span = hook.session_span_of(session)
        async with session.turn(forwarded_headers=CALLER_HEADERS) as turn:
            turn_trace = trace_id_of(trace.get_current_span())
            async with anyio.create_task_group() as tg:
                for topic in ("tracing", "baggage"):
                    tg.start_soon(turn.call_tool, "kb", "lookup", {"topic": topic})
        assert turn.outcome is not None
        print(f"turn {turn.index} ended {turn.outcome.state.value}")
    # The session span has a trace of its own; the turn links to it.
    return [turn_trace] + ([trace_id_of(session_span)] if session_span is not None else [])


async def main() -> None:
    try:
        exporter = install_memory_exporter()
    except TracingUnavailableError as exc:
        raise SystemExit(str(exc)) from None
    received: list[dict[str, Any]] = []
    server = ServerThread(lambda: build_tool_server(received).streamable_http_app())
    await anyio.to_thread.run_sync(server.start)
    try:
        trace_ids = await run_turn(server.url)
    finally:
        await anyio.to_thread.run_sync(server.stop)

    print()
    shown = (*KEY_ATTRIBUTES, "kb.topic", "kb.http_matches_meta")
    print(format_span_tree(exporter.get_finished_spans(), trace_ids=trace_ids, attributes=shown))
    exporter.shutdown()
    print()
    caller = parse_traceparent(CALLER_HEADERS["traceparent"])
    assert caller is not None
    print(f"caller trace id:  {caller.trace_id}")
    ok = len(received) == 2
    for item in sorted(received, key=lambda r: r["topic"]):
        sent = parse_traceparent(item["meta_traceparent"])
        ok = ok and item["agree"] and sent is not None and sent.trace_id == caller.trace_id
        where = f"{sent.trace_id} (span {sent.span_id})" if sent is not None else "no trace context"
        print(
            f"server received:  {where} for {item['topic']!r}; "
            f"HTTP == _meta: {item['agree']}; tracestate {item['tracestate']!r}"
        )
    print(json.dumps({"same_trace": ok}))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Trace propagation from a caller to an MCP tool server.")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    anyio.run(main, backend=parser.parse_args().backend)

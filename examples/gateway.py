"""An SMG-style model gateway: caller headers go to MCP tool calls, never to the provider.

For each ``POST /v1/responses`` the gateway runs one turn on behalf of the caller, with
the request's headers as ``forwarded_headers``:

* `ForwardHeaders` (policy `HeaderPolicy.smg`) checks them, then hands the OCI delegation
  token and compartment id to the MCP servers the operator configured with
  ``forward=True`` only, in ``params._meta.extra_headers`` (SMG's shape) or also as HTTP
  headers, per server. Servers a caller names in its request are added to the turn's
  session with ``forward=False``: a caller can never send them the token.
* The stand-in LLM provider gets ``policy.for_provider`` of the same headers (the
  caller's ``authorization``, request ids, routing key) and the turn span's
  ``traceparent``; never the MCP-only headers.
* `TraceTurns` continues the caller's trace: the turn span is a child of the incoming
  ``traceparent``, and every MCP server and the provider receive that trace.
* A request whose headers repeat a single-valued header with different values (two
  ``authorization`` headers, two ``traceparent``\\ s) or carry a value that is not visible
  ASCII is answered ``400`` before anything is sent anywhere.

Run it (it starts its own loopback servers, sends a few requests and prints what every
party received)::

    python examples/gateway.py

Everything listens on 127.0.0.1. The gateway and the stand-in provider are Starlette apps
served by uvicorn, each in a thread with its own asyncio loop; the MCP servers are
`codex_runtime.testing.RecordingServer`\\ s, which record what they receive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

try:
    import codex_runtime  # noqa: F401
except ImportError:  # run from a source checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import httpx2
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from codex_runtime import (
    CodexRuntimeError,
    ConfigError,
    ForwardHeaders,
    HeaderPolicy,
    InvalidHeaderError,
    McpClient,
    ServerConfig,
    ServerUnavailableError,
    Session,
    ToolCallError,
    Turn,
    redact,
)
from codex_runtime.testing import RecordedRequest, RecordingServer
from codex_runtime.tracing import (
    TraceTurns,
    TracingUnavailableError,
    format_span_tree,
    install_memory_exporter,
)

__all__ = [
    "Demo",
    "Exchange",
    "Gateway",
    "ProviderCall",
    "Report",
    "StandInProvider",
    "main",
    "run_demo",
    "running_demo",
]

#: What the demo's MCP servers are configured with: (name, forward, header_delivery).
OPERATOR_SERVERS: tuple[tuple[str, bool, Literal["http", "meta", "both"]], ...] = (
    ("oci-tools", True, "meta"),  # SMG's shape: _meta.extra_headers only
    ("oci-audit", True, "both"),  # _meta.extra_headers and HTTP headers
    ("public-docs", False, "both"),  # a third-party server: receives no caller headers
)
#: A server no operator configured: a caller names its URL in its request.
CALLER_SERVER = "caller-tools"

_W3C = TraceContextTextMapPropagator()


# -- the stand-in LLM provider ------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderCall:
    """One request the stand-in provider received."""

    header_pairs: tuple[tuple[str, str], ...]
    body: Any

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        """Every value received for header ``name``."""
        name = name.lower()
        return [value for key, value in self.header_pairs if key == name]


class StandInProvider:
    """An OpenAI-compatible ``POST /v1/chat/completions`` that records what it receives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[ProviderCall] = []

    @property
    def calls(self) -> list[ProviderCall]:
        """Every request received so far."""
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def app(self) -> Starlette:
        async def completions(request: Request) -> JSONResponse:
            body = await request.json()
            pairs = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers.raw)
            with self._lock:
                self._calls.append(ProviderCall(pairs, body))
            asked = body["messages"][0]["content"] if body.get("messages") else ""
            used = sum(1 for message in body.get("messages", ()) if message.get("role") == "tool")
            answer = f"stand-in answer to {asked!r}, using {used} tool results"
            return JSONResponse(
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "model": body.get("model", "stand-in"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )

        return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


# -- the gateway -------------------------------------------------------------------------------


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status)


def _request_servers(body: Mapping[str, Any], taken: set[str]) -> list[ServerConfig]:
    """The MCP servers a caller names in its request, never trusted with forwarded headers."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise ConfigError("`tools` must be a list")
    configs = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "mcp":
            raise ConfigError("each tool must be an object with type 'mcp'")
        # `forward` is the operator's decision: whatever the request says, it stays False.
        # ServerConfig validates whatever the caller sent (ConfigError, answered 400).
        label: Any = tool.get("server_label")
        config = ServerConfig(name=label, url=tool.get("server_url"), forward=False)
        if config.name in taken:
            raise ConfigError(f"server_label {config.name!r} is already in use; choose another")
        taken.add(config.name)
        configs.append(config)
    return configs


class Gateway:
    """The gateway app: shared MCP clients, and one session and turn per request.

    Args:
        servers: The operator's MCP servers; their clients are connected once, at startup,
            and shared by every request's session.
        provider_url: The provider's chat-completions endpoint.
        policy: Which caller headers go to MCP servers and which to the provider.
    """

    def __init__(
        self, servers: Sequence[ServerConfig], provider_url: str, policy: HeaderPolicy | None = None
    ) -> None:
        self.servers = list(servers)
        self.provider_url = provider_url
        self.policy = policy if policy is not None else HeaderPolicy.smg()
        # One instance of each hook serves every request: their state is keyed by turn.
        self.hooks: list[object] = [TraceTurns(session_span=False), ForwardHeaders(self.policy)]
        self._clients: list[McpClient] = []
        self._http: httpx2.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Connected and closed in the same task (the app's lifespan task), as McpClient needs.
        async with contextlib.AsyncExitStack() as stack:
            self._http = await stack.enter_async_context(
                httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=60.0))
            )
            for config in self.servers:
                self._clients.append(await stack.enter_async_context(McpClient(config)))
            yield
        self._clients.clear()

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/v1/responses", self.responses, methods=["POST"])], lifespan=self._lifespan
        )

    async def responses(self, request: Request) -> JSONResponse:
        # Every value, repeats included: duplicates are for the policy to judge, never to join.
        incoming = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("input"), str):
                raise ValueError("the body must be a JSON object with an `input` string")
            extra_servers = _request_servers(body, {config.name for config in self.servers})
        except (ValueError, ConfigError) as exc:
            return _error(400, "invalid_request_error", str(exc))

        result: dict[str, Any] = {}
        try:
            async with Session(clients=self._clients, hooks=self.hooks) as session:
                # ForwardHeaders checks the headers at turn start: invalid ones fail the
                # turn before its body, so nothing is sent anywhere.
                async with session.turn(
                    forwarded_headers=incoming, metadata={"model": body.get("model")}
                ) as turn:
                    result = await self._run_turn(session, turn, body, extra_servers)
        except InvalidHeaderError as exc:
            # The message names the header and the rule, never a value.
            return _error(400, "invalid_request_error", str(exc), header=exc.name, rule=exc.rule)
        except (CodexRuntimeError, ValueError, httpx2.HTTPError) as exc:
            return _error(502, "upstream_error", f"{type(exc).__name__}: {exc}")
        return JSONResponse(result)

    async def _run_turn(
        self, session: Session, turn: Turn, body: Mapping[str, Any], extra_servers: Sequence[ServerConfig]
    ) -> dict[str, Any]:
        for config in extra_servers:
            # Added while the turn runs: the same hook path as the operator's servers
            # (`on_client_added`), and with forward=False it gets no caller headers.
            await session.add_server(config)
        request_id = turn.forwarded_headers.get("x-request-id") or turn.id
        outputs: dict[str, str] = {}

        async def call(server: str) -> None:
            # A failing tool is reported to the model, as a tool result, not to the caller.
            try:
                result = await turn.call_tool(
                    server, "echo", {"text": body["input"], "data": {"request_id": request_id}}
                )
            except (ToolCallError, ServerUnavailableError) as exc:
                outputs[server] = f"error: {exc}"
            else:
                outputs[server] = "error" if result.is_error else "ok"

        async with anyio.create_task_group() as tg:
            for server in session.clients:
                tg.start_soon(call, server)

        # The provider gets what the policy allows it, then the turn span's trace context.
        headers = self.policy.for_provider(turn.forwarded_headers).to_dict()
        _W3C.inject(headers)
        messages = [{"role": "user", "content": body["input"]}]
        messages += [{"role": "tool", "name": name, "content": outputs[name]} for name in sorted(outputs)]
        assert self._http is not None
        reply = await self._http.post(
            self.provider_url, headers=headers, json={"model": body.get("model"), "messages": messages}
        )
        reply.raise_for_status()
        text = reply.json()["choices"][0]["message"]["content"]
        return {
            "id": f"resp_{turn.id}",
            "object": "response",
            "status": "completed",
            "request_id": request_id,
            "turn_id": turn.id,
            "tools": outputs,
            "output_text": text,
        }


# -- serving on loopback ----------------------------------------------------------------------


class _Served:
    """An ASGI app served by uvicorn on 127.0.0.1, in a thread with its own asyncio loop."""

    def __init__(self, make_app: Callable[[], Any], name: str) -> None:
        self._make_app = make_app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        import uvicorn

        async def serve() -> None:
            # The app (and its lifespan) live on this thread's loop.
            config = uvicorn.Config(self._make_app(), log_level="warning", log_config=None, lifespan="on")
            self._server = uvicorn.Server(config)
            serving = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
            while not self._server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.005)  # uvicorn has no startup event: poll its flag
            self._ready.set()
            await serving

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by `start`
            self._error = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._server is None or not self._server.started:
            self._thread.join(10)
            raise RuntimeError(f"{self._thread.name} failed to start: {self._error!r}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


@dataclass
class Demo:
    """Everything `running_demo` started: the gateway's URL and what each party records."""

    gateway_url: str
    provider: StandInProvider
    servers: dict[str, RecordingServer]
    caller_server_url: str

    def clear(self) -> None:
        """Forget what every party recorded so far."""
        self.provider.clear()
        for server in self.servers.values():
            server.clear()


@contextlib.contextmanager
def running_demo() -> Iterator[Demo]:
    """Start the MCP servers, the stand-in provider and the gateway; stop them on exit."""
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(RecordingServer(name))
            for name in (*(name for name, _, _ in OPERATOR_SERVERS), CALLER_SERVER)
        }
        provider = StandInProvider()
        provider_thread = _Served(provider.app, "stand-in-provider")
        provider_thread.start()
        stack.callback(provider_thread.stop)
        configs = [
            ServerConfig(name=name, url=servers[name].url, forward=forward, header_delivery=delivery)
            for name, forward, delivery in OPERATOR_SERVERS
        ]
        provider_url = f"http://127.0.0.1:{provider_thread.port}/v1/chat/completions"
        gateway_thread = _Served(Gateway(configs, provider_url).app, "gateway")
        gateway_thread.start()
        stack.callback(gateway_thread.stop)
        demo = Demo(
            gateway_url=f"http://127.0.0.1:{gateway_thread.port}/v1/responses",
            provider=provider,
            servers=servers,
            caller_server_url=servers[CALLER_SERVER].url,
        )
        demo.clear()  # connecting sent initialize / tools/list: start from nothing
        yield demo


# -- the demo -----------------------------------------------------------------------------------

CALLER_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def demo_requests(caller_server_url: str) -> list[tuple[str, list[tuple[str, str]], dict[str, Any]]]:
    """(label, headers, JSON body) of the demo's requests."""
    good = [
        ("authorization", "Bearer caller-api-key"),
        ("x-smg-oci-delegation-token", "oci-delegation-token-123"),
        ("x-smg-oci-compartment-id", "ocid1.compartment.oc1..example"),
        ("x-request-id", "req-good"),
        ("traceparent", CALLER_TRACEPARENT),
        ("cookie", "session=not-for-anyone"),
    ]
    body = {
        "model": "stand-in-model",
        "input": "What changed in my compartment?",
        "tools": [{"type": "mcp", "server_label": CALLER_SERVER, "server_url": caller_server_url}],
    }
    duplicated = [
        ("authorization", "Bearer caller-api-key"),
        ("authorization", "Bearer someone-else"),
        *[(k, v) for k, v in good if k not in ("authorization", "x-request-id")],
        ("x-request-id", "req-duplicated"),
    ]
    return [
        ("good request", good, body),
        ("duplicated authorization", duplicated, {**body, "input": "This must not be sent."}),
    ]


@dataclass
class Exchange:
    """One demo request and what every party received because of it."""

    label: str
    status: int
    response: Any
    mcp: dict[str, list[RecordedRequest]] = field(default_factory=dict)
    provider: list[ProviderCall] = field(default_factory=list)


@dataclass
class Report:
    """What `run_demo` sent and what each party received."""

    exchanges: list[Exchange]

    def problems(self) -> list[str]:
        """What went against the gateway's promises (empty when all is well)."""
        found = []
        for ex in self.exchanges:
            forwarded = {name: [r for r in recs if _oci(r)] for name, recs in ex.mcp.items()}
            if ex.label == "good request":
                if ex.status != 200:
                    found.append(f"{ex.label}: status {ex.status}")
                for name, forward, _ in OPERATOR_SERVERS:
                    if forward and not forwarded.get(name):
                        found.append(f"{ex.label}: {name} did not get the OCI headers")
            elif ex.status != 400 or any(ex.mcp.values()) or ex.provider:
                found.append(f"{ex.label}: expected 400 with nothing sent, got {ex.status}")
            for name, recs in forwarded.items():
                if recs and name not in {n for n, forward, _ in OPERATOR_SERVERS if forward}:
                    found.append(f"{ex.label}: {name} got OCI headers")
            if any(call.header(h) for call in ex.provider for h in ("x-smg-oci-delegation-token", "cookie")):
                found.append(f"{ex.label}: the provider got an MCP-only header")
        return found


def _oci(record: RecordedRequest) -> dict[str, str]:
    """The OCI headers a request carried, from its HTTP headers and its _meta.extra_headers."""
    extra = record.meta.get("extra_headers") or {}
    seen = {}
    for name in ("x-smg-oci-delegation-token", "x-smg-oci-compartment-id"):
        value = record.header(name) or extra.get(name)
        if value is not None:
            seen[name] = value
    return seen


async def run_demo(demo: Demo | None = None) -> Report:
    """Send the demo's requests through the gateway; return what every party received.

    Starts everything itself (`running_demo`) unless given a running ``demo``.
    """
    if demo is None:
        with running_demo() as started:
            return await run_demo(started)
    exchanges = []
    async with httpx2.AsyncClient(timeout=30.0) as http:
        for label, headers, body in demo_requests(demo.caller_server_url):
            demo.clear()
            reply = await http.post(demo.gateway_url, headers=headers, json=body)
            exchanges.append(
                Exchange(
                    label=label,
                    status=reply.status_code,
                    response=reply.json(),
                    mcp={name: server.requests() for name, server in demo.servers.items()},
                    provider=demo.provider.calls,
                )
            )
    return Report(exchanges)


def _show(report: Report) -> str:
    lines = []
    for ex in report.exchanges:
        lines.append(f"== {ex.label}: HTTP {ex.status}")
        if ex.status != 200:
            lines.append(f"   gateway answered: {json.dumps(ex.response)}")
        for name, records in ex.mcp.items():
            for record in (r for r in records if r.method == "tools/call"):
                extra = record.meta.get("extra_headers")
                http = {k: v for k, v in _oci(record).items() if record.header(k) is not None}
                lines.append(
                    f"   MCP {name}: _meta.extra_headers={json.dumps(redact(extra or {}))} "
                    f"http={json.dumps(redact(http))} traceparent={record.header('traceparent')}"
                )
            if not records:
                lines.append(f"   MCP {name}: nothing")
            elif others := sum(1 for r in records if r.method != "tools/call"):
                lines.append(f"   MCP {name}: and {others} connection request(s) (tools/list, ...)")
        for call in ex.provider:
            shown = {
                k: v for k, v in redact(call.header_pairs).items() if k not in ("host", "content-length")
            }
            lines.append(f"   provider: {json.dumps(shown)}")
        if not ex.provider:
            lines.append("   provider: nothing")
    return "\n".join(lines)


def main() -> int:
    try:  # show the spans too, when the OpenTelemetry SDK is installed
        exporter = install_memory_exporter()
    except TracingUnavailableError:
        exporter = None
    report = anyio.run(run_demo)
    print(_show(report))
    if exporter is not None:
        caller_trace = CALLER_TRACEPARENT.split("-")[1]
        print(f"== spans of the caller's trace {caller_trace}")
        print(format_span_tree(exporter.get_finished_spans(), trace_ids=[caller_trace]))
    problems = report.problems()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``codex-runtime demo``: real loopback servers, four turns, and what each server got.

It starts two recording MCP servers, "apps" (an Apps server) and "tools" (a third-party
server with a static API key), opens a `Session` with `TurnHeaders`, and runs:

1. a turn with 8 parallel calls across both servers (some with call-scoped headers);
2. a turn interrupted while its call is in flight;
3. a turn replaced by a new turn while its call is in flight;
4. the turn that replaced it, which then calls.

Then it prints every request the servers received and checks the isolation rules.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import anyio

from .client import ServerConfig, request_headers
from .headers import redact
from .hooks import TurnHeaders
from .session import Session, Turn, TurnState
from .testing import RecordedRequest, RecordingServer

TURN_HEADERS = ("session_id", "x-codex-turn-metadata")
# The static headers shown, in the order the column's title names them.
STATIC_HEADERS = ("x-client", "x-api-key")


def _static_headers(request: RecordedRequest) -> dict[str, str]:
    """The static headers a request carried, redacted, in `STATIC_HEADERS` order (not arrival order)."""
    shown = redact({k: v for k, v in request.headers.items() if k in STATIC_HEADERS})
    return {name: shown[name] for name in STATIC_HEADERS if name in shown}


def _turn_of(request: RecordedRequest) -> str | None:
    raw = request.header("x-codex-turn-metadata")
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("turn_id")
    except ValueError:
        return "<malformed>"
    return value if isinstance(value, str) else "<malformed>"


def _short(value: str | None, n: int = 8) -> str:
    if not value:
        return "-"
    return value if len(value) <= n else value[:n]


async def run_demo(
    *,
    out: TextIO = sys.stdout,
    as_json: bool = False,
    protocol: str = "auto",
    trace: bool = False,
) -> int:
    """Run the demo; return the process exit code (0 when every rule holds)."""
    from . import tracing

    exporter: Any = None
    format_tree: Callable[[Any], str] | None = None
    if trace:
        exporter = tracing.install_memory_exporter()
        format_tree = tracing.format_span_tree
    else:
        # With the OpenTelemetry SDK installed, record spans anyway so that the servers get
        # real trace context (shown in the table); without it tracing stays a no-op.
        try:
            exporter = tracing.install_memory_exporter()
        except tracing.TracingUnavailableError:
            exporter = None

    async with RecordingServer("apps") as apps_srv, RecordingServer("tools") as tools_srv:
        hooks: list[object] = [TurnHeaders(), tracing.TraceTurns()]
        configs = [
            ServerConfig(name="apps", url=apps_srv.url, apps=True, protocol=protocol),  # type: ignore[arg-type]
            ServerConfig(
                name="tools",
                url=tools_srv.url,
                protocol=protocol,  # type: ignore[arg-type]
                headers={"x-api-key": "demo-secret-key", "x-client": "codex-runtime-demo"},
            ),
        ]
        expected: dict[str, str] = {}  # argument text -> turn id that sent it
        turns: list[Turn] = []
        async with Session(configs, hooks=hooks) as session:
            # Turn 1: 8 parallel calls across both servers, half with call-scoped headers.
            async with session.turn(metadata={"model": "demo-model", "reasoning_effort": "low"}) as turn:
                turns.append(turn)

                async def call(server: str, i: int, turn: Turn = turn) -> None:
                    text = f"t1-{server}-{i}"
                    expected[text] = turn.id
                    if i % 2:
                        with request_headers({"x-request-id": f"req-{i}"}):
                            await turn.call_tool(server, "echo", {"text": text})
                    else:
                        await turn.call_tool(server, "echo", {"text": text})

                async with anyio.create_task_group() as tg:
                    for i in range(4):
                        tg.start_soon(call, "apps", i)
                        tg.start_soon(call, "tools", i)

            # Turn 2: interrupted while its call is in flight.
            async def blocked(turn: Turn) -> None:
                expected[f"key:{turn.index}"] = turn.id
                await turn.call_tool("apps", "block", {"key": f"turn-{turn.index}"})

            handle = await session.start_turn(blocked)
            turns.append(handle.turn)
            await apps_srv.wait_for_calls("block", 1)
            handle.interrupt()
            await handle.wait()

            # Turn 3: replaced by a new turn (turn 4) while its call is in flight.
            handle = await session.start_turn(blocked)
            turns.append(handle.turn)
            await apps_srv.wait_for_calls("block", 2)
            async with session.turn(metadata={"model": "demo-model"}) as turn:
                turns.append(turn)
                expected["t4-apps"] = turn.id
                await turn.call_tool("apps", "echo", {"text": "t4-apps"})
            await handle.wait()

            # Outside any turn: no turn entry may travel.
            expected["outside"] = ""
            await session.clients["apps"].call_tool("echo", {"text": "outside"})
            leftovers = {name: c.turn_entry_ids() for name, c in session.clients.items()}

        rows, failures = _check(session, apps_srv, tools_srv, turns, expected, leftovers)

    spans = exporter.get_finished_spans() if exporter is not None else ()
    if as_json:
        out.write(
            json.dumps(
                {
                    "session_id": session.session_id,
                    "turns": [
                        {
                            "index": t.index,
                            "id": t.id,
                            "state": t.state.value,
                            "abort_reason": t.outcome.abort_reason.value
                            if t.outcome and t.outcome.abort_reason
                            else None,
                        }
                        for t in turns
                    ],
                    "requests": rows,
                    "failures": failures,
                    "ok": not failures,
                },
                indent=2,
            )
            + "\n"
        )
    else:
        _print_table(out, session, turns, rows)
        if format_tree is not None:
            out.write("\nSpans:\n" + format_tree(spans) + "\n")
            trace_ids = sorted({r["trace_id"] for r in rows if r["trace_id"] != "-"})
            out.write(f"Trace ids the servers received: {', '.join(trace_ids) or '-'}\n")
        if failures:
            out.write(f"\nVERDICT: FAIL ({len(failures)} rule(s) broken)\n")
            for failure in failures:
                out.write(f"  - {failure}\n")
        else:
            out.write(
                f"\nVERDICT: OK - {len(rows)} requests; turn entries only on Apps tools/call of the "
                "turn that sent them; none on other servers, handshakes, listings or after a turn; "
                "aborted calls cancelled on the server\n"
            )
    return 0 if not failures else 1


def _check(
    session: Session,
    apps_srv: RecordingServer,
    tools_srv: RecordingServer,
    turns: list[Turn],
    expected: dict[str, str],
    leftovers: dict[str, frozenset[str]],
) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    index_of = {t.id: t.index for t in turns}
    for server, srv in (("apps", apps_srv), ("tools", tools_srv)):
        for req in srv.requests():
            turn_id = _turn_of(req)
            sid = req.header("session_id")
            tp = req.header("traceparent")
            label = req.method or req.http_method
            key = req.arguments.get("key") or req.arguments.get("text")
            rows.append(
                {
                    "server": server,
                    "method": label,
                    "tool": req.tool_name,
                    "turn": index_of.get(turn_id or "", None),
                    "turn_id": turn_id,
                    "session_id_present": sid is not None,
                    "traceparent": tp,
                    "trace_id": tp.split("-")[1] if tp and tp.count("-") == 3 else "-",
                    "call_headers": {k: v for k, v in req.headers.items() if k == "x-request-id"},
                    "static_headers": _static_headers(req),
                }
            )
            where = f"{server} {label}{' ' + str(req.tool_name) if req.tool_name else ''} ({key or '-'})"
            if server != "apps" or req.method != "tools/call":
                if turn_id is not None or sid is not None:
                    failures.append(f"{where}: carried turn headers it must never get")
                continue
            want: str | None
            if isinstance(key, str) and key.startswith("turn-"):
                want = expected.get(f"key:{key.removeprefix('turn-')}")
            else:
                want = expected.get(str(key))
            if want == "":
                if turn_id is not None or sid is not None:
                    failures.append(f"{where}: sent outside any turn but carried turn headers")
            elif want is None:
                failures.append(f"{where}: unexpected request")
            elif turn_id != want:
                failures.append(f"{where}: carried turn {turn_id!r}, expected {want!r}")
            elif sid != session.session_id:
                failures.append(f"{where}: session_id header missing or wrong")
        for req in srv.requests("tools/call"):
            text = req.arguments.get("text")
            has = req.header("x-request-id")
            if isinstance(text, str) and text.startswith("t1-"):
                i = int(text.rsplit("-", 1)[1])
                if (i % 2 == 1) != (has == f"req-{i}"):
                    failures.append(f"{server} {text}: call-scoped header on the wrong call")
    for call in apps_srv.tool_calls("block"):
        if call.outcome != "cancelled":
            failures.append(
                f"block call {call.arguments}: server recorded {call.outcome!r}, expected 'cancelled'"
            )
    states = [t.state for t in turns]
    if states != [TurnState.COMPLETED, TurnState.ABORTED, TurnState.ABORTED, TurnState.COMPLETED]:
        failures.append(f"turn states were {[s.value for s in states]}")
    for name, ids in leftovers.items():
        if ids:
            failures.append(f"client {name!r} still holds turn entries after the turns: {sorted(ids)}")
    return rows, failures


def _print_table(out: TextIO, session: Session, turns: list[Turn], rows: list[dict[str, Any]]) -> None:
    out.write(f"Session {session.session_id}\n")
    for t in turns:
        reason = t.outcome.abort_reason.value if t.outcome and t.outcome.abort_reason else ""
        out.write(f"  turn {t.index}  {t.id}  {t.state.value:<9} {reason}\n")
    out.write("\nRequests received by the servers:\n")
    header = (
        f"  {'server':<6} {'method':<26} {'turn':<5} {'session_id':<10} "
        f"{'x-request-id':<12} {'static (' + ', '.join(STATIC_HEADERS) + ')':<30} {'traceparent':<20}"
    )
    out.write(header + "\n  " + "-" * (len(header) - 2) + "\n")
    for r in rows:
        method = r["method"] + (f" {r['tool']}" if r["tool"] else "")
        turn = str(r["turn"]) if r["turn"] is not None else ("?" if r["turn_id"] else "-")
        static = ", ".join(r["static_headers"].values()) or "-"
        tp = r["traceparent"]
        tp_short = f"{tp[3:11]}..{tp[36:44]}" if tp and len(tp) >= 55 else "-"
        out.write(
            f"  {r['server']:<6} {method:<26} {turn:<5} {'yes' if r['session_id_present'] else '-':<10} "
            f"{r['call_headers'].get('x-request-id', '-'):<12} {static:<30} {tp_short:<20}\n"
        )


__all__ = ["run_demo"]

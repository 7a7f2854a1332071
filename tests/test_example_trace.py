"""``examples/trace_propagation.py`` runs as a user runs it, and shows one connected trace.

In-process on asyncio and trio (with the test suite's SDK tracer provider), and once as a
script in a fresh interpreter, the way the README runs it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "trace_propagation.py"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip("│├└─ "))


def check_output(out: str) -> None:
    assert out.rstrip().endswith('{"same_trace": true}')
    block = out.split(f"trace {CALLER_TRACE}\n")[1].split("\n\n")[0].splitlines()
    names = [line.lstrip("│├└─ ").split("  ")[0] for line in block]
    assert names[0] == "turn" and "(parent 00f067aa0ba902b7, remote)" in block[0]
    assert names.count("execute_tool lookup") == 2
    assert names.count("MCP send tools/call lookup") == 2
    assert names.count("tools/call lookup") == 2  # the server SDK's own span
    assert names.count("kb.lookup") == 2  # the tool's span, from the extracted context
    for i, name in enumerate(names):
        if name == "kb.lookup":
            assert "kb.http_matches_meta=True" in block[i]
            # Its parent is the closest shallower line above: the client's send span.
            parent = next(block[j] for j in range(i - 1, -1, -1) if _depth(block[j]) < _depth(block[i]))
            assert "MCP send tools/call lookup" in parent
    # The turn links to the session span, which heads a trace of its own.
    [link] = re.findall(r"link=([0-9a-f]{16})", block[0])
    assert re.search(rf"└─ session  span={link}  session\.id=", out)

    sent_spans = set(re.findall(r"MCP send tools/call lookup  \[client\]  span=([0-9a-f]{16})", out))
    received = re.findall(r"server received:  ([0-9a-f]{32}) \(span ([0-9a-f]{16})\)", out)
    assert len(received) == 2
    assert {trace_id for trace_id, _ in received} == {CALLER_TRACE}
    assert {span_id for _, span_id in received} == sent_spans
    assert out.count("HTTP == _meta: True") == 2
    assert out.count("tracestate 'caller=t61rcWkgMzE'") == 2


@pytest.mark.anyio
async def test_example_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Imported as a module (the SDK's server resolves the tool's annotations through it).
    spec = importlib.util.spec_from_file_location("example_trace_propagation", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    main: Callable[[], Awaitable[None]] = module.main
    await main()
    check_output(capsys.readouterr().out)


def test_example_as_a_script() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TRACEPARENT", "TRACESTATE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--backend", "trio"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    check_output(proc.stdout)

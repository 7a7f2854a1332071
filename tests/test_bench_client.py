"""`python -m bench client` runs end to end (a few calls, both OpenTelemetry modes).

Only that it runs and reports every side: its numbers are measured on a quiet machine,
never asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_client_runs_and_reports_every_side() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "client",
            *("--calls", "40", "--rounds", "4", "--warmup", "2"),
            *("--concurrency", "4", "--sleep", "0.01", "--repeat", "1"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert out.count("bench client:") == 2  # without and with the OpenTelemetry SDK
    for label in ("McpClient.call_tool", "turn.call_tool, TurnHeaders + TraceTurns"):
        assert out.count(label) == 2
    assert out.count("CPU ratio") == 6
    assert "40 calls per side in 4 interleaved rounds" in out

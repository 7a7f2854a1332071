"""``examples/durable_agent.py`` runs as a script: killed mid-turn, finished by a new process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dbos")

ROOT = Path(__file__).resolve().parent.parent


def test_the_durable_example_resumes_a_killed_turn() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "durable_agent.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    turn_id = lines[0].split()[-1]
    assert lines[1].startswith("worker 1 killed (SIGKILL) while 'block' was in flight")
    assert lines[2] == f"worker 2 resumed turn {turn_id}: completed"
    assert "outcome unknown" in lines[3]
    # Each tool reached the server once: nothing was sent again after the crash.
    sent = lines[4].split(": ", 1)[1].split(", ")
    assert [s.split(":")[0] for s in sent] == ["lookup", "echo", "block"]
    assert lines[5] == f"turn ids the server saw: ['{turn_id}']"
    assert lines[6] == "stored turn #1 completed: lookup=ok, echo=ok, block=unknown"

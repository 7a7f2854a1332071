"""examples/approval.py: asks before tools that are not read-only (standalone and in-process)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "approval.py"


@pytest.mark.parametrize(
    ("answer", "status", "seen"), [("n", "denied", "tool call denied"), ("y", "ok", "deleted")]
)
def test_approval_runs_standalone(answer: str, status: str, seen: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        input=f"{answer}\n",
        cwd=EXAMPLE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "  read_file: ok"  # read-only: no question
    assert lines[1].startswith("allow files.delete_file(") and lines[1].endswith(f"[y/N] {answer}")
    assert lines[2].startswith(f"  delete_file: {status}")
    assert lines[3].startswith("The model saw: ") and seen in lines[3]


@pytest.mark.anyio
async def test_approval_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, Any] = runpy.run_path(str(EXAMPLE), run_name="example_approval")
    questions: list[str] = []

    def refuse(question: str) -> bool:
        questions.append(question)
        return False

    await namespace["main"](refuse)
    out = capsys.readouterr().out.splitlines()
    assert questions == ['allow files.delete_file({"path": "plan.txt"})? [y/N] ']
    assert out == [
        "  read_file: ok",
        "  delete_file: denied (the user did not approve delete_file)",
        "The model saw: tool call denied: the user did not approve delete_file",
    ]

"""The session examples run: in-process on asyncio and trio, and standalone as scripts."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SESSION_EXAMPLES = ["quickstart.py", "programmatic_turns.py", "custom_hook.py", "elicitation.py"]


def load_main(name: str) -> Callable[[], Awaitable[None]]:
    namespace = runpy.run_path(str(EXAMPLES / name), run_name=f"example_{name[:-3]}")
    main: Callable[[], Awaitable[None]] = namespace["main"]
    return main


def check_quickstart(out: str) -> None:
    lines = out.splitlines()
    assert "completed" in lines[0]
    turn_id = lines[0].split()[1].rstrip(":")
    session_id = lines[1].split(": ", 1)[1]
    metadata = json.loads(lines[2].split(": ", 1)[1])
    assert metadata["turn_id"] == turn_id
    assert metadata["session_id"] == metadata["thread_id"] == session_id
    assert metadata["model"] == "gpt-x"


def check_programmatic_turns(out: str) -> None:
    lines = out.splitlines()
    assert lines[:6] == [
        "turn 1: completed  [echo=ok]",
        "turn 2: aborted (interrupted)  [block=aborted]",
        "turn 3: aborted (replaced)  [block=aborted]",
        "turn 4: completed  [echo=ok]",
        "turn 5: failed: ValueError('the model returned nonsense')  [echo=ok]",
        "turn 6: aborted (shutdown)  [block=aborted]",
    ]
    assert lines[6].count("block:cancelled") == 3


def check_custom_hook(out: str) -> None:
    assert out.splitlines() == [
        "turn 1 ended: completed",
        "crm got 'first' with x-tenant=acme",
        "crm got 'second' with x-tenant=globex",
        "crm got 'after the turn' with x-tenant=None",
        "search got 'elsewhere' with x-tenant=None",
    ]


def check_elicitation(out: str) -> None:
    era = [
        "  [tools/ask] asks the user: What is your name?",
        "  ask -> {'name': 'Ada'}",
        "  [tools/sample] asks the model: Name a colour",
        "  sample -> (a model's answer to 'Name a colour')",
        "  roots -> ['file:///work/repo']",
        "  res://readme -> readme of tools",
        "  prompt greet -> Hello, Ada!",
    ]
    lines = out.splitlines()
    # Progress notifications are delivered as they come: their place among the lines varies.
    progress = [line for line in lines if line.startswith("  progress ")]
    rest = [line for line in lines if not line.startswith("  progress ")]
    assert rest == ["protocol 2025-11-25:", *era, "protocol 2026-07-28:", *era]
    assert sorted(progress) == sorted(["  progress 1/2: step 1", "  progress 2/2: step 2"] * 2)


CHECKS = {
    "quickstart.py": check_quickstart,
    "programmatic_turns.py": check_programmatic_turns,
    "custom_hook.py": check_custom_hook,
    "elicitation.py": check_elicitation,
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", SESSION_EXAMPLES)
async def test_example_runs_in_process(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    await load_main(name)()
    CHECKS[name](capsys.readouterr().out)


@pytest.mark.parametrize("name", SESSION_EXAMPLES)
def test_example_runs_standalone(name: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=EXAMPLES,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    CHECKS[name](done.stdout)

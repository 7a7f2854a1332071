"""examples/oauth_login.py runs: in-process on asyncio and trio, and standalone."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "oauth_login.py"


def check(out: str) -> None:
    assert out.splitlines() == [
        "authorization request: mcp S256",
        "token grants: ['authorization_code']",
        "token file mode: 0o600",
        "refused: status 403, scheme Bearer, scope 'mcp docs:admin'",
        "browser rounds: 1",
        "tool calls with a bearer token: 2 of 2",
    ]


@pytest.mark.anyio
async def test_oauth_example_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(EXAMPLE), run_name="example_oauth_login")["main"]
    await main()
    check(capsys.readouterr().out)


def test_oauth_example_standalone() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    check(done.stdout)

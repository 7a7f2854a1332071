"""The agent examples run: ``agent_loop.py`` in-process and as a script,
``openai_compatible.py`` as a script against the stand-in provider."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from codex_runtime._provider_stub import ProviderStub, StubReply

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _run_script(name: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AGENT_"))}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environ.update(env)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=EXAMPLES,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check_agent_loop(out: str) -> None:
    turn1, turn2_and_rest = out.split("turn 2: Fix it.\n")
    turn2, received = turn2_and_rest.split("what the servers received:\n")
    lines = turn1.splitlines()
    assert lines[0] == "turn 1: Why does the build fail?"
    assert lines[1] == "  step 1: the model asks for 2 tool call(s)"
    # The two calls of step 1 run concurrently: their results may come in either order.
    assert set(lines[2:4]) == {
        '    -> apps__echo {"text": "search issues: build failure"}',
        '    -> workspace__echo {"text": "read: pyproject.toml"}',
    }
    assert {line.split(" [")[0] for line in lines[4:6]} == {"    <- apps__echo", "    <- workspace__echo"}
    assert lines[6:] == [
        "  step 2: the model asks for 1 tool call(s)",
        '    -> workspace__fail {"message": "tests/test_build.py::test_wheel FAILED"}',
        "    <- workspace__fail [error] tests/test_build.py::test_wheel FAILED",
        "  step 3: the model answers: I read 3 tool results; the failing check says: "
        "tests/test_build.py::test_wheel FAILED",
        "  => completed after 3 model calls",
    ]
    assert turn2.splitlines()[-2:] == [
        "  step 2: the model answers: Fixed. (This conversation has 2 user messages: "
        "['Why does the build fail?', 'Fix it.'])",
        "  => completed after 2 model calls",
    ]
    assert received.splitlines() == [
        "  apps echo: turn headers yes",
        "  workspace echo: turn headers no",
        "  workspace fail: turn headers no",
        "  workspace echo: turn headers no",
    ]


@pytest.mark.anyio
async def test_agent_loop_example_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = runpy.run_path(str(EXAMPLES / "agent_loop.py"), run_name="example_agent_loop")
    main: Callable[[], Awaitable[None]] = namespace["main"]
    await main()
    check_agent_loop(capsys.readouterr().out)


def test_agent_loop_example_runs_standalone() -> None:
    done = _run_script("agent_loop.py")
    assert done.returncode == 0, done.stderr
    check_agent_loop(done.stdout)


def test_openai_compatible_example_against_the_stand_in_provider() -> None:
    with ProviderStub(
        [
            StubReply.tool_calls(("apps__echo", {"text": "hello from the agent"}), ("workspace__fail", {})),
            StubReply.text("The tool echoed 'hello from the agent'."),
        ]
    ) as provider:
        done = _run_script(
            "openai_compatible.py",
            OPENAI_BASE_URL=provider.base_url,
            OPENAI_MODEL="stub-model",
            OPENAI_API_KEY="sk-example",
        )
        requests = provider.chat_requests()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ['-> apps__echo {"text": "hello from the agent"}', "-> workspace__fail {}"]
    assert "<- workspace__fail [error] requested failure" in lines[2:4]
    assert lines[4:] == [
        "answer: The tool echoed 'hello from the agent'.",
        "(completed, 2 model calls, 2 tool calls)",
    ]
    first, second = requests
    assert first.body["model"] == "stub-model"
    assert first.header("authorization") == "Bearer sk-example"
    assert {"apps__echo", "workspace__echo"} <= set(first.tool_names)
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool", "tool"]
    for request in requests:
        assert request.header("x-api-key") is None and request.header("session_id") is None


def test_openai_compatible_example_needs_its_settings() -> None:
    done = _run_script("openai_compatible.py")
    assert done.returncode == 2
    assert "OPENAI_BASE_URL" in done.stderr


def test_openai_compatible_example_reports_a_failed_turn() -> None:
    with ProviderStub([StubReply.error(401, "invalid api key")]) as provider:
        done = _run_script("openai_compatible.py", OPENAI_BASE_URL=provider.base_url, OPENAI_MODEL="m")
    assert done.returncode == 1
    assert "HTTP 401: invalid api key" in done.stderr and "Traceback" not in done.stderr

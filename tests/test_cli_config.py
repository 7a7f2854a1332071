"""The command line as a Codex user meets it: secrets by provenance, trace context from the
environment, stdio ``--show-headers``, servers whose settings cannot be resolved, Codex keys
and defaults.

The commands run in-process (``main([...])``) against real loopback servers, or as a
subprocess where the process environment itself is under test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codex_runtime.cli import main
from codex_runtime.config import load_config
from codex_runtime.testing import RecordingServer

ROOT = Path(__file__).resolve().parents[1]
GH_TOKEN = "ghp_provenanceSecret0123456789"
TENANT = "tenant-from-env-5f2a"


def _write(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


# -- secrets by provenance ----------------------------------------------------------------------


@pytest.fixture
def env_config(tmp_path: Path, server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CLI_GH_TOKEN", GH_TOKEN)
    monkeypatch.setenv("CLI_TENANT", TENANT)
    return _write(
        tmp_path,
        f"""
[mcp_servers.gh]
url = "{server.url}"
env_http_headers = {{ "x-custom-auth" = "CLI_GH_TOKEN", "x-tenant-id" = "CLI_TENANT" }}
http_headers = {{ "x-client" = "cli-test" }}
""",
    )


def test_show_headers_hides_every_value_read_from_the_environment(
    env_config: str, server: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["call", "gh", "sleep", "--args", '{"seconds": 0}', "--config", env_config, "--show-headers"]
    assert main(args) == 0
    out = capsys.readouterr().out
    shown = out.split("--- sent to 'gh': POST ")[1]
    assert "x-custom-auth: [REDACTED]" in shown  # secret by name (x-*-auth)
    assert "x-tenant-id: [REDACTED]" in shown  # secret by provenance only
    assert "x-client: cli-test" in shown  # a literal value of the file stays visible
    assert GH_TOKEN not in out and TENANT not in out
    # The server got the real values.
    [call] = server.requests("tools/call")
    assert call.header("x-custom-auth") == GH_TOKEN and call.header("x-tenant-id") == TENANT


def test_show_headers_json_hides_values_read_from_the_environment(
    env_config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "call",
        "gh",
        "sleep",
        "--args",
        '{"seconds": 0}',
        "--config",
        env_config,
        "--show-headers",
        "--json",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert GH_TOKEN not in out and TENANT not in out
    [sent] = _json(out)["sent"]
    assert sent["headers"]["x-tenant-id"] == "[REDACTED]"


def test_a_config_repr_hides_values_read_from_the_environment(env_config: str) -> None:
    [gh] = load_config(env_config)
    assert gh.secret_headers == frozenset({"x-custom-auth", "x-tenant-id"})
    shown = repr(gh)
    assert GH_TOKEN not in shown and TENANT not in shown
    assert "cli-test" in shown

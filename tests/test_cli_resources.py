"""``codex-runtime resources | read | prompts | prompt`` against real loopback servers."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from codex_runtime.cli import main
from codex_runtime.testing import RecordingServer


@pytest.fixture
def config(tmp_path: Path, server: RecordingServer, other_server: RecordingServer) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[mcp_servers.apps]
url = "{server.url}"
apps = true

[mcp_servers.ws]
url = "{other_server.url}"
protocol = "legacy"
http_headers = {{ "x-tenant" = "t1" }}

[mcp_servers.down]
url = "http://127.0.0.1:{closed}/mcp"
startup_timeout_sec = 1
""",
        encoding="utf-8",
    )
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("command", ["resources", "read", "prompts", "prompt"])
def test_every_command_has_help_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"codex-runtime {command}" in out and "--json" in out


def test_resources_lists_every_server(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "resources", "--config", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["SERVER", "URI", "NAME", "MIME", "TYPE"]
    assert any(line.split()[:3] == ["apps", "res://readme", "readme"] for line in lines)
    assert any(line.split()[:2] == ["ws", "res://items/{item_id}"] for line in lines)
    assert "down:" in out  # the server that failed is listed

    code, out, _ = run(capsys, "resources", "--config", config, "--json")
    data = as_json(out)
    assert (code, data["ok"]) == (0, True)
    uris = {r["uri"] for r in data["servers"]["apps"]["resources"]}
    assert uris == {"res://readme", "res://data.json"}
    assert data["servers"]["ws"]["templates"][0]["uriTemplate"] == "res://items/{item_id}"
    assert data["servers"]["down"]["ok"] is False


def test_read_prints_the_contents_and_sends_the_headers(
    config: str, capsys: pytest.CaptureFixture[str], other_server: RecordingServer
) -> None:
    code, out, _ = run(capsys, "read", "ws", "res://items/9", "--config", config, "-H", "x-call: c1")
    assert (code, out) == (0, "item 9\n")
    [record] = other_server.requests("resources/read")
    assert (record.header("x-call"), record.header("x-tenant")) == ("c1", "t1")

    code, out, _ = run(capsys, "read", "apps", "res://data.json", "--config", config, "--json")
    data = as_json(out)
    assert code == 0 and json.loads(data["contents"][0]["text"]) == {"server": "rec"}


def test_prompts_and_prompt(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prompts", "--config", config)
    assert code == 0
    assert any(line.split()[:3] == ["apps", "greet", "name"] for line in out.splitlines())

    code, out, _ = run(capsys, "prompt", "apps", "greet", "--args", '{"name": "Ann"}', "--config", config)
    assert (code, out) == (0, "user: Hello, Ann!\n")

    code, out, _ = run(
        capsys, "prompt", "ws", "greet", "--args", '{"name": "Bo"}', "--config", config, "--json"
    )
    data = as_json(out)
    assert code == 0 and data["messages"][0]["content"]["text"] == "Hello, Bo!"


def test_errors_exit_with_the_documented_codes(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "read", "nope", "res://readme", "--config", config, "--json")
    assert code == 2 and as_json(out)["ok"] is False and "nope" in err
    code, _, err = run(capsys, "prompt", "apps", "greet", "--args", '{"name": 1}', "--config", config)
    assert code == 2 and "strings" in err
    code, _, err = run(capsys, "read", "apps", "res://missing", "--config", config)
    assert code == 1 and "resources/read" in err
    code, _, err = run(capsys, "read", "apps", "res://readme", "--config", config, "-H", "mcp-param-x: 1")
    assert code == 2 and "mcp-param-x" in err

"""The configuration examples of README.md load as documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from codex_runtime import ConfigError, load_config

DOC = Path(__file__).resolve().parent.parent / "README.md"


def _block(language: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, f"no {language} block in {DOC}"
    return str(blocks[0])


def test_the_config_toml_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_block("toml"), encoding="utf-8")
    servers = load_config(path, environ={"APPS_TOKEN": "apps-token", "GITHUB_TOKEN": "gh-token"})
    by_name = {s.name: s for s in servers}
    assert list(by_name) == ["apps", "github", "files"]  # the disabled one is left out

    apps = by_name["apps"]
    assert (apps.apps, apps.required, apps.header_delivery, apps.tool_timeout) == (True, True, "both", 120)
    assert apps.headers.get("authorization") == "Bearer apps-token"

    github = by_name["github"]
    assert (github.forward, github.apps, github.protocol, github.startup_timeout) == (
        True,
        False,
        "legacy",
        20,
    )
    assert github.headers.get("x-client") == "codex-runtime"
    assert github.headers.get("x-github-token") == "gh-token"
    assert github.enabled_tools == ("get_issue", "search_issues")

    files = by_name["files"]
    assert files.transport == "stdio" and files.command == "npx"
    assert files.args == ("-y", "@modelcontextprotocol/server-filesystem", ".")
    assert (files.cwd, files.startup_timeout, files.disabled_tools) == ("/srv/project", 15.0, ("write_file",))


def test_the_config_toml_example_names_missing_variables(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_block("toml"), encoding="utf-8")
    with pytest.raises(ConfigError, match="APPS_TOKEN"):
        load_config(path, environ={})


def test_the_json_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(_block("json"), encoding="utf-8")
    json.loads(path.read_text(encoding="utf-8"))
    docs, files = load_config(path)
    assert docs.apps and docs.headers.get("x-api-key") == "..."
    assert files.transport == "stdio" and files.args == ("--root", ".")

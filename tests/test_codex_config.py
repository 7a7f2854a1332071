"""`load_codex_config` and the loading of Codex hook configurations (hooks.json, [hooks])."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import attrs
import pytest

from codex_runtime import (
    CodexConfig,
    CodexHooks,
    CommandHook,
    ConfigError,
    HookConfigWarning,
    load_codex_config,
    load_config,
)
from codex_runtime._codex_hooks import matches

TOML = """
model = "gpt-x"

[mcp_servers.docs]
url = "http://127.0.0.1:9/mcp"

[[hooks.PreToolUse]]
matcher = "^mcp__docs__"
[[hooks.PreToolUse.hooks]]
type = "command"
command = "./check.sh"
timeout = 30
statusMessage = "Checking"

[[hooks.Stop]]
matcher = "ignored for Stop"
[[hooks.Stop.hooks]]
type = "command"
command = "./stop.sh"
"""


def test_load_codex_config_reads_servers_and_hooks(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(TOML)
    config = load_codex_config(path, cwd=tmp_path)
    assert isinstance(config, CodexConfig)
    assert [s.name for s in config.servers] == [s.name for s in load_config(path)] == ["docs"]
    assert config.model is not None and config.model.model == "gpt-x"  # the built-in openai provider
    assert config.model.provider.id == "openai"
    pre, stop = config.hooks.hooks
    assert (pre.event, pre.matcher, pre.command, pre.timeout, pre.status_message) == (
        "PreToolUse", "^mcp__docs__", "./check.sh", 30.0, "Checking",
    )  # fmt: skip
    assert pre.key == f"{path.resolve()}:pre_tool_use:0:0"
    assert (stop.event, stop.matcher, stop.timeout) == ("Stop", None, 600.0)  # Codex's default
    assert config.hooks.cwd == str(tmp_path)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.model = "x"  # type: ignore[misc]


def test_no_hooks_gives_an_empty_codex_hooks(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[mcp_servers.a]\nurl = "http://127.0.0.1:9/mcp"\n')
    config = load_codex_config(path, cwd=tmp_path)
    assert isinstance(config.hooks, CodexHooks) and len(config.hooks) == 0


def test_hooks_json_beside_the_file_comes_first(tmp_path: Path) -> None:
    (tmp_path / "hooks.json").write_text(
        json.dumps(
            {"hooks": {"UserPromptSubmit": [{"hooks": [{"type": "command", "command": "echo json"}]}]}}
        )
    )
    path = tmp_path / "config.toml"
    path.write_text(TOML)
    events = [h.event for h in load_codex_config(path, cwd=tmp_path).hooks.hooks]
    assert events == ["UserPromptSubmit", "PreToolUse", "Stop"]


def test_project_hooks_run_only_when_trusted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    path = home / "config.toml"
    path.write_text('[mcp_servers.a]\nurl = "http://127.0.0.1:9/mcp"\n')
    project = tmp_path / "repo"
    (project / ".codex").mkdir(parents=True)
    (project / ".codex" / "hooks.json").write_text(
        json.dumps({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "echo project"}]}]}})
    )
    with pytest.warns(HookConfigWarning, match="not run: they run only once trusted"):
        untrusted = load_codex_config(path, cwd=project)
    assert len(untrusted.hooks) == 0
    trusted = load_codex_config(path, cwd=project, trust_project_hooks=True)
    assert [h.command for h in trusted.hooks.hooks] == ["echo project"]
    discovered = CodexHooks.discover(codex_home=home, cwd=project, trust_project_hooks=True)
    assert [h.command for h in discovered.hooks] == ["echo project"]


def test_disabled_by_state_and_unsupported_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    key = f"{path.resolve()}:pre_tool_use:0:0"
    path.write_text(
        TOML
        + f'\n[hooks.state."{key}"]\nenabled = false\n'
        + '\n[[hooks.PreCompact]]\n[[hooks.PreCompact.hooks]]\ntype = "command"\ncommand = "x"\n'
        + '\n[[hooks.Stop]]\n[[hooks.Stop.hooks]]\ntype = "prompt"\n'
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hooks = CodexHooks.from_file(path)
    assert [h.event for h in hooks.hooks] == ["Stop"]
    messages = [str(w.message) for w in caught if issubclass(w.category, HookConfigWarning)]
    assert any("PreCompact event is not supported" in m for m in messages)
    assert any("prompt hooks are not supported" in m for m in messages)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"hooks": []}, "hooks must be a table"),
        ({"hooks": {"PreToolUse": {}}}, "must be a list of matcher groups"),
        ({"hooks": {"PreToolUse": [{"hooks": [{"type": "command"}]}]}}, "command must be a string"),
        ({"hooks": {"PreToolUse": [{"hooks": [{"type": "shell", "command": "x"}]}]}}, ".type must be"),
        (
            {"hooks": {"PreToolUse": [{"hooks": [{"type": "command", "command": "x", "timeout": "1"}]}]}},
            "timeout must be a number",
        ),
        ({"hooks": {"Stop": [{"matcher": "x", "hookz": []}]}}, "unknown key 'hookz'"),
        ({"hookz": {}}, "unknown key 'hookz'"),
    ],
)
def test_bad_hook_files_raise_config_error(tmp_path: Path, document: object, problem: str) -> None:
    path = tmp_path / "hooks.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=problem):
        CodexHooks.from_file(path)


def test_invalid_matcher_skips_the_group_as_codex_does(tmp_path: Path) -> None:
    path = tmp_path / "hooks.json"
    groups = [{"matcher": "[", "hooks": [{"type": "command", "command": "a"}]},
              {"matcher": "Bash", "hooks": [{"type": "command", "command": "b"}]}]  # fmt: skip
    path.write_text(json.dumps({"hooks": {"PreToolUse": groups}}))
    with pytest.warns(HookConfigWarning, match="invalid matcher"):
        hooks = CodexHooks.from_file(path)
    assert [h.command for h in hooks.hooks] == ["b"]


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        (None, "mcp__a__b", True),
        ("*", "x", True),
        ("", "x", True),
        ("Edit|Write", "Write", True),
        ("Bash", "BashOutput", False),  # exact names, not a prefix
        ("mcp__memory", "mcp__memory__create", False),
        ("mcp__memory__.*", "mcp__memory__create", True),
        ("^Bash", "BashOutput", True),  # a regular expression searches
        ("mcp__.*__write.*", "mcp__fs__read_file", False),
        ("[", "x", False),
    ],
)
def test_matchers_follow_codex(matcher: str | None, value: str, expected: bool) -> None:
    assert matches(matcher, value) is expected
    hook = CommandHook(event="PreToolUse", command="x", matcher=matcher)
    assert hook.matches(value) is expected

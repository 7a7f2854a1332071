"""`CodexHooks`: Codex's own hook configuration (``hooks.json``, ``[hooks]`` in
``config.toml``), loaded as Codex loads it and run as Codex runs it.

Configuration shape (Codex's ``HooksFile`` / ``HookEventsToml``)::

    {"hooks": {"PreToolUse": [{"matcher": "^mcp__github__",
                               "hooks": [{"type": "command", "command": "./check.sh",
                                          "timeout": 30, "statusMessage": "Checking"}]}]}}

or, in ``config.toml``, ``[[hooks.PreToolUse]]`` tables with ``[[hooks.PreToolUse.hooks]]``
handlers, and ``[hooks.state."<key>"] enabled = false`` to switch one off.

Each matching command handler is started with ``$SHELL -lc <command>`` (``/bin/sh`` when
``SHELL`` is unset) in the session's working directory, gets the event's JSON on stdin,
and is judged by its exit code (0: read stdout; 2: block, stderr is the reason; anything
else, a crash or a timeout: a non-blocking error) and its JSON on stdout. Matching
handlers of one event run concurrently. A handler that outlives its ``timeout`` (default
600 s) is killed with its whole process group.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from ._server_config import ConfigError

__all__ = ["CodexHooks", "CommandHook", "HookConfigWarning"]

logger = logging.getLogger("codex_runtime.hooks.codex")

#: Events `CodexHooks` runs.
SUPPORTED_EVENTS: Final = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop")
#: Events Codex knows that have no counterpart here: loaded, reported, never run.
UNSUPPORTED_EVENTS: Final = (
    "PermissionRequest",
    "PreCompact",
    "PostCompact",
    "SessionEnd",
    "SubagentStart",
    "SubagentStop",
    "Interrupt",
    "StopFailure",
)
# Events whose matcher Codex applies (to the tool name, or SessionStart's source).
_MATCHED_EVENTS: Final = frozenset({"PreToolUse", "PostToolUse", "SessionStart", "PermissionRequest"})
_EVENT_LABELS: Final = {
    "PreToolUse": "pre_tool_use",
    "PermissionRequest": "permission_request",
    "PostToolUse": "post_tool_use",
    "PreCompact": "pre_compact",
    "PostCompact": "post_compact",
    "SessionStart": "session_start",
    "UserPromptSubmit": "user_prompt_submit",
    "Stop": "stop",
}
DEFAULT_TIMEOUT: Final = 600.0


class HookConfigWarning(UserWarning):
    """A hook configuration holds something that is skipped (an unsupported event or
    handler type, an invalid matcher, project hooks that are not trusted)."""


def _is_match_all(matcher: str) -> bool:
    return matcher in ("", "*")


def _is_exact(matcher: str) -> bool:
    return all(ch.isascii() and (ch.isalnum() or ch in "_|") for ch in matcher)


def matches(matcher: str | None, value: str | None) -> bool:
    """Codex's matcher rule: none, ``""`` or ``"*"`` match all; a matcher of only
    letters, digits, ``_`` and ``|`` is a list of exact names; anything else is a regular
    expression searched for in the value."""
    if matcher is None or _is_match_all(matcher):
        return True
    if value is None:
        return False
    if _is_exact(matcher):
        return value in matcher.split("|")
    try:
        return re.search(matcher, value) is not None
    except re.error:
        return False


@attrs.frozen
class CommandHook:
    """One configured command handler.

    ``event`` is Codex's event name, ``matcher`` its group's matcher (``None`` for events
    without one), ``timeout`` seconds, ``source`` the file it came from and ``key`` its
    Codex key (``<source>:<event>:<group>:<handler>``, used by ``[hooks.state]``).
    """

    event: str
    command: str
    matcher: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    status_message: str | None = None
    source: str = ""
    key: str = ""

    @property
    def label(self) -> str:
        """How logs and errors name the hook (never its command line, which may hold secrets)."""
        return self.key or f"{self.event} hook"

    def matches(self, value: str | None) -> bool:
        """Whether this hook runs for ``value`` (a tool name, or SessionStart's source)."""
        if self.event not in _MATCHED_EVENTS:
            return True
        return matches(self.matcher, value)


# --------------------------------------------------------------------------- loading


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def parse_hook_events(
    events: object, source: str, *, states: Mapping[str, Any] | None = None
) -> list[CommandHook]:
    """The command hooks of a ``hooks`` object (event name -> matcher groups).

    Malformed shapes raise `ConfigError` naming the file and the place; unsupported
    events or handler types, invalid matchers and empty commands are skipped with a
    `HookConfigWarning`, as Codex skips them.
    """
    if not isinstance(events, dict):
        raise ConfigError(f"{source}: hooks must be a table of event names, not {_kind(events)}")
    hooks: list[CommandHook] = []
    for event, groups in events.items():
        if event == "state":
            continue  # [hooks.state] in config.toml: per-hook switches, read by the caller
        where = f"{source}: hooks.{event}"
        if event not in SUPPORTED_EVENTS:
            if event in UNSUPPORTED_EVENTS:
                warnings.warn(
                    f"{where}: the {event} event is not supported; its hooks never run",
                    HookConfigWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn(f"{where}: unknown hook event ignored", HookConfigWarning, stacklevel=3)
            continue
        if not isinstance(groups, list):
            raise ConfigError(f"{where} must be a list of matcher groups, not {_kind(groups)}")
        label = _EVENT_LABELS[event]
        for group_index, group in enumerate(groups):
            at = f"{where}[{group_index}]"
            if not isinstance(group, dict):
                raise ConfigError(f"{at} must be a table with `matcher` and `hooks`, not {_kind(group)}")
            for key in group:
                if key not in ("matcher", "hooks"):
                    raise ConfigError(f"{at}: unknown key {key!r} (expected `matcher` and `hooks`)")
            matcher = group.get("matcher")
            if matcher is not None and not isinstance(matcher, str):
                raise ConfigError(f"{at}.matcher must be a string, not {_kind(matcher)}")
            if event not in _MATCHED_EVENTS:
                matcher = None  # Codex ignores matchers on these events
            elif matcher is not None and not (_is_match_all(matcher) or _is_exact(matcher)):
                try:
                    re.compile(matcher)
                except re.error as exc:
                    warnings.warn(
                        f"{at}: invalid matcher {matcher!r} ({exc}); group skipped",
                        HookConfigWarning,
                        stacklevel=3,
                    )
                    continue
            handlers = group.get("hooks", [])
            if not isinstance(handlers, list):
                raise ConfigError(f"{at}.hooks must be a list of handlers, not {_kind(handlers)}")
            for handler_index, handler in enumerate(handlers):
                hook = _parse_handler(handler, f"{at}.hooks[{handler_index}]", event, matcher)
                if hook is None:
                    continue
                key = f"{source}:{label}:{group_index}:{handler_index}"
                state = (states or {}).get(key)
                if isinstance(state, dict) and state.get("enabled") is False:
                    continue
                hooks.append(attrs.evolve(hook, source=source, key=key))
    return hooks


def _parse_handler(handler: object, at: str, event: str, matcher: str | None) -> CommandHook | None:
    if not isinstance(handler, dict):
        raise ConfigError(f"{at} must be a table with `type` and `command`, not {_kind(handler)}")
    kind = handler.get("type")
    if kind in ("prompt", "agent"):
        warnings.warn(f"{at}: {kind} hooks are not supported; skipped", HookConfigWarning, stacklevel=4)
        return None
    if kind != "command":
        raise ConfigError(f'{at}.type must be "command", "prompt" or "agent"')
    known = {"type", "command", "command_windows", "timeout", "async", "statusMessage", "visibilityHint"}
    for key in handler:
        if key not in known:
            raise ConfigError(f"{at}: unknown key {key!r}")
    command = handler.get("command")
    if not isinstance(command, str):
        raise ConfigError(f"{at}.command must be a string, not {_kind(command)}")
    if not command.strip():
        warnings.warn(f"{at}: empty hook command skipped", HookConfigWarning, stacklevel=4)
        return None
    timeout = handler.get("timeout")
    if timeout is None:
        seconds = DEFAULT_TIMEOUT
    elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise ConfigError(f"{at}.timeout must be a number of seconds >= 0")
    else:
        seconds = max(float(timeout), 1.0)  # as Codex: at least one second
    if handler.get("async", False) is not False:
        if handler.get("async") is not True:
            raise ConfigError(f"{at}.async must be true or false")
        warnings.warn(f"{at}: async hooks are not supported; skipped", HookConfigWarning, stacklevel=4)
        return None
    status = handler.get("statusMessage")
    if status is not None and not isinstance(status, str):
        raise ConfigError(f"{at}.statusMessage must be a string")
    return CommandHook(event=event, command=command, matcher=matcher, timeout=seconds, status_message=status)


def _read_text(path: Path) -> str:
    problem = None
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = f"cannot read the file: {exc.strerror or type(exc).__name__}"
    except UnicodeDecodeError as exc:
        problem = f"not valid UTF-8 (at byte {exc.start})"
    raise ConfigError(f"{path}: {problem}")


def hooks_from_json(path: Path) -> list[CommandHook]:
    """The hooks of a ``hooks.json`` file (``{"hooks": {...}}``)."""
    text = _read_text(path)
    problem = None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"invalid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})"
    except (ValueError, RecursionError) as exc:
        problem = f"invalid JSON: {type(exc).__name__}"
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    if not isinstance(document, dict):
        raise ConfigError(f'{path}: the top level must be an object {{"hooks": {{...}}}}')
    for key in document:
        if key != "hooks":
            raise ConfigError(f'{path}: unknown key {key!r} (expected {{"hooks": {{...}}}})')
    return parse_hook_events(document.get("hooks", {}), str(path))


def hooks_from_toml_document(document: Mapping[str, Any], path: Path) -> list[CommandHook]:
    """The hooks of a parsed ``config.toml`` (its ``[hooks]`` table; none without one)."""
    table = document.get("hooks")
    if table is None:
        return []
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: hooks must be a table ([hooks]), not {_kind(table)}")
    states = table.get("state", {})
    if not isinstance(states, dict):
        raise ConfigError(f"{path}: hooks.state must be a table of hook keys")
    return parse_hook_events(table, str(path), states=states)


def hooks_from_toml(path: Path) -> list[CommandHook]:
    """The hooks of a ``config.toml`` file's ``[hooks]`` table."""
    text = _read_text(path)
    problem = None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = str(exc)
    if problem is not None:
        raise ConfigError(f"{path}: invalid TOML: {problem}")
    return hooks_from_toml_document(document, path)


def hooks_in_dir(folder: Path) -> list[CommandHook]:
    """The hooks of a Codex folder: its ``hooks.json``, then its ``config.toml``'s ``[hooks]``."""
    hooks: list[CommandHook] = []
    json_file = folder / "hooks.json"
    toml_file = folder / "config.toml"
    if json_file.is_file():
        hooks.extend(hooks_from_json(json_file.resolve()))
    if toml_file.is_file():
        hooks.extend(hooks_from_toml(toml_file.resolve()))
    return hooks


def project_hooks(
    cwd: str | os.PathLike[str] | None, *, trusted: bool, skip: Iterable[Path] = ()
) -> list[CommandHook]:
    """The hooks of ``<cwd>/.codex`` when ``trusted``; otherwise none, with a warning
    when there are some."""
    folder = (Path(cwd) if cwd is not None else Path.cwd()) / ".codex"
    if not folder.is_dir() or any(_same(folder, other) for other in skip):
        return []
    found = hooks_in_dir(folder)
    if found and not trusted:
        warnings.warn(
            f"{folder}: {len(found)} project hook(s) not run: they run only once trusted "
            "(--trust-hooks on the command line, trust_project_hooks=True in Python)",
            HookConfigWarning,
            stacklevel=3,
        )
        return []
    return found


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# --------------------------------------------------------------------------- the hook


class CodexHooks:
    """Codex command hooks, run around this runtime's turns, prompts and tool calls.

    A `TurnHook`: pass it in ``Session(hooks=[...])``. Build one from files with
    `CodexHooks.from_file` / `CodexHooks.discover`, or from `CommandHook` values.

    Args:
        hooks: The command hooks, in Codex's order.
        cwd: The working directory hooks run in and see as ``cwd`` (default: the process's
            working directory when the hook is made).
        shell: The program and arguments a command is appended to (default
            ``[$SHELL or /bin/sh, "-lc"]``, as Codex).
        permission_mode: The ``permission_mode`` hooks are told (default ``"default"``).
    """

    def __init__(
        self,
        hooks: Iterable[CommandHook] = (),
        *,
        cwd: str | os.PathLike[str] | None = None,
        shell: Sequence[str] | None = None,
        permission_mode: str = "default",
    ) -> None:
        self._hooks = tuple(hooks)
        for hook in self._hooks:
            if not isinstance(hook, CommandHook):
                raise TypeError("CodexHooks() takes CommandHook values")
        self.cwd = os.fspath(cwd) if cwd is not None else os.getcwd()
        if shell is None:
            shell = (os.environ.get("SHELL") or "/bin/sh", "-lc")
        if isinstance(shell, str) or not shell or not all(isinstance(s, str) and s for s in shell):
            raise ValueError("shell must be a non-empty list of strings, e.g. ['/bin/sh', '-c']")
        self.shell = tuple(shell)
        self.permission_mode = permission_mode

    @property
    def hooks(self) -> tuple[CommandHook, ...]:
        """Every configured command hook, in order."""
        return self._hooks

    def __len__(self) -> int:
        return len(self._hooks)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for hook in self._hooks:
            counts[hook.event] = counts.get(hook.event, 0) + 1
        inner = ", ".join(f"{event}={n}" for event, n in counts.items())
        return f"CodexHooks({inner})"

    def for_event(self, event: str, value: str | None = None) -> list[CommandHook]:
        """The hooks that run for ``event`` (and a tool name or SessionStart source)."""
        return [h for h in self._hooks if h.event == event and h.matches(value)]

    def extended(self, more: Iterable[CommandHook]) -> CodexHooks:
        """A copy with ``more`` hooks appended (same directory, shell and mode)."""
        return CodexHooks(
            (*self._hooks, *more), cwd=self.cwd, shell=self.shell, permission_mode=self.permission_mode
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> CodexHooks:
        """The hooks of one file: a ``.json`` path is a ``hooks.json``; anything else a
        ``config.toml`` (its ``[hooks]`` table). Raises `ConfigError`."""
        where = Path(path).resolve()
        found = hooks_from_json(where) if where.suffix.lower() == ".json" else hooks_from_toml(where)
        return cls(found, **options)

    @classmethod
    def discover(
        cls,
        *,
        codex_home: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        trust_project_hooks: bool = False,
        **options: Any,
    ) -> CodexHooks:
        """Codex's hook files: the user folder (``codex_home``, else ``$CODEX_HOME``, else
        ``~/.codex``: ``hooks.json`` and ``config.toml``), then the project folder
        ``<cwd>/.codex`` — whose hooks run only when ``trust_project_hooks`` is true."""
        home = (
            Path(codex_home)
            if codex_home is not None
            else Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
        )
        found = hooks_in_dir(home) if home.is_dir() else []
        found += project_hooks(cwd, trusted=trust_project_hooks, skip=[home])
        return cls(found, cwd=cwd, **options)

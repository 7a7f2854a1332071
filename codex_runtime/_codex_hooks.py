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
import signal
import subprocess
import time
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import attrs

from ._server_config import ConfigError
from ._server_config import value_kind as _kind
from ._tool_hooks import PromptDecision, StopDecision, ToolCallRequest, ToolDecision
from ._turn_model import HookPhase, ToolCallRecord, TurnOutcome
from .headers import CodexRuntimeError

if TYPE_CHECKING:
    from .session import Session, Turn

__all__ = ["CodexHooks", "CommandHook", "HookCommandError", "HookConfigWarning"]

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


def hooks_for_config(
    path: str | os.PathLike[str], *, cwd: str | os.PathLike[str] | None = None, trusted: bool = False
) -> list[CommandHook]:
    """The hooks that go with a configuration file: the ``hooks.json`` beside it, its own
    ``[hooks]`` (a ``config.toml``), then the project folder's (only when ``trusted``)."""
    where = Path(os.fspath(path)).resolve()
    found = [] if where.suffix.lower() == ".json" else hooks_from_toml(where)
    beside = where.parent / "hooks.json"
    if beside.is_file() and beside != where:
        found = hooks_from_json(beside) + found
    found += project_hooks(cwd, trusted=trusted, skip=[where.parent])
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
        self._runner = _Runner(self)
        self._session_context: dict[str, list[str]] = {}
        self._pending_failures: list[HookCommandError] = []
        self._stop_active: set[str] = set()

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

    # -- running -------------------------------------------------------------------

    def _base(self, event: str, session_id: str, turn: Turn | None) -> dict[str, Any]:
        model = turn.metadata.get("model") if turn is not None else None
        payload: dict[str, Any] = {"session_id": session_id}
        if turn is not None:
            payload["turn_id"] = turn.id
        payload.update(
            transcript_path=None,
            cwd=self.cwd,
            hook_event_name=event,
            model=model if isinstance(model, str) else "",
            permission_mode=self.permission_mode,
        )
        return payload

    async def _run(
        self, event: str, hooks: Sequence[CommandHook], payload: Mapping[str, Any], turn: Turn | None
    ) -> list[tuple[CommandHook, _Parsed, int]]:
        started = time.monotonic()
        results = await self._runner.run(event, hooks, payload)
        for hook, parsed, _ in results:
            if parsed.status == "failed":
                assert parsed.error is not None
                # Our own words only: the hook's input and output may hold secrets.
                logger.warning("%s hook %s failed (non-blocking): %s", event, hook.label, parsed.error)
                error = HookCommandError(event, hook.label, parsed.error)
                if turn is not None:
                    turn.report_hook_failure(f"CodexHooks {hook.label}", _PHASES[event], error)
                else:
                    self._pending_failures.append(error)
            elif parsed.status in ("blocked", "stopped"):
                logger.info("%s hook %s: %s", event, hook.label, parsed.status)
        logger.debug("%s: %d hook(s) ran in %.3f s", event, len(hooks), time.monotonic() - started)
        return results

    async def on_session_start(self, session: Session) -> None:
        """``SessionStart`` (source ``startup``): its context reaches the first turn."""
        hooks = self.for_event("SessionStart", "startup")
        if not hooks:
            return
        payload = self._base("SessionStart", session.session_id, None)
        payload["source"] = "startup"
        results = await self._run("SessionStart", hooks, payload, None)
        contexts = [c for _, parsed, _ in results for c in parsed.contexts]
        if contexts:
            self._session_context[session.session_id] = contexts

    async def on_turn_start(self, turn: Turn) -> None:
        for context in self._session_context.pop(turn.session_id, ()):
            turn.add_context(context)
        while self._pending_failures:
            error = self._pending_failures.pop(0)
            turn.report_hook_failure(f"CodexHooks {error.hook}", "session_start", error)

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        self._stop_active.discard(turn.id)

    async def on_user_prompt(self, turn: Turn, prompt: str) -> PromptDecision | None:
        """``UserPromptSubmit``: block the prompt, or add context."""
        hooks = self.for_event("UserPromptSubmit")
        if not hooks:
            return None
        payload = self._base("UserPromptSubmit", turn.session_id, turn)
        payload["prompt"] = prompt
        results = await self._run("UserPromptSubmit", hooks, payload, turn)
        if any(parsed.stop for _, parsed, _ in results):
            reason = next((p.stop_reason for _, p, _ in results if p.stop and p.stop_reason), None)
            return PromptDecision.block(reason or "the prompt was stopped by a UserPromptSubmit hook")
        contexts = [c for _, parsed, _ in results for c in parsed.contexts if c]
        return PromptDecision.add_context("\n\n".join(contexts)) if contexts else None

    async def on_tool_call_start(self, turn: Turn, call: ToolCallRequest) -> ToolDecision | None:
        """``PreToolUse``: deny (exit 2, ``permissionDecision: "deny"``, legacy
        ``decision: "block"``) or rewrite the arguments (``updatedInput``)."""
        name = _tool_name(call.server, call.tool)
        hooks = self.for_event("PreToolUse", name)
        if not hooks:
            return None
        payload = self._base("PreToolUse", turn.session_id, turn)
        payload.update(tool_name=name, tool_input=call.arguments, tool_use_id=call.call_id)
        results = await self._run("PreToolUse", hooks, payload, turn)
        for _, parsed, _ in results:
            for context in parsed.contexts:
                turn.add_context(context)
        reason = next((p.block_reason for _, p, _ in results if p.block_reason), None)
        if reason is not None:
            return ToolDecision.deny(reason)
        # Competing rewrites: the hook that finished last wins, as in Codex.
        rewrites = sorted(
            ((order, hook, p.updated_input) for hook, p, order in results if p.updated_input is not None),
            key=lambda item: item[0],
        )
        if not rewrites:
            return None
        _, hook, updated = rewrites[-1]
        if not isinstance(updated, dict):
            error = HookCommandError("PreToolUse", hook.label, "updatedInput is not a JSON object; ignored")
            logger.warning("%s", error)
            turn.report_hook_failure(f"CodexHooks {hook.label}", "tool_call_start", error)
            return None
        return ToolDecision.update(arguments=updated)

    async def on_tool_call_end(self, turn: Turn, call: ToolCallRequest, record: ToolCallRecord) -> None:
        """``PostToolUse``, for every end (failures too, with the error as
        ``tool_response``): context and feedback go to the model; ``continue: false``
        interrupts the turn."""
        name = _tool_name(call.server, call.tool)
        hooks = self.for_event("PostToolUse", name)
        if not hooks:
            return
        payload = self._base("PostToolUse", turn.session_id, turn)
        payload.update(
            tool_name=name,
            tool_input=call.arguments,
            tool_response=_tool_response(record),
            tool_use_id=call.call_id,
        )
        results = await self._run("PostToolUse", hooks, payload, turn)
        for _, parsed, _ in results:
            for text in (*parsed.contexts, *parsed.feedback):
                turn.add_context(text)
        if any(parsed.stop for _, parsed, _ in results):
            turn.interrupt()

    async def on_stop(self, turn: Turn, text: str | None) -> StopDecision | None:
        """``Stop``: ``decision: "block"`` (or exit 2) asks the model to go on with the
        reason; ``stop_hook_active`` tells a hook the turn already went on once."""
        hooks = self.for_event("Stop")
        if not hooks:
            return None
        payload = self._base("Stop", turn.session_id, turn)
        payload.update(stop_hook_active=turn.id in self._stop_active, last_assistant_message=text)
        results = await self._run("Stop", hooks, payload, turn)
        if any(parsed.stop for _, parsed, _ in results):
            return None
        reasons = [p.block_reason for _, p, _ in results if p.block_reason]
        if not reasons:
            return None
        self._stop_active.add(turn.id)
        return StopDecision.go_on("\n\n".join(reasons))

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


# --------------------------------------------------------------------------- running


class HookCommandError(CodexRuntimeError):
    """A command hook failed without blocking anything (it crashed, timed out, exited
    with a code other than 0 and 2, or wrote output Codex would refuse). Listed in the
    turn's ``outcome.hook_errors``; the message never holds the hook's input or output."""

    def __init__(self, event: str, hook: str, message: str) -> None:
        super().__init__(f"{event} hook {hook}: {message}")
        self.event = event
        self.hook = hook
        self.reason = message


_MAX_OUTPUT = 1 << 20  # bytes of stdout / stderr kept per hook run
_WIRE_EVENT_NAMES: Final = frozenset(
    {"PreToolUse", "PermissionRequest", "PostToolUse", "SessionStart", "UserPromptSubmit", "Stop"}
)


@attrs.frozen
class _Run:
    """What one command did: its exit code (``None`` when killed), output, or an error."""

    exit_code: int | None
    stdout: str
    stderr: str
    error: str | None
    order: int = 0  # completion order among the runs of one event


@attrs.define
class _Parsed:
    """One run judged as Codex judges it."""

    status: str = "completed"  # completed | blocked | stopped | failed
    error: str | None = None
    block_reason: str | None = None
    contexts: list[str] = attrs.field(factory=list)
    feedback: list[str] = attrs.field(factory=list)
    updated_input: Any = None
    stop: bool = False
    stop_reason: str | None = None

    def fail(self, error: str) -> _Parsed:
        self.status = "failed"
        self.error = error
        return self


def _trimmed(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    text = text.strip()
    return text or None


def _looks_like_json(stdout: str) -> bool:
    return stdout.lstrip().startswith(("{", "["))


_ANY = object()


def _valid(obj: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """Whether ``obj`` has only the keys of ``spec``, each of its type (``None`` allowed
    for optional keys; a tuple of strings is an enum; a dict a nested object)."""
    for key, value in obj.items():
        if key not in spec:
            return False
        kind = spec[key]
        if value is None and key not in ("hookEventName",):
            continue
        if kind is _ANY:
            continue
        if isinstance(kind, tuple):
            if value not in kind:
                return False
        elif isinstance(kind, dict):
            if not isinstance(value, dict) or not _valid(value, kind):
                return False
            if "hookEventName" in kind and value.get("hookEventName") not in _WIRE_EVENT_NAMES:
                return False
        elif kind is bool:
            if not isinstance(value, bool):
                return False
        elif not isinstance(value, kind):
            return False
    return True


_UNIVERSAL: Final = {"continue": bool, "stopReason": str, "suppressOutput": bool, "systemMessage": str}
_EVENT_NAME: Final = tuple(sorted(_WIRE_EVENT_NAMES))
_OUTPUT_SPECS: Final[dict[str, dict[str, Any]]] = {
    "PreToolUse": {
        **_UNIVERSAL,
        "decision": ("approve", "block"),
        "reason": str,
        "hookSpecificOutput": {
            "hookEventName": _EVENT_NAME,
            "permissionDecision": ("allow", "deny", "ask"),
            "permissionDecisionReason": str,
            "updatedInput": _ANY,
            "additionalContext": str,
        },
    },
    "PostToolUse": {
        **_UNIVERSAL,
        "decision": ("block",),
        "reason": str,
        "hookSpecificOutput": {
            "hookEventName": _EVENT_NAME,
            "additionalContext": str,
            "updatedMCPToolOutput": _ANY,
        },
    },
    "UserPromptSubmit": {
        **_UNIVERSAL,
        "decision": ("block",),
        "reason": str,
        "hookSpecificOutput": {"hookEventName": _EVENT_NAME, "additionalContext": str},
    },
    "Stop": {**_UNIVERSAL, "decision": ("block",), "reason": str},
    "SessionStart": {
        **_UNIVERSAL,
        "hookSpecificOutput": {"hookEventName": _EVENT_NAME, "additionalContext": str},
    },
}


def _wire(stdout: str, event: str) -> dict[str, Any] | None:
    """Codex's parse of a hook's stdout: a JSON object of exactly the event's fields."""
    text = stdout.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not _valid(value, _OUTPUT_SPECS[event]):
        return None
    hso = value.get("hookSpecificOutput")
    if isinstance(hso, dict) and "hookEventName" not in hso:
        return None  # required by Codex's schema
    return value


def _parse_exit(run: _Run, event: str, parsed: _Parsed) -> bool:
    """Judge a run that did not exit 0 or 2; True when judged."""
    if run.error is not None:
        parsed.fail(run.error)
        return True
    if run.exit_code is None:
        parsed.fail("hook exited without a status code")
        return True
    if run.exit_code not in (0, 2):
        parsed.fail(f"hook exited with code {run.exit_code}")
        return True
    return False


def _parse_pre_tool_use(run: _Run) -> _Parsed:
    parsed = _Parsed()
    if _parse_exit(run, "PreToolUse", parsed):
        return parsed
    if run.exit_code == 2:
        reason = _trimmed(run.stderr)
        if reason is None:
            return parsed.fail(
                "PreToolUse hook exited with code 2 but did not write a blocking reason to stderr"
            )
        parsed.status, parsed.block_reason = "blocked", reason
        return parsed
    if not run.stdout.strip():
        return parsed
    wire = _wire(run.stdout, "PreToolUse")
    if wire is None:
        if _looks_like_json(run.stdout):
            parsed.fail("hook returned invalid pre-tool-use JSON output")
        return parsed
    invalid: str | None = None
    if wire.get("continue") is False:
        invalid = "PreToolUse hook returned unsupported continue:false"
    elif wire.get("stopReason") is not None:
        invalid = "PreToolUse hook returned unsupported stopReason"
    elif wire.get("suppressOutput") is True:
        invalid = "PreToolUse hook returned unsupported suppressOutput"
    hso = wire.get("hookSpecificOutput") or {}
    decision = hso.get("permissionDecision")
    reason = hso.get("permissionDecisionReason")
    updated = hso.get("updatedInput")
    specific = decision is not None or reason is not None or updated is not None
    if invalid is None:
        if specific:
            if updated is not None and decision != "allow":
                invalid = "PreToolUse hook returned updatedInput without permissionDecision:allow"
            elif decision == "allow" and updated is None:
                invalid = "PreToolUse hook returned unsupported permissionDecision:allow"
            elif decision == "ask":
                invalid = "PreToolUse hook returned unsupported permissionDecision:ask"
            elif decision == "deny" and _trimmed(reason) is None:
                invalid = (
                    "PreToolUse hook returned permissionDecision:deny without a non-empty "
                    "permissionDecisionReason"
                )
            elif decision is None and reason is not None:
                invalid = "PreToolUse hook returned permissionDecisionReason without permissionDecision"
        else:
            legacy, legacy_reason = wire.get("decision"), wire.get("reason")
            if legacy == "approve":
                invalid = "PreToolUse hook returned unsupported decision:approve"
            elif legacy == "block" and _trimmed(legacy_reason) is None:
                invalid = "PreToolUse hook returned decision:block without a non-empty reason"
            elif legacy is None and legacy_reason is not None:
                invalid = "PreToolUse hook returned reason without decision"
    if invalid is not None:
        return parsed.fail(invalid)
    context = hso.get("additionalContext")
    if isinstance(context, str):
        parsed.contexts.append(context)
    if specific:
        block = _trimmed(reason) if decision == "deny" else None
    else:
        block = _trimmed(wire.get("reason")) if wire.get("decision") == "block" else None
    if block is not None:
        parsed.status, parsed.block_reason = "blocked", block
    elif decision == "allow":
        parsed.updated_input = updated
    return parsed


def _parse_post_tool_use(run: _Run) -> _Parsed:
    parsed = _Parsed()
    if _parse_exit(run, "PostToolUse", parsed):
        return parsed
    if run.exit_code == 2:
        reason = _trimmed(run.stderr)
        if reason is None:
            return parsed.fail("PostToolUse hook exited with code 2 but did not write feedback to stderr")
        parsed.feedback.append(reason)
        return parsed
    if not run.stdout.strip():
        return parsed
    wire = _wire(run.stdout, "PostToolUse")
    if wire is None:
        if _looks_like_json(run.stdout):
            parsed.fail("hook returned invalid post-tool-use JSON output")
        return parsed
    go_on = wire.get("continue") is not False
    invalid = "PostToolUse hook returned unsupported suppressOutput" if wire.get("suppressOutput") else None
    block = wire.get("decision") == "block"
    reason = wire.get("reason")
    invalid_block: str | None = None
    if block and _trimmed(reason) is None:
        invalid_block = "PostToolUse hook returned decision:block without a non-empty reason"
    elif not block and go_on and reason is not None:
        invalid_block = "PostToolUse hook returned reason without decision"
    context = (wire.get("hookSpecificOutput") or {}).get("additionalContext")
    if invalid is None and invalid_block is None and isinstance(context, str):
        parsed.contexts.append(context)
    if not go_on:
        parsed.status, parsed.stop = "stopped", True
        parsed.stop_reason = wire.get("stopReason")
        stop_text = parsed.stop_reason or "PostToolUse hook stopped execution"
        parsed.feedback.append(_trimmed(reason) or stop_text)
    elif invalid is not None:
        parsed.fail(invalid)
    elif invalid_block is not None:
        parsed.fail(invalid_block)
    elif block:
        parsed.status = "blocked"
        parsed.feedback.append(str(reason))
    return parsed


def _parse_user_prompt_submit(run: _Run) -> _Parsed:
    parsed = _Parsed()
    if _parse_exit(run, "UserPromptSubmit", parsed):
        return parsed
    if run.exit_code == 2:
        reason = _trimmed(run.stderr)
        if reason is None:
            return parsed.fail(
                "UserPromptSubmit hook exited with code 2 but did not write a blocking reason to stderr"
            )
        parsed.status, parsed.stop, parsed.stop_reason = "blocked", True, reason
        return parsed
    text = run.stdout.strip()
    if not text:
        return parsed
    wire = _wire(run.stdout, "UserPromptSubmit")
    if wire is None:
        if _looks_like_json(run.stdout):
            return parsed.fail("hook returned invalid user prompt submit JSON output")
        parsed.contexts.append(text)  # plain text is context for the model
        return parsed
    block = wire.get("decision") == "block"
    reason = wire.get("reason")
    invalid_block = (
        "UserPromptSubmit hook returned decision:block without a non-empty reason"
        if block and _trimmed(reason) is None
        else None
    )
    context = (wire.get("hookSpecificOutput") or {}).get("additionalContext")
    if invalid_block is None and isinstance(context, str):
        parsed.contexts.append(context)
    if wire.get("continue") is False:
        parsed.status, parsed.stop, parsed.stop_reason = "stopped", True, wire.get("stopReason")
    elif invalid_block is not None:
        parsed.fail(invalid_block)
    elif block:
        parsed.status, parsed.stop, parsed.stop_reason = "blocked", True, reason
    return parsed


def _parse_stop(run: _Run) -> _Parsed:
    parsed = _Parsed()
    if _parse_exit(run, "Stop", parsed):
        return parsed
    if run.exit_code == 2:
        reason = _trimmed(run.stderr)
        if reason is None:
            return parsed.fail(
                "Stop hook exited with code 2 but did not write a continuation prompt to stderr"
            )
        parsed.status, parsed.block_reason = "blocked", reason
        return parsed
    if not run.stdout.strip():
        return parsed
    wire = _wire(run.stdout, "Stop")
    if wire is None:
        return parsed.fail("hook returned invalid stop hook JSON output")
    if wire.get("continue") is False:
        parsed.status, parsed.stop, parsed.stop_reason = "stopped", True, wire.get("stopReason")
    elif wire.get("decision") == "block":
        reason = _trimmed(wire.get("reason"))
        if reason is None:
            return parsed.fail("Stop hook returned decision:block without a non-empty reason")
        parsed.status, parsed.block_reason = "blocked", reason
    return parsed


def _parse_session_start(run: _Run) -> _Parsed:
    parsed = _Parsed()
    if _parse_exit(run, "SessionStart", parsed):
        return parsed
    if run.exit_code == 2:
        return parsed.fail("hook exited with code 2")
    text = run.stdout.strip()
    if not text:
        return parsed
    wire = _wire(run.stdout, "SessionStart")
    if wire is None:
        if _looks_like_json(run.stdout):
            return parsed.fail("hook returned invalid session start JSON output")
        parsed.contexts.append(text)
        return parsed
    context = (wire.get("hookSpecificOutput") or {}).get("additionalContext")
    if isinstance(context, str):
        parsed.contexts.append(context)
    if wire.get("continue") is False:
        parsed.status, parsed.stop, parsed.stop_reason = "stopped", True, wire.get("stopReason")
    return parsed


_PARSERS: Final = {
    "PreToolUse": _parse_pre_tool_use,
    "PostToolUse": _parse_post_tool_use,
    "UserPromptSubmit": _parse_user_prompt_submit,
    "Stop": _parse_stop,
    "SessionStart": _parse_session_start,
}
_PHASES: Final[dict[str, HookPhase]] = {
    "PreToolUse": "tool_call_start",
    "PostToolUse": "tool_call_end",
    "UserPromptSubmit": "user_prompt",
    "Stop": "stop",
    "SessionStart": "session_start",
}


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _feed(stream: anyio.abc.ByteSendStream | None, data: bytes) -> None:
    if stream is None:
        return
    try:
        await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the hook did not read its input: not an error, as in Codex
    finally:
        try:
            await stream.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


async def _drain(stream: anyio.abc.ByteReceiveStream | None, sink: bytearray) -> None:
    if stream is None:
        return
    try:
        async for chunk in stream:
            room = _MAX_OUTPUT - len(sink)
            if room > 0:
                sink += chunk[:room]
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


def _tool_name(server: str, tool: str) -> str:
    return f"mcp__{server}__{tool}"


def _tool_response(record: ToolCallRecord) -> Any:
    if record.result is not None:
        return record.result.model_dump(mode="json", by_alias=True, exclude_none=True)
    error = record.error or record.status.value
    return {
        "content": [{"type": "text", "text": error}],
        "isError": True,
        "status": record.status.value,
        "error": error,
    }


class _Runner:
    """Runs the command hooks of one event concurrently, as Codex's dispatcher does."""

    def __init__(self, owner: CodexHooks) -> None:
        self.owner = owner

    async def run_one(self, hook: CommandHook, data: bytes) -> _Run:
        owner = self.owner
        try:
            process = await anyio.open_process(
                [*owner.shell, hook.command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=owner.cwd,
                start_new_session=True,  # its own process group: killed whole at its timeout
            )
        except OSError as exc:
            return _Run(None, "", "", f"hook could not start: {exc.strerror or type(exc).__name__}")
        out = bytearray()
        err = bytearray()
        timed_out = False
        try:
            with anyio.move_on_after(hook.timeout) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_feed, process.stdin, data)
                    tg.start_soon(_drain, process.stdout, out)
                    tg.start_soon(_drain, process.stderr, err)
                await process.wait()
            timed_out = scope.cancelled_caught
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None or timed_out:
                    # Timed out or cancelled: the hook and every child it started go.
                    _kill_group(process.pid)
                    await process.wait()
                await process.aclose()
        if timed_out:
            return _Run(None, "", "", f"hook timed out after {hook.timeout:g}s")
        code = process.returncode
        return _Run(
            code if code is not None and code >= 0 else None,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
            None,
        )

    async def run(
        self, event: str, hooks: Sequence[CommandHook], payload: Mapping[str, Any]
    ) -> list[tuple[CommandHook, _Parsed, int]]:
        """Run ``hooks`` concurrently with ``payload`` on stdin; judged, in configured order,
        each with its completion order."""
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        runs: list[_Run | None] = [None] * len(hooks)
        finished = 0

        async def one(index: int, hook: CommandHook) -> None:
            nonlocal finished
            run = await self.run_one(hook, data)
            runs[index] = attrs.evolve(run, order=finished)
            finished += 1

        async with anyio.create_task_group() as tg:
            for index, hook in enumerate(hooks):
                tg.start_soon(one, index, hook)
        parse = _PARSERS[event]
        out: list[tuple[CommandHook, _Parsed, int]] = []
        for hook, maybe in zip(hooks, runs, strict=True):
            assert maybe is not None
            out.append((hook, parse(maybe), maybe.order))
        return out

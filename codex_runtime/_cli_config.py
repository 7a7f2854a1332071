"""Where the command line finds its configuration, and how it loads it.

Shared by every command that reads MCP servers: ``--config`` defaults to Codex's own file,
configuration warnings become one line each on stderr, and a server whose settings cannot
be resolved (an unset environment variable) is reported rather than failing the file.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CONFIG_HELP",
    "NoConfigFile",
    "config_path",
    "default_config_path",
    "load_servers",
    "report_unresolved",
]

CONFIG_HELP = "config.toml or mcpServers .json (default: $CODEX_HOME/config.toml, ~/.codex/config.toml)"


class NoConfigFile(ValueError):
    """No ``--config`` was given and Codex's default file does not exist (a usage error)."""


def default_config_path() -> str:
    """Codex's configuration file: ``$CODEX_HOME/config.toml``, else ``~/.codex/config.toml``."""
    home = os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    return os.path.join(home, "config.toml")


def config_path(given: str | None, *, optional: bool = False) -> str | None:
    """``given`` (``--config``), else Codex's default file; ``None`` when ``optional`` and absent."""
    if given:
        return str(given)
    path = default_config_path()
    if os.path.exists(path):
        return path
    if optional:
        return None
    raise NoConfigFile(
        f"no configuration file at {path} (the default, under $CODEX_HOME or ~/.codex); pass --config FILE"
    )


def load_servers(path: str, unresolved: dict[str, Any] | None = None) -> list[Any]:
    """The servers of ``path`` (`load_config`); configuration warnings become one line each on stderr."""
    from .config import ConfigWarning, load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        servers = load_config(path, unresolved=unresolved)
    for warning in caught:
        if issubclass(warning.category, ConfigWarning):
            sys.stderr.write(f"codex-runtime: warning: {warning.message}\n")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return servers


def report_unresolved(unresolved: Mapping[str, Any]) -> None:
    """One line on stderr per server whose settings cannot be resolved."""
    for name, error in unresolved.items():
        tag = "required server" if error.required else "server"
        sys.stderr.write(f"codex-runtime: {tag} {name!r} cannot start: {error}\n")


def server_rows(
    servers: list[Any],
    startup_errors: Mapping[str, BaseException],
    unresolved: Mapping[str, Any],
    rows: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Every server's row, in configuration order, then the servers that could not be resolved.

    ``rows`` holds the servers a command reached; a server that failed to start, or never
    started because a required one failed, or whose settings could not be resolved gets
    an ``ok: False`` row saying why.
    """
    for cfg in servers:
        error = startup_errors.get(cfg.name)
        if error is not None:
            rows[cfg.name] = {"ok": False, "error": str(error), "required": cfg.required}
        elif cfg.name not in rows:
            rows[cfg.name] = {"ok": False, "error": "not started (a required server failed)"}
    for name, unresolved_error in unresolved.items():
        rows[name] = {"ok": False, "error": str(unresolved_error), "required": unresolved_error.required}
    return {cfg.name: rows[cfg.name] for cfg in servers} | {name: rows[name] for name in unresolved}

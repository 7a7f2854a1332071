"""``codex-runtime login NAME`` / ``logout NAME``: run and undo a server's OAuth browser flow."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

import attrs

__all__ = ["add_parsers", "login", "logout"]

_EXAMPLES = {
    "login": (
        "Authorize codex-runtime to use server NAME of a config file (as `codex mcp login`):\n"
        "print the authorization URL, wait on 127.0.0.1 for the browser to come back, and\n"
        "store the tokens (a 0600 file under $CODEX_RUNTIME_HOME, default ~/.codex-runtime).\n\n"
        "example:\n  codex-runtime login github\n  codex-runtime login github --config config.toml --json"
    ),
    "logout": ("Delete the stored OAuth tokens of server NAME.\n\nexample:\n  codex-runtime logout github"),
}


def add_parsers(sub: Any, epilog: str) -> None:
    for command, help_text in (
        ("login", "authorize access to an HTTP MCP server (OAuth) and store the tokens"),
        ("logout", "delete the stored OAuth tokens of an MCP server"),
    ):
        parser = sub.add_parser(
            command,
            help=help_text,
            description=_EXAMPLES[command],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=epilog,
        )
        parser.add_argument("server", help="the server's name in the configuration")
        parser.add_argument(
            "--config",
            metavar="FILE",
            help="config.toml or mcpServers .json (default: $CODEX_HOME/config.toml, ~/.codex/config.toml)",
        )
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
        parser.add_argument("-v", "--verbose", action="store_true", help="show the runtime's warnings")
        if command == "login":
            parser.add_argument(
                "--timeout",
                type=float,
                default=300.0,
                metavar="SECONDS",
                help="how long to wait for the browser (default 300)",
            )
            parser.add_argument("--port", type=int, metavar="PORT", help="the loopback redirect port")


def _report(out: TextIO, as_json: bool, code: int, message: str, **data: Any) -> int:
    if code == 0:
        if not as_json:
            out.write(message + "\n")
    else:
        sys.stderr.write(f"codex-runtime: {message}\n")
    if as_json:
        out.write(
            json.dumps({"ok": code == 0, "exit_code": code, "message": message, **data}, indent=2) + "\n"
        )
    out.flush()
    return code


def _server(args: argparse.Namespace, out: TextIO) -> tuple[Any, Any] | int:
    """The server's config and `OAuth` spec, or an exit code."""
    from .auth import OAuth
    from .config import ConfigError, load_config

    path = args.config or os.path.join(
        os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex"), "config.toml"
    )
    try:
        servers = load_config(path)
    except ConfigError as exc:
        return _report(out, args.json, 2, str(exc))
    found = [s for s in servers if s.name == args.server]
    if not found:
        names = ", ".join(s.name for s in servers) or "none"
        return _report(out, args.json, 2, f"no server {args.server!r} in {path} (servers: {names})")
    cfg = found[0]
    if cfg.url is None:
        return _report(out, args.json, 2, f"server {cfg.name!r} is a stdio server: OAuth is for HTTP servers")
    if cfg.auth is not None and not isinstance(cfg.auth, OAuth):
        return _report(out, args.json, 2, f"server {cfg.name!r} authorizes with its own provider")
    if "authorization" in cfg.headers:
        return _report(out, args.json, 2, f"server {cfg.name!r} sends a configured Authorization header")
    return cfg, cfg.auth if cfg.auth is not None else OAuth()


async def login(args: argparse.Namespace, out: TextIO) -> int:
    from .auth import print_url
    from .client import AuthorizationError, McpClient, ServerUnavailableError

    found = _server(args, out)
    if isinstance(found, int):
        return found
    cfg, spec = found
    if args.timeout is None or not args.timeout > 0:
        return _report(out, args.json, 2, "--timeout must be a positive number of seconds")
    changes: dict[str, Any] = {"authorize": print_url, "callback_timeout": args.timeout}
    if args.port is not None:
        changes["callback_port"] = args.port
    try:
        spec = attrs.evolve(spec, **changes)
    except ValueError as exc:
        return _report(out, args.json, 2, str(exc))
    cfg = attrs.evolve(cfg, auth=spec, startup_timeout=args.timeout + 30)
    store = spec.token_store(cfg.name, cfg.url)
    try:
        async with McpClient(cfg) as client:
            tools = len(await client.list_tools())
    except AuthorizationError as exc:
        return _report(out, args.json, 1, f"login to {cfg.name!r} failed: {exc.reason}", server=cfg.name)
    except ServerUnavailableError as exc:
        return _report(out, args.json, 1, str(exc), server=cfg.name)
    tokens = await store.get_tokens()
    path = str(getattr(store, "path", "")) or None
    if tokens is None:
        return _report(
            out, args.json, 0, f"{cfg.name!r} did not ask for authorization: nothing stored", server=cfg.name
        )
    scope = tokens.scope
    return _report(
        out,
        args.json,
        0,
        f"logged in to {cfg.name!r} ({tools} tools" + (f"; scope {scope}" if scope else "") + ")",
        server=cfg.name,
        scope=scope,
        store=path,
    )


async def logout(args: argparse.Namespace, out: TextIO) -> int:
    found = _server(args, out)
    if isinstance(found, int):
        return found
    cfg, spec = found
    store = spec.token_store(cfg.name, cfg.url)
    clear = getattr(store, "clear", None)
    if clear is None:
        return _report(out, args.json, 2, f"server {cfg.name!r}: its token store cannot be cleared from here")
    removed = bool(clear())
    message = f"logged out of {cfg.name!r}" if removed else f"no stored tokens for {cfg.name!r}"
    return _report(out, args.json, 0, message, server=cfg.name, removed=removed)

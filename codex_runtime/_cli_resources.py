"""``codex-runtime resources | read | prompts | prompt``: MCP resources and prompts.

Each takes ``--config FILE`` (a Codex ``config.toml`` or an ``mcpServers`` .json file;
default ``$CODEX_HOME/config.toml``) and ``--json``. ``read`` and ``prompt`` send their
request inside a turn, with the turn headers on Apps servers whose ``turn_header_methods``
include the method.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO

from ._cli_config import (
    CONFIG_HELP,
    NoConfigFile,
    config_path,
    load_servers,
    report_unresolved,
    server_rows,
)

__all__ = ["COMMANDS", "add_commands"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace, TextIO], Awaitable[int]]


def add_commands(sub: Any, epilog: str) -> None:
    """Add the four commands to the ``codex-runtime`` sub-parsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    resources = sub.add_parser(
        "resources",
        help="list the resources and resource templates of the configured MCP servers",
        description=(
            "Connect to every configured server and print its resources (uri, name, mime\n"
            "type) and resource templates; servers that failed to start are listed after.\n\n"
            "example:\n  codex-runtime resources --config ~/.codex/config.toml --json"
        ),
        formatter_class=formatter,
        epilog=epilog,
    )
    read = sub.add_parser(
        "read",
        help="read one resource of a server and print its contents",
        description=(
            "Connect to SERVER and read the resource URI inside a turn; print its text\n"
            "contents (binary contents as a one-line summary, or base64 with --json).\n\n"
            "example:\n  codex-runtime read docs file:///README.md --config config.toml"
        ),
        formatter_class=formatter,
        epilog=epilog,
    )
    read.add_argument("server", help="the server's name in the configuration")
    read.add_argument("uri", help="the resource's uri")
    prompts = sub.add_parser(
        "prompts",
        help="list the prompts of the configured MCP servers",
        description=(
            "Connect to every configured server and print its prompts and their arguments.\n\n"
            "example:\n  codex-runtime prompts --config ~/.codex/config.toml"
        ),
        formatter_class=formatter,
        epilog=epilog,
    )
    prompt = sub.add_parser(
        "prompt",
        help="get one prompt of a server, filled with --args, and print its messages",
        description=(
            "Connect to SERVER and get prompt NAME with --args (a JSON object of strings)\n"
            "inside a turn; print each message as 'role: text'.\n\n"
            "example:\n"
            '  codex-runtime prompt docs summarize --args \'{"topic": "retries"}\' --config config.toml'
        ),
        formatter_class=formatter,
        epilog=epilog,
    )
    prompt.add_argument("server", help="the server's name in the configuration")
    prompt.add_argument("name", help="the prompt's name on that server")
    prompt.add_argument(
        "--args", default="{}", metavar="JSON", help="the arguments, a JSON object of strings"
    )
    for parser in (resources, read, prompts, prompt):
        parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
        parser.add_argument("-v", "--verbose", action="store_true", help="show the runtime's warnings")
    for parser in (read, prompt):
        parser.add_argument(
            "-H",
            "--header",
            action="append",
            default=[],
            metavar="'NAME: VALUE'",
            help="a call-scoped header for this request (repeatable)",
        )
        parser.add_argument("--timeout", type=float, metavar="SECONDS", help="the request's timeout")


def _fail(out: TextIO, as_json: bool, code: int, error: BaseException | str) -> int:
    message = error if isinstance(error, str) else str(error) or type(error).__name__
    kind = "error" if isinstance(error, str) else type(error).__name__
    sys.stderr.write(f"codex-runtime: {message}\n")
    if as_json:
        _print_json(out, {"ok": False, "exit_code": code, "error": {"type": kind, "message": message}})
    return code


def _print_json(out: TextIO, data: Any) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")
    out.flush()


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _headers(values: list[str]) -> Any:
    from .headers import Headers, InvalidHeaderError, check_settable

    pairs: list[tuple[str, str]] = []
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep:
            raise ValueError(f"--header {name.strip()!r}: expected 'NAME: VALUE'")
        pairs.append((name.strip(), rest.strip()))
    try:
        headers = Headers(pairs)
        check_settable(headers, layer="call")
    except InvalidHeaderError as exc:
        raise ValueError(f"--header: {exc}") from None
    return headers or None


def _table(out: TextIO, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    cells = [header, *(tuple(str(c) for c in row) for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    for row in cells:
        line = "  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:-1]))
        out.write(f"{line}  {row[-1]}".rstrip() + "\n")


async def _each_server(
    args: argparse.Namespace, out: TextIO, fetch: Callable[[Any], Awaitable[dict[str, Any]]]
) -> tuple[int, dict[str, dict[str, Any]]] | int:
    """Connect every configured server and run ``fetch(client)``; rows by server name."""
    from .client import McpRequestError, ServerUnavailableError
    from .config import ConfigError
    from .session import Session

    unresolved: dict[str, Any] = {}
    try:
        path = config_path(args.config)
        assert path is not None
        servers = load_servers(path, unresolved)
    except (NoConfigFile, ConfigError) as exc:
        return _fail(out, args.json, EXIT_USAGE, exc)
    rows: dict[str, dict[str, Any]] = {}
    session = Session(servers)
    # A server whose settings cannot be resolved fails alone: fatal only when required.
    required_failed = any(error.required for error in unresolved.values())
    if required_failed:
        report_unresolved(unresolved)
        return _fail(out, args.json, EXIT_FAILED, "a required server failed to start")
    try:
        async with session:
            for cfg in servers:
                client = session.clients.get(cfg.name)
                if client is None:
                    continue
                try:
                    rows[cfg.name] = {"ok": True, **await fetch(client)}
                except (ServerUnavailableError, McpRequestError) as exc:
                    rows[cfg.name] = {"ok": False, "error": str(exc)}
    except ServerUnavailableError:
        required_failed = True
    # Every unresolved server left here is optional: a required one returned above.
    ordered = server_rows(servers, session.startup_errors, unresolved, rows)
    if required_failed:
        sys.stderr.write("codex-runtime: a required server failed to start\n")
    return (EXIT_FAILED if required_failed else EXIT_OK), ordered


def _failed_servers(out: TextIO, rows: Mapping[str, dict[str, Any]]) -> None:
    failed = {name: row for name, row in rows.items() if not row["ok"]}
    if failed:
        out.write("\nServers that failed:\n")
        for name, row in failed.items():
            tag = " [required]" if row.get("required") else ""
            out.write(f"  {name}{tag}: {row['error']}\n")


def _offers(client: Any, what: str) -> bool:
    caps = client.server_capabilities
    return caps is None or getattr(caps, what) is not None


async def _resources(args: argparse.Namespace, out: TextIO) -> int:
    async def fetch(client: Any) -> dict[str, Any]:
        if not _offers(client, "resources"):
            return {"resources": [], "templates": []}
        resources = await client.list_resources()
        templates = await client.list_resource_templates()
        return {"resources": [_dump(r) for r in resources], "templates": [_dump(t) for t in templates]}

    done = await _each_server(args, out, fetch)
    if isinstance(done, int):
        return done
    code, rows = done
    if args.json:
        _print_json(out, {"ok": code == EXIT_OK, "exit_code": code, "servers": rows})
        return code
    table = [
        (name, item.get("uri") or item.get("uriTemplate", ""), item.get("name", ""), item.get("mimeType", ""))
        for name, row in rows.items()
        if row["ok"]
        for item in [*row["resources"], *row["templates"]]
    ]
    if table:
        _table(out, ("SERVER", "URI", "NAME", "MIME TYPE"), table)
    else:
        out.write("No resources.\n")
    _failed_servers(out, rows)
    return code


async def _prompts(args: argparse.Namespace, out: TextIO) -> int:
    async def fetch(client: Any) -> dict[str, Any]:
        if not _offers(client, "prompts"):
            return {"prompts": []}
        return {"prompts": [_dump(p) for p in await client.list_prompts()]}

    done = await _each_server(args, out, fetch)
    if isinstance(done, int):
        return done
    code, rows = done
    if args.json:
        _print_json(out, {"ok": code == EXIT_OK, "exit_code": code, "servers": rows})
        return code
    table = []
    for name, row in rows.items():
        for item in row.get("prompts", ()) if row["ok"] else ():
            arguments = ", ".join(
                a["name"] + ("" if a.get("required") else "?") for a in item.get("arguments") or ()
            )
            description = (item.get("description") or "").strip().splitlines()
            table.append((name, item["name"], arguments, description[0][:70] if description else ""))
    if table:
        _table(out, ("SERVER", "PROMPT", "ARGUMENTS", "DESCRIPTION"), table)
    else:
        out.write("No prompts.\n")
    _failed_servers(out, rows)
    return code


async def _in_turn(
    args: argparse.Namespace, out: TextIO, send: Callable[[Any, Any], Awaitable[Any]]
) -> tuple[int, Any] | int:
    """Connect ``args.server`` and run ``send(turn, headers)`` inside one turn."""
    from .client import McpClient, McpRequestError, ServerUnavailableError
    from .config import ConfigError
    from .hooks import TurnHeaders
    from .session import Session

    if args.timeout is not None and not args.timeout > 0:
        return _fail(out, args.json, EXIT_USAGE, "--timeout must be a positive number of seconds")
    unresolved: dict[str, Any] = {}
    try:
        headers = _headers(args.header)
        path = config_path(args.config)
        assert path is not None
        servers = load_servers(path, unresolved)
    except (ValueError, ConfigError) as exc:
        return _fail(out, args.json, EXIT_USAGE, exc)
    if args.server in unresolved:  # only this server's settings matter here
        return _fail(out, args.json, EXIT_FAILED, unresolved[args.server])
    config = next((c for c in servers if c.name == args.server), None)
    if config is None:
        names = ", ".join([c.name for c in servers] + list(unresolved)) or "none"
        return _fail(
            out, args.json, EXIT_USAGE, f"no server named {args.server!r} in {path} (servers: {names})"
        )
    try:
        async with (
            McpClient(config) as client,
            Session(clients=[client], hooks=[TurnHeaders()]) as session,
            session.turn() as turn,
        ):
            return EXIT_OK, await send(turn, headers)
    except (ServerUnavailableError, McpRequestError) as exc:
        return _fail(out, args.json, EXIT_FAILED, exc)


async def _read(args: argparse.Namespace, out: TextIO) -> int:
    async def send(turn: Any, headers: Any) -> Any:
        return await turn.read_resource(args.server, args.uri, headers=headers, timeout=args.timeout)

    done = await _in_turn(args, out, send)
    if isinstance(done, int):
        return done
    _, result = done
    if args.json:
        contents = [_dump(c) for c in result.contents]
        _print_json(
            out,
            {"ok": True, "exit_code": EXIT_OK, "server": args.server, "uri": args.uri, "contents": contents},
        )
        return EXIT_OK
    for content in result.contents:
        text = getattr(content, "text", None)
        if text is None:
            mime = content.mime_type or "application/octet-stream"
            text = f"[binary {content.uri} ({mime}), ~{len(content.blob) * 3 // 4} bytes; use --json]"
        out.write(text + ("" if text.endswith("\n") else "\n"))
    return EXIT_OK


async def _prompt(args: argparse.Namespace, out: TextIO) -> int:
    try:
        arguments = json.loads(args.args)
    except ValueError as exc:
        return _fail(out, args.json, EXIT_USAGE, f"--args is not valid JSON: {exc}")
    if not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values()):
        return _fail(
            out, args.json, EXIT_USAGE, '--args must be a JSON object of strings, e.g. \'{"q": "x"}\''
        )

    async def send(turn: Any, headers: Any) -> Any:
        return await turn.get_prompt(args.server, args.name, arguments, headers=headers, timeout=args.timeout)

    done = await _in_turn(args, out, send)
    if isinstance(done, int):
        return done
    _, result = done
    if args.json:
        _print_json(
            out,
            {
                "ok": True,
                "exit_code": EXIT_OK,
                "server": args.server,
                "prompt": args.name,
                "arguments": arguments,
                "description": result.description,
                "messages": [_dump(m) for m in result.messages],
            },
        )
        return EXIT_OK
    for message in result.messages:
        content = message.content
        text = getattr(content, "text", None)
        if text is None:
            text = f"[{getattr(content, 'type', 'content')}]"
        out.write(f"{message.role}: {text}\n")
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "resources": _resources,
    "read": _read,
    "prompts": _prompts,
    "prompt": _prompt,
}

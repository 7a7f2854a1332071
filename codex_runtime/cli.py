"""The ``codex-runtime`` command: ``demo``, ``tools``, ``call``, ``run``, ``resources``,
``read``, ``prompts``, ``prompt``, ``login`` and ``logout``.

Exit codes: 0 ok, 1 the work failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import anyio.abc

from . import _cli_resources, _cli_store
from ._cli_config import (
    CONFIG_HELP,
    NoConfigFile,
    config_path,
    load_servers,
    report_unresolved,
    server_rows,
)
from ._version import __version__

if TYPE_CHECKING:  # the SDK, its HTTP client and the agent stack load when a command needs them
    import httpx2

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _UsageError(Exception):
    """Bad input found after parsing (exit code 2)."""


_EPILOG = "exit codes: 0 ok, 1 the work failed, 2 usage or configuration error, 130 interrupted"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codex-runtime",
        description="An agent session runtime with turn lifecycle hooks for MCP servers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"codex-runtime {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="run four turns against two loopback MCP servers and show what each received",
        description=(
            "Start two recording MCP servers on 127.0.0.1 ('apps', an Apps server, and 'tools'),\n"
            "run four turns (8 parallel calls; an interrupted turn; a replaced turn; the turn\n"
            "that replaced it) and print every request the servers received, then check the\n"
            "isolation rules.\n\n"
            "example:\n  codex-runtime demo\n  codex-runtime demo --trace\n  codex-runtime demo --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--json", action="store_true", help="print machine-readable JSON")
    demo.add_argument(
        "--protocol", choices=("auto", "legacy"), default="auto", help="MCP protocol era (default: auto)"
    )
    demo.add_argument(
        "--trace",
        action="store_true",
        help="record OpenTelemetry spans and print the span tree (needs [otel])",
    )

    tools = sub.add_parser(
        "tools",
        help="list every tool of the configured MCP servers",
        description=(
            "Connect to every server of a Codex config.toml (or an mcpServers .json file) and\n"
            "print a table of their tools by server, then the servers that failed to start and\n"
            "why. An optional server that fails is listed, not fatal; a required one exits 1.\n\n"
            "example:\n"
            "  codex-runtime tools --config ~/.codex/config.toml\n"
            "  codex-runtime tools --config mcp.json --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    tools.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    tools.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_verbose(tools)

    call = sub.add_parser(
        "call",
        help="call one tool inside a turn and print the result",
        description=(
            "Connect to SERVER, run one turn that calls TOOL with --args, and print the result.\n"
            "Apps servers (apps = true) get the turn headers, as in a real session. With\n"
            "--show-headers, also print the HTTP headers and _meta of the tools/call request\n"
            "as they left the client (secrets redacted); for a stdio server, the _meta written\n"
            "to it (its headers travel in _meta.extra_headers).\n\n"
            "example:\n"
            '  codex-runtime call docs search --args \'{"q": "retry"}\' --config ~/.codex/config.toml\n'
            '  codex-runtime call apps echo --args \'{"text": "hi"}\' --config config.toml '
            "--show-headers --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    call.add_argument("server", help="the server's name in the configuration")
    call.add_argument("tool", help="the tool's name on that server")
    call.add_argument(
        "--args", default="{}", metavar="JSON", help="the arguments, a JSON object (default {})"
    )
    call.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    call.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a call-scoped header for this call (repeatable)",
    )
    call.add_argument("--timeout", type=float, metavar="SECONDS", help="the call's timeout")
    call.add_argument(
        "--show-headers", action="store_true", help="print the headers and _meta that left the client"
    )
    _add_trust_hooks(call)
    call.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_verbose(call)

    run = sub.add_parser(
        "run",
        help="run one agent turn with an OpenAI-compatible model",
        description=(
            "Run one agent turn: the model (any OpenAI-compatible Chat Completions endpoint:\n"
            "OpenAI, vLLM, SGLang, llama.cpp, Ollama, ...) gets PROMPT and the tools of the\n"
            "configured MCP servers; tool calls are printed as they happen, then the answer.\n"
            "The API key is read from the environment variable named by --api-key-env.\n\n"
            "example:\n"
            "  codex-runtime run --config ~/.codex/config.toml --base-url https://api.openai.com/v1 \\\n"
            '      --model gpt-4.1-mini "Find the open issues about retries"\n'
            "  codex-runtime run --config config.toml --base-url http://localhost:11434/v1 "
            '--model qwen3 "hello" --json'
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    run.add_argument("prompt", help="the user's message")
    run.add_argument(
        "--config",
        metavar="FILE",
        help="config.toml or mcpServers .json (default: $CODEX_HOME/config.toml or "
        "~/.codex/config.toml if it exists, else no tools)",
    )
    run.add_argument(
        "--base-url",
        metavar="URL",
        help="the API base, e.g. https://api.openai.com/v1 (default: the --config's model provider, "
        "else $OPENAI_BASE_URL)",
    )
    run.add_argument("--model", metavar="NAME", help="default: the --config's model, else $OPENAI_MODEL")
    run.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default OPENAI_API_KEY; unset: no key)",
    )
    run.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra header for the model provider (repeatable)",
    )
    run.add_argument("--system", metavar="TEXT", help="instructions (a system message)")
    run.add_argument(
        "--max-steps", type=int, default=20, metavar="N", help="model calls allowed (default 20)"
    )
    run.add_argument("--sequential", action="store_true", help="run the tool calls of one step one by one")
    run.add_argument(
        "--no-images",
        action="store_true",
        help="a text-only model: do not send the images tools return (they are named in the text)",
    )
    run.add_argument(
        "--full-output",
        action="store_true",
        help=f"print whole tool results (default: the first {_OUTPUT_CAP} characters of each)",
    )
    run.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS", help="per model call")
    run.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_trust_hooks(run)
    _add_verbose(run)
    _cli_resources.add_commands(sub, _EPILOG)
    _add_login_parsers(sub)
    _cli_store.add_run_options(run)
    _cli_store.add_store_commands(sub, _EPILOG, _add_verbose)

    app_server = sub.add_parser(
        "app-server",
        help="drive turns from another process: Codex's app-server protocol over stdio",
        description=(
            "Serve JSON-RPC 2.0 on stdin/stdout (one JSON object a line), a compatible subset of\n"
            "Codex's app-server protocol v2: initialize, thread/start|resume|read|list,\n"
            "turn/start|steer|interrupt, with streamed item notifications. The model comes\n"
            "from the config's model / model_provider / [model_providers.NAME] (default:\n"
            "the built-in openai provider with $OPENAI_MODEL), the tools from its MCP servers.\n"
            "It exits when stdin ends, after interrupting running turns.\n\n"
            "example:\n  codex-runtime app-server --config ~/.codex/config.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    app_server.add_argument("--config", metavar="FILE", help="a Codex config.toml (or mcpServers .json)")
    app_server.add_argument(
        "--max-steps", type=int, default=20, metavar="N", help="model calls allowed per turn (default 20)"
    )
    app_server.add_argument("--system", metavar="TEXT", help="instructions for every thread")
    app_server.add_argument(
        "--trust-hooks", action="store_true", help="run the hooks of the project folder's .codex/ too"
    )
    app_server.add_argument(
        "--store", metavar="PATH", help="a SQLite session store: threads are kept and can be resumed later"
    )
    _add_verbose(app_server)
    return parser


def _add_login_parsers(sub: Any) -> None:
    from ._login import add_parsers

    add_parsers(sub, _EPILOG)


async def _login(args: argparse.Namespace, out: TextIO) -> int:
    from ._login import login

    return await login(args, out)


async def _logout(args: argparse.Namespace, out: TextIO) -> int:
    from ._login import logout

    return await logout(args, out)


def _add_trust_hooks(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-hooks",
        action="store_true",
        help="also run the hooks of the project folder ./.codex (the config file's own hooks always run)",
    )


def _load_hooks(path: str, trust: bool) -> list[Any]:
    """The Codex command hooks of a configuration, as one `CodexHooks` (none without hooks);
    hook configuration warnings become one line each on stderr."""
    import warnings

    from ._codex_hooks import CodexHooks, HookConfigWarning, hooks_for_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HookConfigWarning)
        found = hooks_for_config(path, trusted=trust)
    for warning in caught:
        if issubclass(warning.category, HookConfigWarning):
            sys.stderr.write(f"codex-runtime: warning: {warning.message}\n")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return [CodexHooks(found)] if found else []


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="show the runtime's warnings")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``codex-runtime`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace, TextIO], Awaitable[int]]] = {
        "tools": _tools,
        "call": _call,
        "run": _run,
        **_cli_resources.COMMANDS,
        "login": _login,
        "logout": _logout,
        "sessions": _cli_store.sessions,
        "resume": _cli_store.resume,
        "app-server": _app_server,
    }
    try:
        if args.command == "demo":
            from ._demo import run_demo
            from .tracing import TracingUnavailableError

            try:
                return anyio.run(
                    lambda: run_demo(as_json=args.json, protocol=args.protocol, trace=args.trace)
                )
            except TracingUnavailableError as exc:
                sys.stderr.write(f"codex-runtime demo: {exc}\n")
                return EXIT_USAGE
        command = commands.get(args.command)
        if command is not None:
            return _run_command(command, args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE  # pragma: no cover


def _run_command(
    command: Callable[[argparse.Namespace, TextIO], Awaitable[int]], args: argparse.Namespace
) -> int:
    try:
        with _quiet_logs(args.verbose):
            return anyio.run(_in_environ_trace, command, args, sys.stdout)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a bug, not a user error: one line, the traceback with -v
        if args.verbose:
            traceback.print_exc()
        sys.stderr.write(f"codex-runtime: unexpected error: {type(exc).__name__}: {exc}\n")
        return EXIT_FAILED


# -- shared helpers --------------------------------------------------------------------------


async def _in_environ_trace(
    command: Callable[[argparse.Namespace, TextIO], Awaitable[int]], args: argparse.Namespace, out: TextIO
) -> int:
    """Run ``command`` inside the trace named by ``TRACEPARENT`` / ``TRACESTATE``, if any.

    The context is current for the whole command, so every request it sends (tool calls,
    model calls) carries a ``traceparent`` of that trace, with or without an
    OpenTelemetry SDK: without one, the caller's span context passes through unchanged.
    """
    from opentelemetry import context as otel_context

    from .tracing import context_from_environ

    parent = context_from_environ()
    if parent is None:
        return await command(args, out)
    token = otel_context.attach(parent)
    try:
        return await command(args, out)
    finally:
        otel_context.detach(token)


@contextmanager
def _quiet_logs(verbose: bool) -> Iterator[None]:
    """Hide the runtime's warnings (failed servers are reported by the command itself)."""
    logger = logging.getLogger("codex_runtime")
    previous = logger.level
    if not verbose:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _fail(out: TextIO, as_json: bool, code: int, error: BaseException | str, **extra: Any) -> int:
    """Report an error: a line on stderr, and a JSON object on stdout with ``--json``."""
    message = error if isinstance(error, str) else str(error) or type(error).__name__
    kind = "error" if isinstance(error, str) else type(error).__name__
    sys.stderr.write(f"codex-runtime: {message}\n")
    if as_json:
        _print_json(
            out, {"ok": False, "exit_code": code, "error": {"type": kind, "message": message}, **extra}
        )
    return code


def _print_json(out: TextIO, data: Any) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")
    out.flush()


def _parse_headers(values: Sequence[str], *, layer: str) -> Any:
    from .headers import Headers, InvalidHeaderError, check_settable

    pairs: list[tuple[str, str]] = []
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep:
            raise _UsageError(f"--header {name.strip()!r}: expected 'NAME: VALUE'")
        pairs.append((name.strip(), rest.strip()))
    try:
        headers = Headers(pairs)
        check_settable(headers, layer=layer)
    except InvalidHeaderError as exc:
        raise _UsageError(f"--header: {exc}") from None
    return headers


def _config_path(args: argparse.Namespace, *, optional: bool = False) -> str | None:
    """``--config``, else Codex's default file (``None`` when ``optional`` and it is absent)."""
    try:
        return config_path(args.config, optional=optional)
    except NoConfigFile as exc:
        raise _UsageError(str(exc)) from None


_load_servers = load_servers
_report_unresolved = report_unresolved


async def _interrupt_on_sigint(
    interrupt: Callable[[], None],
    interrupted: list[bool],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Turn Ctrl-C (SIGINT) into ``interrupt()`` while the command runs."""
    if threading.current_thread() is not threading.main_thread():
        task_status.started()  # signals can only be received in the main thread
        await anyio.sleep_forever()
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            interrupted.append(True)
            sys.stderr.write("codex-runtime: interrupted, ending the turn...\n")
            interrupt()


def _outcome_json(outcome: Any) -> dict[str, Any]:
    if outcome is None:
        return {"state": None}
    return {
        "state": outcome.state.value,
        "abort_reason": outcome.abort_reason.value if outcome.abort_reason else None,
        "error": f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else None,
        "hook_errors": [str(f) for f in outcome.hook_errors],
        "duration": round(outcome.duration, 6),
    }


_OUTPUT_CAP = 2000


def _tool_output(text: str, cap: int | None) -> str:
    """A tool result for the terminal: every line (indented after the first), up to ``cap`` characters."""
    text = text.strip()
    more = 0
    if cap is not None and len(text) > cap:
        text, more = text[:cap], len(text) - cap
    shown = "\n   ".join(text.splitlines())
    if more:
        shown += f"\n   ... ({more} more characters; --full-output shows all)"
    return shown


def _first_line(text: str, limit: int = 100) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


# -- tools -----------------------------------------------------------------------------------


async def _list_tools(session: Any, servers: list[Any], rows: dict[str, dict[str, Any]]) -> None:
    """Start ``session`` and fill ``rows`` with each started server's tools (or its error)."""
    from .client import McpClient, ServerUnavailableError

    async with session:
        for cfg in servers:
            client: McpClient | None = session.clients.get(cfg.name)
            if client is None:
                continue
            try:
                listed = await client.list_tools()
            except ServerUnavailableError as exc:
                rows[cfg.name] = {"ok": False, "error": str(exc)}
                continue
            rows[cfg.name] = {
                "ok": True,
                "tools": [
                    {
                        "name": t.name,
                        "qualified_name": f"{cfg.name}__{t.name}",
                        "description": t.description or "",
                        "input_schema": t.input_schema,
                    }
                    for t in listed
                ],
            }


async def _tools(args: argparse.Namespace, out: TextIO) -> int:
    from .client import ServerUnavailableError
    from .config import ConfigError
    from .session import Session

    unresolved: dict[str, Any] = {}
    try:
        path = _config_path(args)
        assert path is not None
        servers = _load_servers(path, unresolved)
    except (_UsageError, ConfigError) as exc:
        return _fail(out, args.json, EXIT_USAGE, exc)
    rows: dict[str, dict[str, Any]] = {}
    session = Session(servers)
    # A server whose settings cannot be resolved fails alone, like a server that cannot
    # start: fatal only when it is required.
    required_failed = any(error.required for error in unresolved.values())
    try:
        if not required_failed:
            await _list_tools(session, servers, rows)
    except ServerUnavailableError:
        required_failed = True
    ordered = server_rows(servers, session.startup_errors, unresolved, rows)
    started = any(row["ok"] for row in ordered.values())
    code = EXIT_FAILED if required_failed or not started else EXIT_OK
    if required_failed:
        sys.stderr.write("codex-runtime: a required server failed to start\n")
    elif not ordered:
        sys.stderr.write(f"codex-runtime: no MCP server is configured in {path}\n")
    elif not started:
        sys.stderr.write("codex-runtime: no MCP server started\n")
    if args.json:
        _print_json(out, {"ok": code == EXIT_OK, "exit_code": code, "servers": ordered})
        return code
    table = [
        (name, tool["name"], _first_line(tool["description"], 70))
        for name, row in ordered.items()
        if row["ok"]
        for tool in row["tools"]
    ]
    if table:
        widths = [max(len(r[i]) for r in [("SERVER", "TOOL", "DESCRIPTION"), *table]) for i in range(2)]
        out.write(f"{'SERVER':<{widths[0]}}  {'TOOL':<{widths[1]}}  DESCRIPTION\n")
        for server, tool, description in table:
            out.write(f"{server:<{widths[0]}}  {tool:<{widths[1]}}  {description}\n".rstrip() + "\n")
    else:
        out.write("No tools.\n")
    empty = [name for name, row in ordered.items() if row["ok"] and not row["tools"]]
    for name in empty:
        out.write(f"({name}: no tools)\n")
    failed = {name: row for name, row in ordered.items() if not row["ok"]}
    if failed:
        out.write("\nServers that failed to start:\n")
        for name, row in failed.items():
            tag = " [required]" if row.get("required") else ""
            out.write(f"  {name}{tag}: {row['error']}\n")
    return code


# -- call ------------------------------------------------------------------------------------


class _Capture:
    """What left the client: the tools/call HTTP requests, as the server will get them."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: httpx2.Request) -> None:
        import httpx2

        try:
            body = json.loads(request.content)
        except (ValueError, httpx2.RequestNotRead):
            body = None
        method = body.get("method") if isinstance(body, dict) else None
        if method != "tools/call":
            return
        params = body.get("params") if isinstance(body, dict) else None
        meta = params.get("_meta") if isinstance(params, dict) else None
        self.requests.append(
            {
                "transport": "streamable-http",
                "http_method": request.method,
                "url": str(request.url),
                "headers": list(request.headers.multi_items()),
                "meta": dict(meta) if isinstance(meta, dict) else {},
            }
        )

    async def stdio(self, message: dict[str, Any]) -> None:
        """The tools/call messages written to a stdio server (they carry ``_meta`` only)."""
        if message.get("method") != "tools/call":
            return
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        self.requests.append(
            {
                "transport": "stdio",
                "http_method": None,
                "url": None,
                "headers": [],
                "meta": dict(meta) if isinstance(meta, dict) else {},
            }
        )

    def shown(self) -> list[dict[str, Any]]:
        # Values secret by name or by provenance (read from the environment) are hidden.
        return [
            {
                "transport": r["transport"],
                "http_method": r["http_method"],
                "url": r["url"],
                "headers": self.config.shown_headers(r["headers"]),
                "meta": _redact_meta(r["meta"], self.config),
            }
            for r in self.requests
        ]


def _redact_meta(meta: Mapping[str, Any], config: Any) -> dict[str, Any]:
    from .headers import REDACTED, is_secret

    shown: dict[str, Any] = {}
    for key, value in meta.items():
        if key == "extra_headers" and isinstance(value, Mapping):
            shown[key] = config.shown_headers(dict(value))
        elif is_secret(key):
            shown[key] = REDACTED
        else:
            shown[key] = value
    return shown


def _content_json(result: Any) -> list[Any]:
    return [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]


async def _call(args: argparse.Namespace, out: TextIO) -> int:
    from .agent import result_text
    from .client import McpClient, ServerUnavailableError
    from .config import ConfigError
    from .hooks import TurnHeaders
    from .session import Session, Turn, TurnHandle, TurnState

    try:
        arguments = json.loads(args.args)
    except ValueError as exc:
        return _fail(out, args.json, EXIT_USAGE, f"--args is not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        return _fail(out, args.json, EXIT_USAGE, '--args must be a JSON object, e.g. \'{"q": "x"}\'')
    unresolved: dict[str, Any] = {}
    try:
        headers = _parse_headers(args.header, layer="call")
        path = _config_path(args)
        assert path is not None
        servers = _load_servers(path, unresolved)
        codex_hooks = _load_hooks(path, args.trust_hooks)
    except (_UsageError, ConfigError) as exc:
        return _fail(out, args.json, EXIT_USAGE, exc)
    if args.timeout is not None and not args.timeout > 0:
        return _fail(out, args.json, EXIT_USAGE, "--timeout must be a positive number of seconds")
    if args.server in unresolved:  # only this server's settings matter here
        return _fail(out, args.json, EXIT_FAILED, unresolved[args.server])
    config = next((c for c in servers if c.name == args.server), None)
    if config is None:
        names = ", ".join([c.name for c in servers] + list(unresolved)) or "none"
        return _fail(
            out, args.json, EXIT_USAGE, f"no server named {args.server!r} in {path} (servers: {names})"
        )
    capture = _Capture(config)
    holder: dict[str, Any] = {}
    interrupted: list[bool] = []

    async def body(turn: Turn) -> None:
        holder["result"] = await turn.call_tool(
            args.server, args.tool, arguments, headers=headers or None, timeout=args.timeout
        )

    try:
        async with (
            McpClient(config, on_request=capture, on_stdio_send=capture.stdio) as client,
            Session(clients=[client], hooks=[TurnHeaders(), *codex_hooks]) as session,
            anyio.create_task_group() as tg,
        ):
            handles: list[TurnHandle] = []

            def interrupt() -> None:
                for started in handles:
                    started.interrupt()

            await tg.start(_interrupt_on_sigint, interrupt, interrupted)
            handle = await session.start_turn(body)
            handles.append(handle)
            if interrupted:  # Ctrl-C came while the turn was starting
                handle.interrupt()
            outcome = await handle.wait()
            tg.cancel_scope.cancel()
    except ServerUnavailableError as exc:
        return _fail(out, args.json, EXIT_FAILED, exc)
    sent = capture.shown() if args.show_headers else None
    extra: dict[str, Any] = {"outcome": _outcome_json(outcome)}
    if sent is not None:
        extra["sent"] = sent
    if outcome.state is TurnState.ABORTED:
        if args.json:
            _print_json(out, {"ok": False, "exit_code": EXIT_INTERRUPTED, **extra})
        sys.stderr.write(f"codex-runtime: the turn was aborted ({_reason(outcome)})\n")
        return EXIT_INTERRUPTED if interrupted or _reason(outcome) == "interrupted" else EXIT_FAILED
    if outcome.state is not TurnState.COMPLETED:
        if sent is not None and not args.json:
            _print_sent(out, args.server, sent)
        return _fail(out, args.json, EXIT_FAILED, outcome.error or "the turn failed", **extra)
    result = holder["result"]
    text = result_text(result)
    is_error = bool(result.is_error)
    code = EXIT_FAILED if is_error else EXIT_OK
    if args.json:
        _print_json(
            out,
            {
                "ok": not is_error,
                "exit_code": code,
                "server": args.server,
                "tool": args.tool,
                "arguments": arguments,
                "is_error": is_error,
                "text": text,
                "content": _content_json(result),
                "structured_content": result.structured_content,
                **extra,
            },
        )
        return code
    out.write(text + ("\n" if not text.endswith("\n") else ""))
    if sent is not None:
        _print_sent(out, args.server, sent)
    if is_error:
        sys.stderr.write(f"codex-runtime: the tool {args.tool!r} reported an error\n")
    return code


def _reason(outcome: Any) -> str:
    return str(outcome.abort_reason.value) if outcome.abort_reason else "unknown"


def _print_sent(out: TextIO, server: str, sent: list[dict[str, Any]]) -> None:
    if not sent:
        out.write(f"\n(nothing was captured: the call never left for {server!r})\n")
    for request in sent:
        if request["transport"] == "stdio":
            # No HTTP on stdio: headers travel in _meta.extra_headers.
            out.write(f"\n--- sent to {server!r} over stdio (tools/call)\n")
        else:
            out.write(f"\n--- sent to {server!r}: {request['http_method']} {request['url']} (tools/call)\n")
            out.write("headers:\n")
            for name, value in sorted(request["headers"].items()):
                out.write(f"  {name}: {value}\n")
        out.write("_meta:\n")
        for line in json.dumps(request["meta"], indent=2, sort_keys=True).splitlines():
            out.write(f"  {line}\n")


# -- run -------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    from ._model_providers import load_model_settings
    from .agent import (
        AgentError,
        AgentEvent,
        AgentLoop,
        ModelStep,
        OpenAIChatModel,
        TextDelta,
        ToolCallFinished,
        ToolCallStarted,
    )
    from .client import ServerUnavailableError
    from .config import ConfigError
    from .hooks import TurnHeaders
    from .session import Session

    try:  # a Codex config's model provider serves unless --base-url names another
        config_path = None if args.base_url else _config_path(args, optional=True)
        settings = load_model_settings(config_path) if config_path else None
    except ConfigError as exc:
        return _fail(out, args.json, EXIT_USAGE, exc)
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL")
    model_name = args.model or (settings.model if settings else None) or os.environ.get("OPENAI_MODEL")
    if settings is None and not base_url:
        return _fail(out, args.json, EXIT_USAGE, "--base-url is required (or set OPENAI_BASE_URL)")
    if not model_name:
        return _fail(out, args.json, EXIT_USAGE, "--model is required (or set OPENAI_MODEL)")
    if args.max_steps < 1:
        return _fail(out, args.json, EXIT_USAGE, "--max-steps must be at least 1")
    try:
        headers = _parse_headers(args.header, layer="provider")
        unresolved: dict[str, Any] = {}
        path = _config_path(args, optional=True)
        servers = _load_servers(path, unresolved) if path else []
        codex_hooks = _load_hooks(path, args.trust_hooks) if path else []
        if settings is not None:
            model = settings.build(model=model_name, timeout=args.timeout, extra_headers=headers)
        else:
            assert base_url is not None
            model = OpenAIChatModel(
                base_url,
                model_name,
                api_key=os.environ.get(args.api_key_env) or None,
                headers=headers,
                timeout=args.timeout,
                accepts_images=not args.no_images,
            )
        store = _cli_store.open_store(args)
    except (_UsageError, ConfigError, ValueError) as exc:
        return _fail(out, args.json, EXIT_USAGE, exc)
    if args.durable and store is not None:
        if settings is not None:  # a durable turn keeps --base-url/--model to rebuild its model
            return _fail(out, args.json, EXIT_USAGE, "--durable needs --base-url (and --model)")
        args.base_url, args.model = base_url, model_name  # as resolved: kept with the turn
        return await _cli_store.durable_run(args, out, store, path)
    streamed: list[int] = []  # steps whose text was printed as it streamed

    def show(event: AgentEvent) -> None:
        if args.json:
            return
        if isinstance(event, TextDelta):
            out.write(event.text)
            streamed.append(event.step)
        elif isinstance(event, ModelStep) and event.step in streamed:
            out.write("\n")
        elif isinstance(event, ToolCallStarted):
            out.write(f"-> {event.call.name} {json.dumps(event.call.arguments, ensure_ascii=False)}\n")
        elif isinstance(event, ToolCallFinished):
            status = "error" if event.result.is_error else "ok"
            output = _tool_output(event.result.output, None if args.full_output else _OUTPUT_CAP)
            out.write(f"<- {event.result.name} [{status}] {output}\n")
        elif isinstance(event, ModelStep) and event.response.tool_calls and event.response.text:
            out.write(f"   {_first_line(event.response.text)}\n")
        out.flush()

    _report_unresolved(unresolved)
    if any(error.required for error in unresolved.values()):
        return _fail(out, args.json, EXIT_FAILED, "a required server failed to start")
    interrupted: list[bool] = []
    session = Session(servers, hooks=[TurnHeaders(), *codex_hooks], store=store, session_id=args.session)
    if store is not None and not args.json:
        sys.stderr.write(f"codex-runtime: session {session.session_id}\n")
    try:
        async with model, session:
            failed = {**unresolved, **session.startup_errors}
            for name, error in session.startup_errors.items():
                sys.stderr.write(f"codex-runtime: server {name!r} failed to start: {error}\n")
            loop = AgentLoop(
                session,
                model,
                max_steps=args.max_steps,
                parallel_tool_calls=not args.sequential,
                instructions=args.system,
                on_event=show,
            )
            failure: AgentError | None = None
            async with anyio.create_task_group() as tg:
                await tg.start(_interrupt_on_sigint, loop.interrupt, interrupted)
                try:
                    result = await loop.run_turn(args.prompt)
                except AgentError as exc:
                    failure = exc
                finally:
                    tg.cancel_scope.cancel()
    except ServerUnavailableError as exc:
        return _fail(out, args.json, EXIT_FAILED, exc)
    except ConfigError as exc:  # a store file that is not a store
        return _fail(out, args.json, EXIT_USAGE, exc)
    finally:
        if store is not None:
            await store.aclose()
    if failure is not None:
        calls = [_tool_json(r) for r in failure.tool_calls]
        return _fail(
            out, args.json, EXIT_FAILED, failure, outcome=_outcome_json(failure.outcome), tool_calls=calls
        )
    payload = {
        "text": result.text,
        "steps": result.steps,
        "tool_calls": [_tool_json(r) for r in result.tool_calls],
        "outcome": _outcome_json(result.outcome),
        "failed_servers": {name: str(error) for name, error in failed.items()},
        **({"session_id": session.session_id} if store is not None else {}),
    }
    if result.blocked is not None:
        return _fail(out, args.json, EXIT_FAILED, f"a hook blocked the prompt: {result.blocked}", **payload)
    if result.aborted:
        code = EXIT_INTERRUPTED if interrupted or _reason(result.outcome) == "interrupted" else EXIT_FAILED
        if args.json:
            _print_json(out, {"ok": False, "exit_code": code, **payload})
        sys.stderr.write(f"codex-runtime: the turn was aborted ({_reason(result.outcome)})\n")
        return code
    if args.json:
        _print_json(out, {"ok": True, "exit_code": EXIT_OK, **payload})
    elif result.steps not in streamed:
        out.write((result.text or "") + "\n")
    return EXIT_OK


async def _app_server(args: argparse.Namespace, out: TextIO) -> int:
    from ._model_providers import model_settings
    from .app_server import AppServer, serve_stdio
    from .config import ConfigError, load_codex_config
    from .hooks import TurnHeaders

    if args.max_steps < 1:
        return _fail(out, False, EXIT_USAGE, "--max-steps must be at least 1")
    try:
        path = _config_path(args, optional=True)
        config = load_codex_config(path, trust_project_hooks=args.trust_hooks) if path else None
        servers = config.servers if config is not None else []
        settings = config.model if config is not None else None
        if settings is None and os.environ.get("OPENAI_MODEL"):
            settings = model_settings({"model": os.environ["OPENAI_MODEL"]})
        if settings is None:
            raise ConfigError("no model is configured: set `model` (and `model_provider`) in --config")
        model = settings.build()
    except ConfigError as exc:
        return _fail(out, False, EXIT_USAGE, exc)
    from .store import SqliteStore

    codex_hooks = [config.hooks] if config is not None and len(config.hooks) else []
    store = SqliteStore(args.store) if args.store else None
    server = AppServer(
        model,
        servers=servers,
        hooks=lambda: [TurnHeaders(), *codex_hooks],
        model_provider=settings.provider.id,
        max_steps=args.max_steps,
        instructions=args.system,
        store=store,
    )
    try:
        async with model:
            await serve_stdio(server)
    finally:
        if store is not None:
            await store.aclose()
    return EXIT_OK


def _tool_json(result: Any) -> dict[str, Any]:
    return {
        "id": result.call_id,
        "name": result.name,
        "server": result.server,
        "tool": result.tool,
        "arguments": dict(result.arguments),
        "is_error": result.is_error,
        "output": result.output,
        "step": result.step,
    }


if __name__ == "__main__":
    sys.exit(main())

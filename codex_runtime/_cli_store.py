"""The command line's stored sessions and durable turns: ``run --session/--store/--durable``,
``sessions`` and ``resume``. Imported by `codex_runtime.cli`; the store and the durable
layer load only when one of these is used."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .durable import DurableRuntime, DurableTurnResult
    from .session import Session
    from .store import SessionStore, SqliteStore

__all__ = ["add_run_options", "add_store_commands", "durable_run", "open_store", "resume", "sessions"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DATABASE_ENV = "CODEX_RUNTIME_DATABASE_URL"


def add_run_options(run: argparse.ArgumentParser) -> None:
    """``run``'s options for stored sessions and durable turns."""
    run.add_argument("--store", metavar="PATH", help="record the session in this SQLite store")
    run.add_argument(
        "--session", metavar="ID", help="continue the stored session ID (needs --store; default: a new one)"
    )
    run.add_argument(
        "--durable",
        action="store_true",
        help="run the turn durably (needs --store): a turn cut by a crash is finished by `resume`",
    )
    _add_database(run)


def _add_database(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database",
        default=os.environ.get(DATABASE_ENV),
        metavar="URL",
        help=f"durable turns' database (postgresql://...; default: beside the store, or ${DATABASE_ENV})",
    )


def add_store_commands(sub: Any, epilog: str, verbose: Any) -> None:
    """The ``sessions`` and ``resume`` commands."""
    sessions_cmd = sub.add_parser(
        "sessions",
        help="list the sessions of a store and their turns",
        description="List the sessions recorded in a store, with their turns (id, index, state).",
        epilog=epilog,
    )
    sessions_cmd.add_argument("--store", required=True, metavar="PATH", help="the SQLite store")
    sessions_cmd.add_argument("--json", action="store_true", help="print machine-readable JSON")
    verbose(sessions_cmd)
    resume_cmd = sub.add_parser(
        "resume",
        help="finish the durable turns a dead process left",
        description=(
            "Finish the durable turns (`run --durable`) that a process left unfinished when it died.\n"
            "The store keeps each turn's configuration path and model settings (never a secret:\n"
            "the API key is read again from the environment variable the turn named)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
    )
    resume_cmd.add_argument("--store", required=True, metavar="PATH", help="the SQLite store")
    _add_database(resume_cmd)
    resume_cmd.add_argument("--json", action="store_true", help="print machine-readable JSON")
    verbose(resume_cmd)


def open_store(args: argparse.Namespace) -> SqliteStore | None:
    """The store ``run`` records into (None without ``--store``); raises `ValueError` on bad use."""
    store_path = getattr(args, "store", None)
    if store_path is None:
        if getattr(args, "session", None) or getattr(args, "durable", False):
            raise ValueError("--session and --durable need --store PATH")
        return None
    from .store import SqliteStore

    return SqliteStore(store_path)


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _fail(out: TextIO, as_json: bool, code: int, message: str) -> int:
    sys.stderr.write(f"codex-runtime: {message}\n")
    if as_json:
        _print(out, {"ok": False, "exit_code": code, "error": {"message": message}})
    return code


def _print(out: TextIO, data: Any) -> None:
    out.write(json.dumps(data, indent=2, default=str) + "\n")
    out.flush()


# -- sessions ------------------------------------------------------------------------------------


async def sessions(args: argparse.Namespace, out: TextIO) -> int:
    from ._server_config import ConfigError
    from .store import SqliteStore, StoreError

    if not _exists(args.store):
        return _fail(out, args.json, EXIT_USAGE, f"no store at {args.store}")
    try:
        async with SqliteStore(args.store) as store:
            found = await store.list_sessions()
    except (ConfigError, StoreError) as exc:
        return _fail(out, args.json, EXIT_USAGE, str(exc))
    listed: list[dict[str, Any]] = [
        {
            "session_id": s.session_id,
            "created_at": s.created_at,
            "updated_at": s.updated_at,
            "turns": [
                {
                    "id": t.turn_id,
                    "index": t.index,
                    "state": t.state,
                    "abort_reason": t.abort_reason,
                    "started_at": t.started_at,
                    "ended_at": t.ended_at,
                    "durable": t.durable is not None,
                    "error": t.error,
                }
                for t in s.turns
            ],
        }
        for s in found
    ]
    if args.json:
        _print(out, listed)
        return EXIT_OK
    if not listed:
        out.write("no sessions\n")
    for item in listed:
        out.write(f"{item['session_id']}  ({len(item['turns'])} turns)\n")
        for t in item["turns"]:
            reason = f" ({t['abort_reason']})" if t["abort_reason"] else ""
            durable = "  durable" if t["durable"] else ""
            out.write(f"  #{t['index']}  {t['id']}  {t['state']}{reason}{durable}\n")
    return EXIT_OK


# -- durable turns ------------------------------------------------------------------------------


def turn_settings(args: argparse.Namespace, config: str | None) -> dict[str, Any]:
    """What a durable turn of ``run`` keeps to be rebuilt: no secret (the key's variable name)."""
    headers = {name: value for name, value in _header_pairs(args.header)}
    return {
        "config": os.path.abspath(config) if config else None,
        "images": not getattr(args, "no_images", False),
        "base_url": args.base_url,
        "model": args.model,
        "api_env": args.api_key_env,  # the variable's name: the key is read again on resume
        "provider_headers": headers,
        "system": args.system,
        "max_steps": args.max_steps,
        "sequential": bool(args.sequential),
        "timeout": args.timeout,
    }


def _header_pairs(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, _, rest = value.partition(":")
        pairs.append((name.strip(), rest.strip()))
    return pairs


def _build_session(session_id: str, settings: Mapping[str, Any], store: SessionStore) -> Session:
    from .config import load_config
    from .hooks import TurnHeaders
    from .session import Session

    servers = load_config(settings["config"], unresolved={}) if settings.get("config") else []
    return Session(servers, hooks=[TurnHeaders()], store=store, session_id=session_id)


def _build_model(settings: Mapping[str, Any]) -> Any:
    from .agent import OpenAIChatModel

    api_key = os.environ.get(settings.get("api_env") or "") or None
    return OpenAIChatModel(
        settings["base_url"],
        settings["model"],
        api_key=api_key,
        headers=dict(settings.get("provider_headers") or {}),
        timeout=float(settings.get("timeout") or 120.0),
        accepts_images=bool(settings.get("images", True)),
    )


def _loop_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "max_steps": int(settings.get("max_steps") or 20),
        "instructions": settings.get("system"),
        "parallel_tool_calls": not settings.get("sequential", False),
    }


def _runtime(store: SqliteStore, database: str | None) -> DurableRuntime:
    from .durable import DurableRuntime

    return DurableRuntime(
        store,
        sessions=_build_session,
        models=_build_model,
        database_url=database,
        loop_options=_loop_options,
    )


def _result_json(result: DurableTurnResult) -> dict[str, Any]:
    return {
        "session_id": result.session_id,
        "turn_id": result.turn_id,
        "index": result.index,
        "state": result.state.value,
        "abort_reason": result.abort_reason.value if result.abort_reason else None,
        "text": result.text,
        "error": result.error,
        "steps": result.steps,
    }


async def durable_run(args: argparse.Namespace, out: TextIO, store: SqliteStore, config: str | None) -> int:
    """``run --durable``: the turn as a durable workflow; ``resume`` finishes it after a crash."""
    from ._server_config import ConfigError
    from .durable import DurableError
    from .store import StoreError

    session_id = args.session or uuid.uuid4().hex
    try:
        settings = turn_settings(args, config)
        async with store, _runtime(store, args.database) as runtime:
            turn_id = await runtime.submit_turn(session_id, args.prompt, settings=settings)
            if not args.json:
                sys.stderr.write(f"codex-runtime: durable turn {turn_id} of session {session_id}\n")
            result = await runtime.result(turn_id)
    except (DurableError, ConfigError, StoreError, ValueError) as exc:
        return _fail(out, args.json, EXIT_USAGE, str(exc))
    return _report([result], out, args.json)


def _report(results: list[DurableTurnResult], out: TextIO, as_json: bool) -> int:
    from .session import TurnState

    ok = all(r.state is TurnState.COMPLETED for r in results)
    code = EXIT_OK if ok else EXIT_FAILED
    if as_json:
        turns = [_result_json(r) for r in results]
        extra = turns[0] if len(turns) == 1 else {"turns": turns}
        _print(out, {"ok": ok, "exit_code": code, **extra})
        return code
    for r in results:
        if r.state is TurnState.COMPLETED:
            out.write((r.text or "") + "\n")
        else:
            reason = r.error or (r.abort_reason.value if r.abort_reason else r.state.value)
            sys.stderr.write(f"codex-runtime: turn {r.turn_id} {r.state.value}: {reason}\n")
    return code


async def resume(args: argparse.Namespace, out: TextIO) -> int:
    """``resume``: launch the durable runtime on the store's database, which takes up the turns
    a dead process left, and wait for them."""
    from ._server_config import ConfigError
    from .durable import DurableError
    from .store import SqliteStore, StoreError

    if not _exists(args.store):
        return _fail(out, args.json, EXIT_USAGE, f"no store at {args.store}")
    results: list[DurableTurnResult] = []
    try:
        store = SqliteStore(args.store)
        async with store, _runtime(store, args.database) as runtime:
            for turn_id in await runtime.unfinished_turns():
                results.append(await runtime.result(turn_id))
    except (DurableError, ConfigError, StoreError) as exc:
        return _fail(out, args.json, EXIT_USAGE, str(exc))
    if not results:
        if args.json:
            _print(out, {"ok": True, "exit_code": EXIT_OK, "turns": []})
        else:
            out.write("no unfinished durable turns\n")
        return EXIT_OK
    if args.json:
        from .session import TurnState

        ok = all(r.state is TurnState.COMPLETED for r in results)
        code = EXIT_OK if ok else EXIT_FAILED
        _print(out, {"ok": ok, "exit_code": code, "turns": [_result_json(r) for r in results]})
        return code
    return _report(results, out, False)

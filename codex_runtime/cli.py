"""The ``codex-runtime`` command: ``demo``, ``tools``, ``call`` and ``run``.

Exit codes: 0 ok, 1 the work failed, 2 usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codex-runtime",
        description="An agent session runtime with turn lifecycle hooks for MCP servers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser(
        "demo",
        help="run three turns against two loopback MCP servers and show what each received",
        description=(
            "Start two recording MCP servers on 127.0.0.1 ('apps', an Apps server, and 'tools'),\n"
            "run three turns (8 parallel calls; an interrupted turn; a replaced turn) and print\n"
            "every request the servers received, then check the isolation rules.\n\n"
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``codex-runtime`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return anyio.run(lambda: run_demo(as_json=args.json, protocol=args.protocol, trace=args.trace))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())

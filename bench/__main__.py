"""``python -m bench NAME [OPTIONS]``: run one benchmark by name (``python -m bench`` lists them).

A benchmark is a module of this package with a ``main(argv) -> int`` function and a
one-line ``DESCRIPTION``; add it to `BENCHMARKS` to make it runnable here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: Benchmark name -> module (relative to this package).
BENCHMARKS: dict[str, str] = {
    "cli": ".cli",
    "client": ".client",
    "gateway": ".gateway",
    "hooks": ".hooks",
    "store": ".store",
    "isolation": ".isolation",
    "stdio_close": ".stdio_close",
    "turns": ".turns",
    "app_server": ".app_server",
}


def _usage() -> str:
    lines = ["usage: python -m bench NAME [OPTIONS]   (python -m bench NAME --help for its options)", ""]
    for name, module in BENCHMARKS.items():
        description = getattr(importlib.import_module(module, __package__), "DESCRIPTION", "")
        lines.append(f"  {name:<12} {description}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name], __package__)
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())

"""How fast the ``codex-runtime`` command starts, against a bare interpreter.

Each case is a fresh ``python`` process (``sys.executable``), timed from spawn to exit, in
interleaved rounds so that load on the machine hits every case alike: a bare interpreter
(``python -c pass``, the floor), ``import codex_runtime.cli``, ``codex-runtime --help`` and
``--version``, and, for scale, importing the whole public API (``from codex_runtime import
Session, AgentLoop, TraceTurns``), which loads the MCP SDK and the agent stack.

``--path DIR`` puts DIR first on the children's ``sys.path``: point it at another checkout
to measure its startup with the same interpreter (a before/after comparison).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

DESCRIPTION = "startup of the codex-runtime command (--help, --version, import) vs a bare interpreter"

GOAL_S = 0.25

#: What the console script runs (``from codex_runtime.cli import main; sys.exit(main())``).
_SCRIPT = "import sys; from codex_runtime.cli import main; sys.argv[1:] = [{!r}]; sys.exit(main())"

CASES: dict[str, str] = {
    "python -c pass": "pass",
    "import codex_runtime.cli": "import codex_runtime.cli",
    "codex-runtime --help": _SCRIPT.format("--help"),
    "codex-runtime --version": _SCRIPT.format("--version"),
    "import the public API": "from codex_runtime import Session, AgentLoop, TraceTurns",
}

#: Cases held to the goal.
GOAL_CASES = ("codex-runtime --help", "codex-runtime --version")


def _time_once(code: str, path: str | None) -> tuple[float, float] | None:
    """Wall and CPU seconds of one child from spawn to exit, or None if it failed."""
    env = dict(os.environ)
    if path:
        env["PYTHONPATH"] = path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=path,  # ``-c`` puts the working directory first on sys.path
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return (elapsed, cpu) if done.returncode == 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cli", description=DESCRIPTION)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--path", metavar="DIR", help="a checkout to import codex_runtime from")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    cpus: dict[str, list[float]] = {name: [] for name in CASES}
    failed: set[str] = set()
    for code in CASES.values():  # warm the file cache
        _time_once(code, args.path)
    for index in range(args.rounds):
        names = list(CASES) if index % 2 == 0 else list(reversed(CASES))
        for name in names:
            timed = _time_once(CASES[name], args.path)
            if timed is None:
                failed.add(name)
            else:
                samples[name].append(timed[0])
                cpus[name].append(timed[1])
    floor = statistics.median(samples["python -c pass"])
    print(
        f"bench cli: python {platform.python_version()}, {os.cpu_count()} CPUs, {args.rounds} interleaved "
        f"rounds, spawn to exit (wall; CPU of the child){f', from {args.path}' if args.path else ''}"
    )
    print(f"    {'case':<28} {'median':>9} {'min':>9} {'max':>9} {'CPU':>9}   above bare python")
    for name, values in samples.items():
        if name in failed:
            print(f"    {name:<28} fails (the command exits with an error)")
            continue
        median = statistics.median(values)
        verdict = ""
        if name in GOAL_CASES:
            ok = median <= GOAL_S
            verdict = f"  (goal <= {GOAL_S} s: {'ok' if ok else 'ABOVE GOAL'})"
        print(
            f"    {name:<28} {median:>8.3f}s {min(values):>8.3f}s {max(values):>8.3f}s "
            f"{statistics.median(cpus[name]):>8.3f}s   "
            f"{median - floor:+.3f} s{verdict}"
        )
    return 0

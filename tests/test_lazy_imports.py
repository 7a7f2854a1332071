"""The command line starts without loading the heavy parts; the package root re-exports lazily.

``codex-runtime --help`` must not pay for the MCP SDK, the HTTP client, the OpenTelemetry SDK
or uvicorn: a command imports what it needs when it runs. Checked on ``sys.modules`` of a
fresh interpreter (never on timings; the startup time is measured by ``python -m bench cli``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import codex_runtime

ROOT = Path(__file__).resolve().parents[1]

#: Top-level modules a plain ``import codex_runtime.cli`` / ``--help`` must not load.
HEAVY = ("mcp", "mcp_types", "uvicorn", "starlette", "httpx2", "opentelemetry.sdk", "pydantic")


def _loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy modules it loaded."""
    probe = (
        "import sys\n"
        f"{code}\n"
        "import json\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in heavy))\n"
        "sys.__stdout__.write('\\n' + json.dumps(loaded) + '\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_nothing_heavy() -> None:
    assert _loaded_after("import codex_runtime.cli") == []


def test_importing_the_package_and_headers_loads_nothing_heavy() -> None:
    assert _loaded_after("import codex_runtime, codex_runtime.headers") == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["tools", "--help"],
        ["call", "--help"],
        ["run", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_and_version_load_nothing_heavy(argv: list[str]) -> None:
    code = (
        "from codex_runtime.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code"
    )
    assert _loaded_after(code) == []


def test_version_is_printed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "codex_runtime", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"codex-runtime {codex_runtime.__version__}"


def test_a_re_exported_name_loads_its_module_on_first_use() -> None:
    loaded = _loaded_after("from codex_runtime import Session")
    assert "mcp" in loaded  # the session layer needs the SDK: it came when asked for


def _type_checking_imports() -> dict[str, set[str]]:
    tree = ast.parse((ROOT / "codex_runtime" / "__init__.py").read_text(encoding="utf-8"))
    found: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                assert isinstance(child, ast.ImportFrom) and child.level == 1 and child.module
                found.setdefault(child.module, set()).update(a.asname or a.name for a in child.names)
    return found


def test_lazy_exports_agree_with_all_and_the_type_checking_imports() -> None:
    exports = {module: set(names) for module, names in codex_runtime._EXPORTS.items()}
    assert exports == _type_checking_imports()
    names = [name for group in exports.values() for name in group]
    assert len(names) == len(set(names)), "a name is exported from two modules"
    assert set(codex_runtime.__all__) == {*names, "__version__"}
    for module, group in exports.items():
        for name in group:
            assert getattr(codex_runtime, name) is getattr(
                __import__(f"codex_runtime.{module}", fromlist=[name]), name
            )


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = codex_runtime.no_such_name  # type: ignore[attr-defined]
    assert "Session" in dir(codex_runtime)
    assert codex_runtime.tracing.__name__ == "codex_runtime.tracing"

"""The layering rules of the package, checked on the code itself."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import codex_runtime

PACKAGE = Path(codex_runtime.__file__).parent

# Private helper modules belong to the layer that uses them.
LAYER_OF = {
    "_context": "client",
    "_trace": "tracing",
    "_server_config": "client",
    "auth": "client",
    "_version": "version",
    "_demo": "cli",
    "_login": "cli",
    "_provider_stub": "testing",
    "_loopback": "testing",
    "_oauth_stub": "testing",
    "_turn_model": "session",
    "_tool_hooks": "session",
    "_codex_hooks": "hooks",
    "_session_store": "session",
    "_cli_store": "cli",
    "_handlers": "client",
    "_requests": "client",
    "_testing_features": "testing",
    "_session_features": "session",
    "_resource_tools": "agent",
    "_cli_resources": "cli",
    "_cli_config": "cli",
    "_observe": "client",
    "_streaming": "agent",
    "_responses": "agent",
    "_model_providers": "config",
    "__main__": "cli",
    "__init__": "init",
}


def _layer(module: str) -> str:
    return LAYER_OF.get(module, module)


def _imports(path: Path) -> set[str]:
    """Package modules imported at run time (imports under `if TYPE_CHECKING:` excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level == 1:
                    if child.module:
                        found.add(child.module.split(".")[0])
                    else:
                        found.update(alias.name for alias in child.names)
                elif child.module and child.module.startswith("codex_runtime"):
                    parts = child.module.split(".")
                    if len(parts) > 1:
                        found.add(parts[1])
                    else:
                        found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    parts = alias.name.split(".")
                    if parts[0] == "codex_runtime" and len(parts) > 1:
                        found.add(parts[1])
            visit(child)

    visit(tree)
    return found


MODULES = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}


def test_headers_imports_nothing_of_the_package() -> None:
    assert MODULES["headers"] == set()


def test_client_imports_only_headers_and_tracing_helpers() -> None:
    allowed = {
        "headers",
        "_context",
        "_trace",
        "_server_config",
        "_version",
        "_handlers",
        "_requests",
        "_observe",
        "auth",
        "_stdio",
    }
    assert MODULES["client"] <= allowed, MODULES["client"] - allowed


def test_the_stdio_transport_imports_nothing_of_the_package() -> None:
    assert MODULES["_stdio"] == set()


@pytest.mark.parametrize("module", ["session", "hooks"])
def test_session_and_hooks_never_import_agent_config_or_cli(module: str) -> None:
    assert not MODULES[module] & {"agent", "config", "cli", "_demo"}


def test_store_and_durable_sit_beside_agent() -> None:
    # Only what sits above them (the package root, the CLI) may import the store or the
    # durable layer; the session knows only the SessionStore protocol (`_session_store`).
    users = {"init", "cli", "store", "durable"}
    offenders = {
        m for m, deps in MODULES.items() if deps & {"store", "durable"} and _layer(m) not in users
    }
    assert offenders == set()


def test_the_durable_layer_imports_nothing_above_it() -> None:
    # codex_runtime/durable/ is a subpackage: its modules import the package with `..`.
    found: set[str] = set()
    for path in (PACKAGE / "durable").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                found.add(node.module.split(".")[0])
    assert found and not found & {"cli", "_demo", "testing", "config"}, found


def test_only_cli_imports_testing() -> None:
    offenders = {
        m for m, deps in MODULES.items() if "testing" in deps and _layer(m) not in ("cli", "testing")
    }
    assert offenders == set()


def test_no_import_cycles() -> None:
    graph = {m: {d for d in deps if d in MODULES} for m, deps in MODULES.items() if m != "__init__"}
    visiting: set[str] = set()
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in done:
            return
        assert node not in visiting, f"import cycle: {' -> '.join([*path, node])}"
        visiting.add(node)
        for dep in graph.get(node, ()):
            if dep != "__init__":
                walk(dep, [*path, node])
        visiting.discard(node)
        done.add(node)

    for module in graph:
        walk(module, [])


def test_public_api_is_exported() -> None:
    for name in codex_runtime.__all__:
        assert hasattr(codex_runtime, name), name
    contract = {
        "Session", "Turn", "TurnState", "AbortReason", "TurnOutcome", "TurnHandle", "TurnHook",
        "McpClient", "ServerConfig", "Headers", "HeaderPolicy", "TurnHeaders", "ForwardHeaders",
        "bind_turn", "request_headers", "load_config", "CodexRuntimeError", "InvalidHeaderError",
        "TurnInProgressError", "TurnStateError", "ServerUnavailableError", "ToolCallError",
        "ConfigError",
    }  # fmt: skip
    assert contract <= set(codex_runtime.__all__)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("_")))
def test_public_modules_import_cleanly(module: str) -> None:
    importlib.import_module(f"codex_runtime.{module}")


def test_errors_derive_from_the_base() -> None:
    for name in codex_runtime.__all__:
        obj = getattr(codex_runtime, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, codex_runtime.CodexRuntimeError), name

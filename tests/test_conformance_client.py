"""conformance/client.py uses the public API only (the suite itself runs in a CI step)."""

from __future__ import annotations

import ast
import importlib
import runpy
from pathlib import Path

CLIENT = Path(__file__).resolve().parent.parent / "conformance" / "client.py"


def test_conformance_client_imports_only_public_names() -> None:
    tree = ast.parse(CLIENT.read_text(encoding="utf-8"))
    used: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("codex_runtime"):
            used += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("codex_runtime") for a in node.names)
    assert used
    for module, name in used:
        assert not any(part.startswith("_") for part in module.split(".")), module
        assert name in importlib.import_module(module).__all__, (module, name)


def test_every_scenario_of_the_suites_has_a_handler() -> None:
    pick = runpy.run_path(str(CLIENT), run_name="conformance_client")["pick"]
    assert callable(pick)
    for name in (
        "initialize",
        "tools_call",
        "sse-retry",
        "elicitation-sep1034-client-defaults",
        "auth/metadata-default",
        "auth/client-credentials-jwt",
        "auth/cross-app-access-complete-flow",
        "request-metadata",
        "sep-2322-client-request-state",
        "http-standard-headers",
        "http-custom-headers",
        "http-invalid-tool-headers",
        "json-schema-ref-no-deref",
        "json-schema-2020-12-preservation",
    ):
        assert pick(name) is not None, name

"""Shared fixtures: both anyio backends, recording servers, an in-memory OpenTelemetry exporter.

Every async test (``@pytest.mark.anyio``) runs once on asyncio and once on trio. Nothing
here configures logging: tests that look at log records use ``caplog``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from codex_runtime.testing import ProviderStub, RecordingServer

# A tracer provider can be installed once per process: install it at import, before any
# test or library asks for a tracer, and share its exporter (cleared before every test).
_EXPORTER = InMemorySpanExporter(max_spans=20_000)


def _install_tracer_provider() -> None:
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        return
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)


_install_tracer_provider()


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test on asyncio and on trio."""
    backend: str = request.param
    return backend


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory span exporter of the process-wide tracer provider, emptied for this test."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture(autouse=True)
def _codex_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty ``$CODEX_HOME``: the command line never reads the user's own Codex config."""
    monkeypatch.setenv("CODEX_HOME", str(tmp_path_factory.mktemp("codex-home")))


@pytest.fixture(scope="session")
def _shared_server() -> Iterator[RecordingServer]:
    with RecordingServer("rec") as server:
        yield server


@pytest.fixture
def server(_shared_server: RecordingServer) -> Iterator[RecordingServer]:
    """A recording server (shared by the session, emptied before every test).

    ``block`` keys must be unique per test; every blocked call is released afterwards.
    """
    _shared_server.clear()
    yield _shared_server
    _shared_server.release_all()


@pytest.fixture
def other_server() -> Iterator[RecordingServer]:
    """A second, independent recording server for tests that need two."""
    with RecordingServer("other") as server:
        yield server


@pytest.fixture(scope="session")
def _shared_provider() -> Iterator[ProviderStub]:
    with ProviderStub() as stub:
        yield stub


@pytest.fixture
def provider(_shared_provider: ProviderStub) -> Iterator[ProviderStub]:
    """The stand-in provider, with no recorded request and an empty script."""
    _shared_provider.clear()
    yield _shared_provider
    _shared_provider.release_all()

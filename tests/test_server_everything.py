"""Against `@modelcontextprotocol/server-everything` (npm), over stdio and streamable HTTP.

A fully capable client (elicitation, sampling, roots) sees every tool the server offers
and can call each through a `Session`; the server's requests reach the handlers tied to
the turn and tool call; progress arrives; resources and prompts are read.

The `npm` test group: install the pinned package with ``bash tests/npm/install.sh`` (CI
does, see ``.ci/run``); without it these tests are skipped.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types as t
import pytest

from codex_runtime import ClientHandlers, McpClient, ServerConfig, ServerRequest, Session

ROOT = Path(__file__).resolve().parent.parent
#: Set (as CI does) to a directory the servers were installed in: then they must be there.
REQUIRED = "CODEX_RUNTIME_NPM_SERVERS" in os.environ
NPM_DIR = Path(os.environ.get("CODEX_RUNTIME_NPM_SERVERS", ROOT / ".npm-servers"))
ENTRY = NPM_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
PRELOAD = ROOT / "tests" / "npm" / "loopback.cjs"

pytestmark = [
    pytest.mark.npm,
    pytest.mark.anyio,
    pytest.mark.skipif(
        not REQUIRED and (not ENTRY.exists() or shutil.which("node") is None),
        reason="@modelcontextprotocol/server-everything is not installed (bash tests/npm/install.sh)",
    ),
]

#: Tools listed only to clients that declare the capability they use.
GATED = {
    "get-roots-list",
    "trigger-elicitation-request",
    "trigger-url-elicitation",
    "trigger-sampling-request",
}

ARGUMENTS: dict[str, dict[str, Any]] = {
    "echo": {"message": "hello"},
    "get-annotated-message": {"messageType": "success", "includeImage": True},
    "get-structured-content": {"location": "Chicago"},
    "get-sum": {"a": 2, "b": 3},
    # A data URI: the default argument would fetch a file from the internet.
    "gzip-file-as-resource": {
        "data": "data:text/plain;base64," + base64.b64encode(b"hello gzip").decode(),
        "outputType": "resourceLink",
    },
    "trigger-long-running-operation": {"duration": 0.3, "steps": 3},
    "trigger-url-elicitation": {"url": "https://example.com/consent"},
    "trigger-sampling-request": {"prompt": "Say hi", "maxTokens": 20},
    "simulate-research-query": {"topic": "loopback servers"},
}


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """The server over streamable HTTP on 127.0.0.1 (a free port)."""
    proc = subprocess.Popen(
        ["node", "--require", str(PRELOAD), str(ENTRY), "streamableHttp"],
        env={**os.environ, "PORT": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    port = None
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace")
        if line.startswith("LOOPBACK_PORT="):
            port = int(line.split("=", 1)[1])
            break
    if port is None:
        proc.kill()
        pytest.fail("server-everything did not start")
    # Keep reading its log so that the server never blocks on a full pipe.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture(params=["stdio", "http"])
def config(request: pytest.FixtureRequest) -> ServerConfig:
    if request.param == "stdio":
        return ServerConfig(name="everything", command="node", args=(str(ENTRY), "stdio"), startup_timeout=30)
    url: str = request.getfixturevalue("http_url")
    return ServerConfig(name="everything", url=url, startup_timeout=30)


class Handlers:
    def __init__(self) -> None:
        self.seen: list[ServerRequest] = []

    async def elicit(self, request: ServerRequest) -> t.ElicitResult:
        self.seen.append(request)
        if isinstance(request.params, t.ElicitRequestURLParams):
            return t.ElicitResult(action="accept")
        return t.ElicitResult(
            action="accept",
            content={"name": "Ada", "check": True, "color": "red", "email": "ada@example.com"},
        )

    async def sample(self, request: ServerRequest) -> t.CreateMessageResult:
        self.seen.append(request)
        return t.CreateMessageResult(
            role="assistant", content=t.TextContent(type="text", text="sampled hi"), model="stub-model"
        )

    async def log(self, request: ServerRequest) -> None:
        self.seen.append(request)

    def handlers(self) -> ClientHandlers:
        return ClientHandlers(
            elicitation=self.elicit,
            sampling=self.sample,
            roots=("file:///work/repo",),
            logging=self.log,
        )


async def test_a_client_without_handlers_does_not_see_the_gated_tools(config: ServerConfig) -> None:
    async with McpClient(config) as client:
        names = {tool.name for tool in await client.list_tools()}
    assert names and not names & GATED


async def test_every_tool_is_callable_through_a_session(config: ServerConfig) -> None:
    rec = Handlers()
    progress: list[tuple[str, float, float | None]] = []
    results: dict[str, t.CallToolResult] = {}
    async with Session([config], handlers=rec.handlers()) as session:
        client = session.clients["everything"]
        tools = await client.list_tools()
        assert GATED <= {tool.name for tool in tools}
        async with session.turn() as turn:
            for tool in tools:

                def on_progress(
                    value: float, total: float | None, message: str | None, name: str = tool.name
                ) -> None:
                    progress.append((name, value, total))

                results[tool.name] = await turn.call_tool(
                    "everything", tool.name, ARGUMENTS.get(tool.name, {}), on_progress=on_progress
                )
            if "toggle-simulated-logging" in results:  # switch the periodic messages off again
                await turn.call_tool("everything", "toggle-simulated-logging", {})
            if "toggle-subscriber-updates" in results:
                await turn.call_tool("everything", "toggle-subscriber-updates", {})
    for tool in tools:
        result = results[tool.name]
        if tool.execution is not None and tool.execution.task_support == "required":
            # Task-augmented calls (SEP-1686) are not part of the mcp 2.3 client: the server
            # refuses the plain call with a clean tool error.
            assert result.is_error and "task" in json.dumps(result.model_dump(mode="json")).lower()
        else:
            assert not result.is_error, (tool.name, result.content)

    def text(name: str) -> str:
        return "\n".join(b.text for b in results[name].content if isinstance(b, t.TextContent))

    # Round trips: the handlers got the server's requests, tied to this turn and tool.
    asked = {(r.method, r.tool) for r in rec.seen if r.turn_id == turn.id}
    assert {
        ("elicitation/create", "trigger-elicitation-request"),
        ("elicitation/create", "trigger-url-elicitation"),
        ("sampling/createMessage", "trigger-sampling-request"),
    } <= asked
    assert "file:///work/repo" in text("get-roots-list")
    assert "Ada" in text("trigger-elicitation-request")
    assert "sampled hi" in text("trigger-sampling-request")
    assert sorted(v for name, v, _ in progress if name == "trigger-long-running-operation") == [1.0, 2.0, 3.0]
    assert any(r.method == "notifications/message" for r in rec.seen)  # its log messages arrived


async def test_resources_and_prompts_are_read(config: ServerConfig) -> None:
    async with Session([config]) as session:
        client = session.clients["everything"]
        assert client.server_info is not None and client.server_info.name == "mcp-servers/everything"
        assert client.instructions
        resources = await session.list_resources()
        assert resources and {r.server for r in resources} == {"everything"}
        async with session.turn() as turn:
            for item in resources:
                read = await turn.read_resource("everything", item.uri)
                assert read.contents and str(read.contents[0].uri) == item.uri
            templates = await client.list_resource_templates()
            assert templates
            dynamic = await turn.read_resource("everything", "demo://resource/dynamic/text/1")
            assert isinstance(dynamic.contents[0], t.TextResourceContents)
            prompts = await session.list_prompts()
            assert {p.name for p in prompts} >= {"everything__simple-prompt", "everything__args-prompt"}
            got = await turn.get_prompt("everything", "args-prompt", {"city": "Paris", "state": "Texas"})
            assert "Paris" in json.dumps(got.model_dump(mode="json"))
            done = await client.complete(
                t.PromptReference(type="ref/prompt", name="completable-prompt"),
                {"name": "department", "value": "E"},
            )
            assert "Engineering" in done.completion.values
            await client.subscribe_resource(resources[0].uri)
            await client.unsubscribe_resource(resources[0].uri)
            await client.ping()

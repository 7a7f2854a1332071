"""Test helpers for the app-server: Codex's published JSON Schema, and an in-process client.

`ProtocolChecker` validates every message the server writes against Codex's app-server
protocol v2 JSON Schema (``v2.schemas.json``, draft-07), found through
``$CODEX_APP_SERVER_SCHEMA`` or as ``shared/codex-app-server-protocol/v2.schemas.json``
beside the repository (or beside one of its parent folders). Two messages the file does
not define are checked against the shapes of Codex's Rust source instead: the
``initialize`` result (``{"userAgent": string}``) and the ``mcpServer/elicitation/request``
server request. Tests that need the file skip only where it is absent.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from codex_runtime.app_server import AppServer

REPO = Path(__file__).resolve().parent.parent

RESPONSES = {
    "thread/start": "ThreadStartResponse",
    "thread/resume": "ThreadResumeResponse",
    "thread/read": "ThreadReadResponse",
    "thread/list": "ThreadListResponse",
    "turn/start": "TurnStartResponse",
    "turn/steer": "TurnSteerResponse",
    "turn/interrupt": "TurnInterruptResponse",
}

# Shapes from codex-rs/app-server-protocol (InitializeResponse, McpServerElicitationRequestParams):
# the published v2 bundle leaves them out.
LOCAL = {
    "InitializeResponse": {
        "type": "object",
        "required": ["userAgent"],
        "properties": {"userAgent": {"type": "string"}},
    },
    "McpServerElicitationRequest": {
        "type": "object",
        "required": ["id", "method", "params"],
        "properties": {
            "id": {"$ref": "#/definitions/RequestId"},
            "method": {"enum": ["mcpServer/elicitation/request"]},
            "params": {
                "type": "object",
                "required": ["threadId", "turnId", "serverName", "mode", "message"],
                "properties": {
                    "threadId": {"type": "string"},
                    "turnId": {"type": ["string", "null"]},
                    "serverName": {"type": "string"},
                    "mode": {"enum": ["form", "url"]},
                    "message": {"type": "string"},
                    "_meta": {},
                },
                "oneOf": [
                    {
                        "properties": {"mode": {"enum": ["form"]}, "requestedSchema": {"type": "object"}},
                        "required": ["requestedSchema"],
                    },
                    {
                        "properties": {
                            "mode": {"enum": ["url"]},
                            "url": {"type": "string"},
                            "elicitationId": {"type": "string"},
                        },
                        "required": ["url", "elicitationId"],
                    },
                ],
            },
        },
    },
    "JsonRpcError": {
        "type": "object",
        "required": ["id", "error"],
        "properties": {
            "id": {"anyOf": [{"$ref": "#/definitions/RequestId"}, {"type": "null"}]},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
            },
        },
    },
}


def schema_path() -> Path | None:
    env = os.environ.get("CODEX_APP_SERVER_SCHEMA")
    if env:
        return Path(env) if Path(env).is_file() else None
    for folder in (REPO, *REPO.parents):
        candidate = folder / "shared" / "codex-app-server-protocol" / "v2.schemas.json"
        if candidate.is_file():
            return candidate
    return None


class ProtocolChecker:
    """Validates server messages; remembers which method each request id was."""

    def __init__(self, path: Path) -> None:
        import jsonschema

        bundle = json.loads(path.read_text(encoding="utf-8"))
        self.definitions = {**bundle["definitions"], **LOCAL}
        self._jsonschema = jsonschema
        self.methods: dict[Any, str] = {}
        self.checked = 0
        self._validators: dict[str, Any] = {}
        self._notifications: dict[str, str] = {}
        for index, branch in enumerate(self.definitions["ServerNotification"]["oneOf"]):
            name = f"ServerNotification#{index}"
            self.definitions[name] = branch
            for method in branch["properties"]["method"]["enum"]:
                self._notifications[method] = name

    def _validate(self, instance: Any, definition: str) -> None:
        validator = self._validators.get(definition)
        if validator is None:
            schema = {"$ref": f"#/definitions/{definition}", "definitions": self.definitions}
            validator = self._validators[definition] = self._jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            detail = "; ".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:3])
            raise AssertionError(
                f"{definition} does not match Codex's schema: {detail}\n{json.dumps(instance)[:2000]}"
            )
        self.checked += 1

    def check(self, message: dict[str, Any]) -> None:
        """Validate one message the server wrote."""
        assert message.get("jsonrpc") == "2.0", message
        if "method" in message and "id" in message:
            assert message["method"] == "mcpServer/elicitation/request", message
            self._validate(message, "McpServerElicitationRequest")
        elif "method" in message:
            # ServerNotification is a oneOf keyed by distinct `method` enums: validating the
            # one branch of this method is the same check, without trying all 70.
            branch = self._notifications.get(message["method"])
            assert branch is not None, f"not a notification of Codex's protocol: {message['method']}"
            self._validate(message, branch)
        elif "error" in message:
            self._validate(message, "JsonRpcError")
        else:
            method = self.methods.get(message.get("id"))
            assert method is not None, f"a response to no request: {message}"
            definition = "InitializeResponse" if method == "initialize" else RESPONSES[method]
            self._validate(message["result"], definition)


@pytest.fixture(scope="session")
def protocol_schema() -> Path:
    path = schema_path()
    if path is None:
        pytest.skip(
            "Codex's app-server JSON Schema (shared/codex-app-server-protocol/v2.schemas.json) is absent"
        )
    return path


class Client:
    """Drives an `AppServer` in-process over memory streams; checks every message it gets."""

    def __init__(self, checker: ProtocolChecker | None) -> None:
        self.checker = checker
        self.messages: list[dict[str, Any]] = []
        self._lines_in, self._lines_out = anyio.create_memory_object_stream[str](1000)
        self._inbox_in, self._inbox_out = anyio.create_memory_object_stream[dict[str, Any]](100_000)
        self._next = 0
        self.raw_lines: list[str] = []

    async def lines(self) -> AsyncIterator[str]:
        async with self._lines_out:
            async for line in self._lines_out:
                yield line

    async def receive_line(self, line: str) -> None:
        self.raw_lines.append(line)
        message = json.loads(line)
        if self.checker is not None:
            self.checker.check(message)
        self.messages.append(message)
        await self._inbox_in.send(message)

    async def send_raw(self, line: str) -> None:
        await self._lines_in.send(line)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message))

    async def request(self, method: str, params: Any = None, *, wait: bool = True) -> Any:
        self._next += 1
        request_id = self._next
        if self.checker is not None:
            self.checker.methods[request_id] = method
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        if not wait:
            return request_id
        return await self.answer(request_id)

    async def answer(self, request_id: Any) -> dict[str, Any]:
        """The response to ``request_id`` (result or error message)."""
        return await self.next(lambda m: m.get("id") == request_id and "method" not in m)

    async def next(self, match: Any, timeout: float = 20.0) -> dict[str, Any]:
        """The next message (in arrival order, from where the last wait stopped) matching."""
        with anyio.fail_after(timeout):
            while True:
                message = await self._inbox_out.receive()
                if match(message):
                    return message

    async def notification(self, method: str, **fields: Any) -> dict[str, Any]:
        def match(m: dict[str, Any]) -> bool:
            if m.get("method") != method or "id" in m:
                return False
            return all(m["params"].get(k) == v for k, v in fields.items())

        return await self.next(match)

    async def initialize(self) -> None:
        answer = await self.request("initialize", {"clientInfo": {"name": "tests", "version": "1.0"}})
        assert "userAgent" in answer["result"]
        await self.send({"jsonrpc": "2.0", "method": "initialized"})

    def close(self) -> None:
        self._lines_in.close()


async def run_server(server: AppServer, client: Client) -> None:
    await server.serve(client.lines(), client.receive_line)


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": value}]

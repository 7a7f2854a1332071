"""Built-in agent tools over MCP resources: ``list_resources`` and ``read_resource``.

As Codex offers ``list_mcp_resources`` / ``read_mcp_resource``, the agent loop offers
these to the model whenever a server of the session declares resources, so the model can
follow a resource link a tool returned. Reads go through `Turn.read_resource`: inside
the turn, through the header and trace layers like every other request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcp_types import (
    BlobResourceContents,
    CallToolResult,
    TextContent,
    TextResourceContents,
)

if TYPE_CHECKING:
    from .session import Session, Turn

__all__ = ["BUILTIN_SERVER", "resource_tool_specs", "run_resource_tool"]

#: The ``server`` of a built-in tool's spec: no MCP server has an empty name.
BUILTIN_SERVER = ""
LIST_RESOURCES = "list_resources"
READ_RESOURCE = "read_resource"

_SPECS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        LIST_RESOURCES,
        "List the resources (files, documents, data) the MCP servers of this session offer: "
        "each with its server, uri, name and mime type. Optionally only those of one server.",
        {
            "type": "object",
            "properties": {"server": {"type": "string", "description": "Only this server's resources."}},
            "additionalProperties": False,
        },
    ),
    (
        READ_RESOURCE,
        "Read one resource of an MCP server by its uri, e.g. a resource link a tool returned.",
        {
            "type": "object",
            "properties": {
                "server": {"type": "string", "description": "The server that has the resource."},
                "uri": {"type": "string", "description": "The resource's uri."},
            },
            "required": ["server", "uri"],
            "additionalProperties": False,
        },
    ),
)


def resource_tool_specs(session: Session, *, always: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, description, input schema) of the built-in tools, if any server offers resources."""
    if always:
        return [(name, text, dict(schema)) for name, text, schema in _SPECS]
    for client in session.clients.values():
        caps = client.server_capabilities
        if caps is not None and caps.resources is not None:
            return [(name, text, dict(schema)) for name, text, schema in _SPECS]
    return []


def _error(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


async def run_resource_tool(turn: Turn, name: str, arguments: Mapping[str, Any]) -> CallToolResult:
    """Run built-in tool ``name`` in ``turn``; bad arguments give a tool error for the model."""
    server = arguments.get("server")
    if server is not None and (not isinstance(server, str) or server not in turn.session.clients):
        known = ", ".join(sorted(turn.session.clients)) or "none"
        return _error(f"unknown server {server!r}; the servers are: {known}")
    if name == LIST_RESOURCES:
        items = await turn.session.list_resources()
        listed = [
            {
                "server": item.server,
                "uri": item.uri,
                "name": item.name,
                **({"mimeType": item.resource.mime_type} if item.resource.mime_type else {}),
                **({"description": item.resource.description} if item.resource.description else {}),
            }
            for item in items
            if server is None or item.server == server
        ]
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(listed))])
    uri = arguments.get("uri")
    if not isinstance(server, str) or not isinstance(uri, str) or not uri:
        return _error("read_resource needs the arguments server and uri (strings)")
    read = await turn.read_resource(server, uri)
    blocks: list[TextContent] = []
    for content in read.contents:
        if isinstance(content, TextResourceContents):
            blocks.append(TextContent(type="text", text=content.text))
        elif isinstance(content, BlobResourceContents):
            mime = content.mime_type or "application/octet-stream"
            size = len(content.blob) * 3 // 4
            blocks.append(
                TextContent(type="text", text=f"[binary resource {content.uri} ({mime}), ~{size} bytes]")
            )
    if not blocks:
        blocks.append(TextContent(type="text", text="(the resource is empty)"))
    return CallToolResult(content=list(blocks))

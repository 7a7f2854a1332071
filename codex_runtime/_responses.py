"""`OpenAIResponsesModel`: a model behind the OpenAI Responses API (``POST {base_url}/responses``).

The Responses API is what Codex and the SMG gateway speak: the conversation goes as
``input`` items (messages, ``function_call`` and ``function_call_output`` items), system
messages as ``instructions``, tools as flat ``{"type": "function", "name", ...}`` objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._streaming import ChatStreamAssembler, ResponsesStreamAssembler
from .agent import (
    Message,
    ModelError,
    ModelRequest,
    ModelResponse,
    OpenAIChatModel,
    ToolCall,
    _new_call_id,
    _parse_arguments,
    wire_tool_name,
)

__all__ = ["OpenAIResponsesModel"]


class OpenAIResponsesModel(OpenAIChatModel):
    """A model behind the OpenAI Responses API, with function tools, streamed by default.

    Takes the same arguments as `OpenAIChatModel` and sends the same headers (forwarded
    through ``policy``, ``headers``, ``Authorization: Bearer <api_key>``, the turn span's
    ``traceparent``); it POSTs ``{base_url}/responses``. Streamed, each
    ``response.output_text.delta`` goes to the request's ``on_text_delta`` as it arrives,
    function calls are assembled from ``response.output_item.done`` (or their argument
    deltas), and an interrupted turn closes the stream at once. Failures raise
    `ModelError` (HTTP errors with ``status``, a ``response.failed`` or ``error`` event, an
    unreachable provider, a body that is not a response).
    """

    path = "/responses"

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        instructions = [m.content for m in request.messages if m.role == "system" and m.content]
        body: dict[str, Any] = {
            "model": self.model,
            "input": [item for m in request.messages if m.role != "system" for item in _input_items(m)],
        }
        if instructions:
            body["instructions"] = "\n\n".join(instructions)
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "name": wire_tool_name(t.name),
                    "description": t.description,
                    "parameters": dict(t.input_schema) or {"type": "object", "properties": {}},
                }
                for t in request.tools
            ]
            body["parallel_tool_calls"] = bool(request.parallel_tool_calls)
        if self.stream:
            body["stream"] = True
        body.update(self.options)
        return body

    def _assembler(self) -> ChatStreamAssembler | ResponsesStreamAssembler:
        return ResponsesStreamAssembler()

    def parse_body(self, data: Any, request: ModelRequest) -> ModelResponse:
        names = {wire_tool_name(t.name): t.name for t in request.tools}
        return _parse_response(data, names)


def _input_items(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        content = message.content or ""
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id,
                "output": f"ERROR: {content}" if message.is_error else content,
            }
        ]
    if message.role == "user":
        return [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": message.content or ""}],
            }
        ]
    items: list[dict[str, Any]] = []
    if message.content:
        items.append(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": message.content}],
            }
        )
    for call in message.tool_calls:
        items.append(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": wire_tool_name(call.name),
                "arguments": json.dumps(call.arguments),
            }
        )
    return items


def _malformed(problem: str) -> ModelError:
    return ModelError(f"the model provider's answer is not a Responses API response: {problem}")


def _parse_response(data: Any, names: Mapping[str, str]) -> ModelResponse:
    if not isinstance(data, dict):
        raise _malformed("the body is not a JSON object")
    if data.get("status") == "failed" or isinstance(data.get("error"), dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        raise ModelError(f"the model provider reported a failed response: {message or 'no details'}")
    output = data.get("output")
    if not isinstance(output, list):
        raise _malformed("no output list")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for index, item in enumerate(output):
        if not isinstance(item, dict):
            raise _malformed(f"output[{index}] is not an object")
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") in ("output_text", "text"):
                    if isinstance(part.get("text"), str):
                        texts.append(part["text"])
        elif kind == "function_call":
            wire = item.get("name")
            if not isinstance(wire, str):
                raise _malformed(f"output[{index}] is a function call without a name")
            name = names.get(wire) or wire  # an unknown tool: the loop answers the model with an error
            call_id = item.get("call_id") or item.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = _new_call_id()
            arguments, problem = _parse_arguments(item.get("arguments"))
            calls.append(ToolCall(name, arguments, id=call_id, arguments_error=problem))
        # reasoning and other items carry nothing the loop uses
    usage = data.get("usage")
    return ModelResponse(
        text="".join(texts) if texts else None,
        tool_calls=tuple(calls),
        finish_reason="tool_calls" if calls else ("stop" if data.get("status") != "incomplete" else "length"),
        usage=usage if isinstance(usage, dict) else None,
    )

"""Server-sent events and the assembly of streamed model answers (no I/O, no package imports).

Chat Completions streams ``chat.completion.chunk`` objects whose ``delta`` carries pieces of
the text and of each tool call (by ``index``); `ChatStreamAssembler` folds them back into the
body a non-streamed request would have got, so one parser serves both. The Responses API
streams typed events (``response.output_text.delta``, ``response.output_item.done``,
``response.completed``...); `ResponsesStreamAssembler` keeps the output items and the final
response object.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["ChatStreamAssembler", "ResponsesStreamAssembler", "StreamError", "sse_events"]


class StreamError(ValueError):
    """The stream said something that is not the expected protocol (or reported an error)."""


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """Yield ``(event, data)`` for each server-sent event of ``lines`` (``[DONE]`` included)."""
    event: str | None = None
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event, "\n".join(data)


def _json_object(data: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise StreamError(f"a {what} event is not JSON: {data[:120]!r}") from None
    if not isinstance(value, dict):
        raise StreamError(f"a {what} event is not a JSON object")
    return value


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str):
            return message
        return json.dumps(error)[:300]
    return str(error)[:300]


class ChatStreamAssembler:
    """Folds Chat Completions stream chunks into one ``chat.completion`` body."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.chunks = 0

    def feed(self, event: str | None, data: str) -> str | None:
        """Take one event's data; return the text delta it carries, if any."""
        if data.strip() == "[DONE]":
            self.done = True
            return None
        chunk = _json_object(data, "chat stream")
        if "error" in chunk:
            raise StreamError(f"the provider reported an error mid-stream: {_error_text(chunk['error'])}")
        self.chunks += 1
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            return None
        choice = choices[0]
        if not isinstance(choice, dict):
            raise StreamError("a chat stream chunk has a choice that is not an object")
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return None
        for raw in delta.get("tool_calls") or ():
            if not isinstance(raw, dict):
                raise StreamError("a streamed tool call is not an object")
            index = raw.get("index", len(self.calls))
            if not isinstance(index, int):
                raise StreamError("a streamed tool call has no integer index")
            call = self.calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            if isinstance(raw.get("id"), str):
                call["id"] = raw["id"]
            function = raw.get("function")
            if isinstance(function, dict):
                if isinstance(function.get("name"), str):
                    call["name"] += function["name"]
                if isinstance(function.get("arguments"), str):
                    call["arguments"] += function["arguments"]
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.text.append(content)
            return content
        return None

    def result(self) -> dict[str, Any]:
        """The ``chat.completion`` body the chunks add up to."""
        if self.chunks == 0:
            raise StreamError("the stream ended before any chunk")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) if self.text else None}
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
                for _, call in sorted(self.calls.items())
            ]
        body: dict[str, Any] = {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage is not None:
            body["usage"] = self.usage
        return body


class ResponsesStreamAssembler:
    """Keeps what a Responses API stream says: output items, text deltas, the final response."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        self.arguments: dict[int, str] = {}
        self.text: dict[int, list[str]] = {}
        self.response: dict[str, Any] | None = None
        self.done = False

    def feed(self, event: str | None, data: str) -> str | None:
        """Take one event; return the text delta it carries, if any."""
        if data.strip() == "[DONE]":
            self.done = True
            return None
        body = _json_object(data, "responses stream")
        kind = body.get("type", event)
        index = body.get("output_index")
        if kind == "response.output_text.delta":
            delta = body.get("delta")
            if isinstance(delta, str) and delta:
                self.text.setdefault(index if isinstance(index, int) else -1, []).append(delta)
                return delta
        elif kind == "response.function_call_arguments.delta":
            delta = body.get("delta")
            if isinstance(index, int) and isinstance(delta, str):
                self.arguments[index] = self.arguments.get(index, "") + delta
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = body.get("item")
            if isinstance(index, int) and isinstance(item, dict):
                self.items[index] = item
        elif kind in ("response.completed", "response.incomplete"):
            response = body.get("response")
            if isinstance(response, dict):
                self.response = response
            self.done = True
        elif kind == "response.failed":
            response = body.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            raise StreamError(
                f"the provider reported a failed response: {_error_text(error or 'no details')}"
            )
        elif kind == "error":
            raise StreamError(f"the provider reported an error mid-stream: {_error_text(body)}")
        return None

    def result(self) -> dict[str, Any]:
        """The response object: the one ``response.completed`` carried, with the streamed
        items filled in where it left them out."""
        if self.response is None and not self.items:
            raise StreamError("the stream ended before the response completed")
        response = dict(self.response or {"object": "response", "status": "incomplete"})
        output = response.get("output")
        if not isinstance(output, list) or not output:
            items = []
            for index, item in sorted(self.items.items()):
                item = dict(item)
                if item.get("type") == "function_call" and not item.get("arguments"):
                    item["arguments"] = self.arguments.get(index, "")
                if item.get("type") == "message" and not item.get("content") and index in self.text:
                    item["content"] = [{"type": "output_text", "text": "".join(self.text[index])}]
                items.append(item)
            response["output"] = items
        return response

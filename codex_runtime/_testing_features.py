"""The recording server's client-feature tools, resources and prompts.

Added to every `RecordingServer` so tests can drive each request a server makes of its
client, in both protocol eras (the SDK's `Resolve` markers become standalone requests
on legacy sessions and input-required rounds on 2026-07-28):

- tools ``ask(question)`` (elicitation), ``sample(prompt)`` (sampling), ``roots``
  (``roots/list``), ``progress(steps)`` (progress notifications), ``log(message,
  level)`` (a log message), ``touch(uri)`` (a resource update), ``link(uri)`` (a result
  holding a resource link), and
  ``confirm`` (a hand-written input-required round, 2026-07-28 only, returning the
  request state it was sent back);
- resources ``res://readme`` and ``res://data.json``, the template
  ``res://items/{item_id}``; ``resources/subscribe`` answers with an immediate
  ``notifications/resources/updated``;
- the prompt ``greet(name)`` with completions for ``name``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.elicitation import ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, ListRoots, Resolve, Sample
from mcp_types import (
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmptyResult,
    InputRequiredResult,
    ListRootsResult,
    PromptReference,
    ResourceLink,
    ResourceTemplateReference,
    SamplingMessage,
    SubscribeRequestParams,
    TextContent,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

#: The request state the ``confirm`` tool hands out (odd characters: it must come back verbatim).
CONFIRM_STATE = 'state:1/ü "quoted" +=='
NAMES = ("alice", "alan", "bob")

Runner = Callable[[str, dict[str, Any], Context[Any, Any], Callable[[], Awaitable[Any]]], Awaitable[Any]]


class Answer(BaseModel):
    """The form the ``ask`` tool elicits."""

    name: str


def _ask(question: str = "What is your name?") -> Elicit[Answer]:
    return Elicit(question, Answer)


def _sample(prompt: str = "Say hello") -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=64
    )


def _roots() -> ListRoots:
    return ListRoots()


def add_client_feature_tools(server: MCPServer, name: str, run: Runner, subscriptions: list[str]) -> None:
    """Register the tools, resources and prompts described in the module docstring."""

    @server.tool(name="ask", description="Ask the user (elicitation) and return the answer.")
    async def ask_tool(
        ctx: Context[Any, Any],
        answer: Annotated[ElicitationResult[Answer], Resolve(_ask)],
        question: str = "What is your name?",
    ) -> str:
        async def body() -> str:
            data = answer.data.model_dump() if answer.action == "accept" else None
            return json.dumps({"action": answer.action, "data": data})

        result: str = await run("ask", {"question": question}, ctx, body)
        return result

    @server.tool(name="sample", description="Ask the client's model (sampling) and return its text.")
    async def sample_tool(
        ctx: Context[Any, Any],
        sampled: Annotated[CreateMessageResult, Resolve(_sample)],
        prompt: str = "Say hello",
    ) -> str:
        async def body() -> str:
            content = sampled.content
            text = content.text if isinstance(content, TextContent) else str(content)
            return json.dumps({"model": sampled.model, "text": text})

        result: str = await run("sample", {"prompt": prompt}, ctx, body)
        return result

    @server.tool(name="roots", description="Return the client's roots.")
    async def roots_tool(ctx: Context[Any, Any], listed: Annotated[ListRootsResult, Resolve(_roots)]) -> str:
        async def body() -> str:
            return json.dumps([str(r.uri) for r in listed.roots])

        result: str = await run("roots", {}, ctx, body)
        return result

    @server.tool(name="progress", description="Report `steps` progress notifications, then return.")
    async def progress_tool(ctx: Context[Any, Any], steps: int = 3) -> str:
        async def body() -> str:
            for step in range(1, steps + 1):
                await ctx.report_progress(step, steps, f"step {step}")
            return f"done {steps}"

        result: str = await run("progress", {"steps": steps}, ctx, body)
        return result

    @server.tool(name="log", description="Send a log message to the client.")
    async def log_tool(ctx: Context[Any, Any], message: str = "hello", level: str = "info") -> str:
        async def body() -> str:
            # The undecorated `send_log_message`: logging is deprecated in 2026-07-28, and
            # the warning would only be noise here.
            session = ctx.request_context.session
            send = type(session).send_log_message.__wrapped__  # type: ignore[attr-defined]
            await send(session, level, message, "recording", ctx.request_context.request_id)
            return "logged"

        result: str = await run("log", {"message": message, "level": level}, ctx, body)
        return result

    @server.tool(name="link", description="Return a link to resource `uri`.")
    async def link_tool(ctx: Context[Any, Any], uri: str = "res://readme") -> CallToolResult:
        async def body() -> CallToolResult:
            link = ResourceLink(type="resource_link", uri=uri, name=uri.rsplit("/", 1)[-1])
            return CallToolResult(content=[TextContent(type="text", text="see the link"), link])

        result: CallToolResult = await run("link", {"uri": uri}, ctx, body)
        return result

    @server.tool(name="touch", description="Tell subscribers that resource `uri` changed.")
    async def touch_tool(ctx: Context[Any, Any], uri: str = "res://readme") -> str:
        async def body() -> str:
            if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
                await ctx.notify_resource_updated(uri)  # to subscriptions/listen streams
            else:
                await ctx.session.send_resource_updated(uri)
            return f"touched {uri}"

        result: str = await run("touch", {"uri": uri}, ctx, body)
        return result

    @server.tool(name="confirm", description="Ask for confirmation in an input-required round (2026-07-28).")
    async def confirm_tool(ctx: Context[Any, Any]) -> str | InputRequiredResult:
        async def body() -> str | InputRequiredResult:
            if ctx.request_state is None:
                form = ElicitRequestFormParams(
                    message="Confirm?",
                    requested_schema={"type": "object", "properties": {"ok": {"type": "boolean"}}},
                )
                return InputRequiredResult(
                    input_requests={"confirm": ElicitRequest(params=form)}, request_state=CONFIRM_STATE
                )
            response = (ctx.input_responses or {}).get("confirm")
            answer = response.model_dump(mode="json") if isinstance(response, ElicitResult) else None
            return json.dumps({"state": ctx.request_state, "answer": answer})

        result: str | InputRequiredResult = await run("confirm", {}, ctx, body)
        return result

    @server.resource("res://readme", name="readme", mime_type="text/plain")
    def readme() -> str:
        return f"readme of {name}"

    @server.resource("res://data.json", name="data", mime_type="application/json")
    def data() -> str:
        return json.dumps({"server": name})

    @server.resource("res://items/{item_id}", name="item", mime_type="text/plain")
    def item(item_id: str) -> str:
        return f"item {item_id}"

    @server.prompt(name="greet", description="Greet someone.")
    def greet(name: str) -> str:
        return f"Hello, {name}!"

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if isinstance(ref, PromptReference) and argument.name == "name":
            return Completion(values=[n for n in NAMES if n.startswith(argument.value)])
        return None

    async def on_subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        subscriptions.append(str(params.uri))
        await ctx.session.send_resource_updated(params.uri)
        return EmptyResult()

    async def on_unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        subscriptions.append(f"-{params.uri}")
        return EmptyResult()

    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, on_unsubscribe)

"""The client the official MCP conformance suite drives, written against codex-runtime's public API.

The suite starts a scenario server, then runs this program with the server's URL as the last
argument, the scenario's name in ``MCP_CONFORMANCE_SCENARIO`` and scenario data (credentials,
the calls to make) as JSON in ``MCP_CONFORMANCE_CONTEXT``. It judges what the client sent.

    python conformance/client.py [--protocol auto|legacy] URL

Each scenario has one handler below. Every handler runs a `Session` (with `TurnHeaders`, the
way an agent runs one) over one `ServerConfig`; tool calls are made inside a turn. Auth
scenarios pass an `OAuth` spec whose ``authorize`` function plays the user's browser: it
opens the authorization URL, and the scenario's authorization server, which approves at once,
sends it back to the client's loopback redirect listener.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2

from codex_runtime import (
    AuthorizationError,
    ClientHandlers,
    CodexRuntimeError,
    ServerConfig,
    ServerRequest,
    Session,
    ToolCallError,
    TurnHeaders,
)
from codex_runtime.auth import MemoryTokenStore, OAuth

log = logging.getLogger("conformance")

SERVER = "test"
#: The client ID metadata document URL the suite's CIMD scenario expects.
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"

Handler = Callable[[str, "Options"], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


class Options:
    def __init__(self, protocol: str, context: dict[str, Any]) -> None:
        self.protocol = protocol
        self.context = context


def scenario(*names: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = handler
        return handler

    return register


def server_config(url: str, options: Options, **kwargs: Any) -> ServerConfig:
    return ServerConfig(
        name=SERVER, url=url, protocol=options.protocol, required=True, startup_timeout=20, **kwargs
    )


def session(cfg: ServerConfig, handlers: ClientHandlers | None = None) -> Session:
    return Session(servers=[cfg], hooks=[TurnHeaders()], handlers=handlers)


async def call_in_turn(s: Session, tool: str, arguments: dict[str, Any] | None = None) -> None:
    async with s.turn(metadata={"scenario": os.environ.get("MCP_CONFORMANCE_SCENARIO", "")}) as turn:
        result = await turn.call_tool(SERVER, tool, arguments or {})
        log.info("%s -> isError=%s", tool, result.is_error)


# -- core scenarios ---------------------------------------------------------------------


@scenario("initialize")
async def initialize(url: str, options: Options) -> None:
    async with session(server_config(url, options)) as s:
        tools = await s.list_tools()
        log.info("tools: %s", [t.name for t in tools])


@scenario("tools_call")
async def tools_call(url: str, options: Options) -> None:
    async with session(server_config(url, options)) as s:
        await call_in_turn(s, "add_numbers", {"a": 5, "b": 3})


@scenario("sse-retry")
async def sse_retry(url: str, options: Options) -> None:
    async with session(server_config(url, options)) as s:
        await call_in_turn(s, "test_reconnection")


async def accept_with_defaults(request: ServerRequest) -> Any:
    """Elicitation: accept, answering every field with the default its schema gives."""
    from mcp_types import ElicitResult

    schema = getattr(request.params, "requested_schema", None) or {}
    content = {
        name: spec["default"]
        for name, spec in (schema.get("properties") or {}).items()
        if isinstance(spec, dict) and "default" in spec
    }
    return ElicitResult(action="accept", content=content)


@scenario("elicitation-sep1034-client-defaults")
async def elicitation_defaults(url: str, options: Options) -> None:
    async with session(server_config(url, options), ClientHandlers(elicitation=accept_with_defaults)) as s:
        await call_in_turn(s, "test_client_elicitation_defaults")


async def sample_fixed(request: ServerRequest) -> Any:
    """Sampling: a fixed answer stands in for the model."""
    from mcp_types import CreateMessageResult, TextContent

    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text="ok"), model="conformance-model"
    )


def capable_handlers() -> ClientHandlers:
    return ClientHandlers(elicitation=accept_with_defaults, sampling=sample_fixed, roots=("file:///tmp",))


@scenario("request-metadata", "json-schema-ref-no-deref")
async def list_only(url: str, options: Options) -> None:
    async with session(server_config(url, options), capable_handlers()) as s:
        tools = await s.list_tools()
        log.info("tools: %s", [t.tool.name for t in tools])


@scenario("json-schema-2020-12-preservation")
async def schema_echo(url: str, options: Options) -> None:
    """Hand the input schema the client saw for one tool back to the server, verbatim."""
    async with session(server_config(url, options), capable_handlers()) as s:
        tools = {t.tool.name: t.tool for t in await s.list_tools()}
        schema = tools["json_schema_2020_12_tool"].input_schema
        async with s.turn() as turn:
            await turn.call_tool(SERVER, "json_schema_echo", {"schema": schema})


@scenario("http-custom-headers")
async def context_tool_calls(url: str, options: Options) -> None:
    """Make exactly the calls the scenario hands out, at once, in one turn."""
    calls = options.context.get("toolCalls") or []
    async with session(server_config(url, options), capable_handlers()) as s:
        await s.list_tools()
        async with s.turn() as turn, anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(call_quietly, turn, call["name"], call.get("arguments") or {})


async def call_quietly(turn: Any, tool: str, arguments: dict[str, Any]) -> None:
    try:
        result = await turn.call_tool(SERVER, tool, arguments)
        log.info("%s -> is_error=%s", tool, result.is_error)
    except CodexRuntimeError as exc:
        log.info("%s refused: %s", tool, exc)


@scenario("http-standard-headers", "http-invalid-tool-headers", "sep-2322-client-request-state")
async def everything(url: str, options: Options) -> None:
    """Call every listed tool, read every listed resource, get every listed prompt."""
    async with session(server_config(url, options), capable_handlers()) as s:
        tools = await s.list_tools()
        resources = await s.list_resources()
        prompts = await s.list_prompts()
        async with s.turn() as turn:
            for tool in tools:
                await call_quietly(turn, tool.tool.name, {})
            for resource in resources:
                try:
                    await turn.read_resource(SERVER, resource.uri)
                except CodexRuntimeError as exc:
                    log.info("%s refused: %s", resource.uri, exc)
            for prompt in prompts:
                try:
                    await turn.get_prompt(SERVER, prompt.prompt.name, {})
                except CodexRuntimeError as exc:
                    log.info("%s refused: %s", prompt.prompt.name, exc)


# -- authorization ----------------------------------------------------------------------


async def open_headless(authorization_url: str) -> None:
    """The user's browser: open the URL and follow the redirects back to the client."""
    async with httpx2.AsyncClient(follow_redirects=True, timeout=20) as browser:
        response = await browser.get(authorization_url)
        log.info("authorization round ended with HTTP %s", response.status_code)


async def authorized_session_run(cfg: ServerConfig) -> None:
    """Connect, list the tools, call the first one: enough for every auth scenario."""
    async with session(cfg, ClientHandlers(elicitation=accept_with_defaults)) as s:
        tools = await s.list_tools()
        if tools:
            try:
                await call_in_turn(s, tools[0].tool.name)
            except (ToolCallError, AuthorizationError) as exc:
                log.info("tool call refused: %s", exc)


@scenario("auth/*")
async def authorization_code(url: str, options: Options) -> None:
    context = options.context
    spec = OAuth(
        client_id=context.get("client_id"),
        client_secret=context.get("client_secret"),
        client_metadata_url=CLIENT_METADATA_URL,
        store=MemoryTokenStore(),
        authorize=open_headless,
    )
    await authorized_session_run(server_config(url, options, auth=spec))


@scenario("auth/client-credentials-basic")
async def client_credentials_basic(url: str, options: Options) -> None:
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryTokenStore(),
        client_id=options.context["client_id"],
        client_secret=options.context["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
    )
    await authorized_session_run(server_config(url, options, auth=provider))


@scenario("auth/client-credentials-jwt")
async def client_credentials_jwt(url: str, options: Options) -> None:
    from mcp.client.auth.extensions.client_credentials import (
        PrivateKeyJWTOAuthProvider,
        SignedJWTParameters,
    )

    context = options.context
    signing = SignedJWTParameters(
        issuer=context["client_id"],
        subject=context["client_id"],
        signing_algorithm=context.get("signing_algorithm", "ES256"),
        signing_key=context["private_key_pem"],
    )
    provider = PrivateKeyJWTOAuthProvider(
        server_url=url,
        storage=MemoryTokenStore(),
        client_id=context["client_id"],
        assertion_provider=signing.create_assertion_provider(),
    )
    await authorized_session_run(server_config(url, options, auth=provider))


@scenario("auth/cross-app-access-complete-flow")
async def cross_app_access(url: str, options: Options) -> None:
    """SEP-990: an IdP ID token exchanged for an ID-JAG, presented to the MCP authorization server."""
    from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

    context = options.context
    # The authorization server is deployment configuration in SEP-990; here it is read once
    # from the resource's metadata, as an administrator would when configuring the client.
    async with httpx2.AsyncClient(timeout=20) as http:
        base = httpx2.URL(url)
        metadata_url = base.copy_with(path="/.well-known/oauth-protected-resource" + base.path)
        metadata = (await http.get(metadata_url)).json()
    issuer = metadata["authorization_servers"][0]

    async def id_jag(audience: str, resource: str) -> str:
        async with httpx2.AsyncClient(timeout=20) as http:
            response = await http.post(
                context["idp_token_endpoint"],
                data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "subject_token": context["idp_id_token"],
                    "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                    "requested_token_type": "urn:ietf:params:oauth:token-type:id-jag",
                    "audience": audience,
                    "resource": resource,
                    "client_id": context.get("idp_client_id", ""),
                },
            )
            response.raise_for_status()
            token: str = response.json()["access_token"]
            return token

    provider = IdentityAssertionOAuthProvider(
        server_url=url,
        storage=MemoryTokenStore(),
        client_id=context["client_id"],
        client_secret=context["client_secret"],
        issuer=issuer,
        assertion_provider=id_jag,
        token_endpoint_auth_method="client_secret_basic",
    )
    await authorized_session_run(server_config(url, options, auth=provider))


# -- entry point ------------------------------------------------------------------------


def pick(name: str) -> Handler | None:
    if name in HANDLERS:
        return HANDLERS[name]
    if name.startswith("auth/"):
        return HANDLERS["auth/*"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=("auto", "legacy"), default="auto")
    parser.add_argument("url")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    name = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    raw = os.environ.get("MCP_CONFORMANCE_CONTEXT")
    context = json.loads(raw) if raw else {}
    handler = pick(name)
    if handler is None:
        print(f"no handler for scenario {name!r}", file=sys.stderr)
        return 1
    try:
        anyio.run(handler, args.url, Options(args.protocol, context))
    except CodexRuntimeError as exc:
        print(f"scenario {name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

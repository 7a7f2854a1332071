"""Resources and prompts at the session and turn level.

`Turn.read_resource` / `Turn.get_prompt` send from inside the turn (`bind_turn`), so
turn entries reach them exactly when their method is in the server's
``turn_header_methods``; an abort cancels them like a tool call.
`Session.list_resources` / `Session.list_prompts` gather every server's items.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import anyio
import attrs
from mcp_types import GetPromptResult, Prompt, ReadResourceResult, Resource

from ._context import bind_turn
from ._requests import McpRequestError
from ._turn_model import AbortReason, TurnAbortedError, TurnState, TurnStateError
from .client import McpClient, ServerUnavailableError

if TYPE_CHECKING:
    from .session import Session, Turn

__all__ = ["SessionPrompt", "SessionResource"]

logger = logging.getLogger("codex_runtime.session")
T = TypeVar("T")


@attrs.frozen
class SessionResource:
    """A resource of one of the session's servers."""

    server: str
    resource: Resource

    @property
    def uri(self) -> str:
        return str(self.resource.uri)

    @property
    def name(self) -> str:
        return self.resource.name


@attrs.frozen
class SessionPrompt:
    """A prompt of one of the session's servers, with its qualified name ``server__prompt``."""

    name: str
    server: str
    prompt: Prompt


async def in_turn(turn: Turn, server: str, method: str, send: Callable[[McpClient], Awaitable[T]]) -> T:
    """Run one request of ``turn`` to ``server``: bound to the turn, cancelled by its abort."""
    if turn._abort_reason is not None:
        raise TurnAbortedError(turn._abort_reason)
    if turn.state is not TurnState.RUNNING:
        raise TurnStateError(f"turn {turn.id} is {turn.state.value}; {method} is possible only while it runs")
    client = turn.session._clients.get(server)
    if client is None:
        raise McpRequestError(server, method, "no such server in this session")
    scope = anyio.CancelScope()
    turn._call_scopes.add(scope)
    try:
        with scope, bind_turn(turn.id):
            return await send(client)
        raise TurnAbortedError(turn._abort_reason or AbortReason.INTERRUPTED)
    except Exception as exc:
        if scope.cancel_called and not isinstance(exc, TurnAbortedError):
            raise TurnAbortedError(turn._abort_reason or AbortReason.INTERRUPTED) from exc
        raise
    finally:
        turn._call_scopes.discard(scope)


async def read_resource(turn: Turn, server: str, uri: str, **options: object) -> ReadResourceResult:
    async def send(client: McpClient) -> ReadResourceResult:
        return await client.read_resource(uri, **options)  # type: ignore[arg-type]

    return await in_turn(turn, server, "resources/read", send)


async def get_prompt(
    turn: Turn, server: str, name: str, arguments: dict[str, str] | None, **options: object
) -> GetPromptResult:
    async def send(client: McpClient) -> GetPromptResult:
        return await client.get_prompt(name, arguments, **options)  # type: ignore[arg-type]

    return await in_turn(turn, server, "prompts/get", send)


async def _gather(
    session: Session, what: str, fetch: Callable[[McpClient], Awaitable[Sequence[T]]]
) -> list[tuple[str, T]]:
    clients = list(session._clients.items())
    found: list[Sequence[T]] = [() for _ in clients]

    async def one(index: int, name: str, client: McpClient) -> None:
        capabilities = client.server_capabilities
        if capabilities is not None and getattr(capabilities, what) is None:
            return  # the server does not offer them: do not ask
        try:
            found[index] = await fetch(client)
        except (ServerUnavailableError, McpRequestError) as exc:
            logger.warning("listing the %s of %r failed: %s", what, name, exc)

    async with anyio.create_task_group() as tg:
        for index, (name, client) in enumerate(clients):
            tg.start_soon(one, index, name, client)
    return [(name, item) for (name, _), items in zip(clients, found, strict=True) for item in items]


async def list_resources(session: Session) -> list[SessionResource]:
    items = await _gather(session, "resources", lambda c: c.list_resources())
    return [SessionResource(server=name, resource=r) for name, r in items]


async def list_prompts(session: Session) -> list[SessionPrompt]:
    items = await _gather(session, "prompts", lambda c: c.list_prompts())
    return [SessionPrompt(name=f"{name}__{p.name}", server=name, prompt=p) for name, p in items]

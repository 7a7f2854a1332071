"""A user-written turn hook: send a header taken from the turn's metadata.

`TenantHeader` sets, at turn start, a turn entry ``x-tenant`` on the servers it chooses
(here: those with ``forward=True``) and clears it at turn end. The value is a callable,
read when each request is sent, so a change to ``turn.metadata`` during the turn reaches
the later calls. A plain async function registered with ``@session.on_turn_end`` logs
every outcome.
"""

import anyio

from codex_runtime import McpClient, ServerConfig, Session, Turn, TurnOutcome
from codex_runtime.testing import RecordingServer


class TenantHeader:
    """Sends ``turn.metadata["tenant"]`` as the ``x-tenant`` header of every tool call."""

    def __init__(self, header: str = "x-tenant", key: str = "tenant") -> None:
        self.header = header
        self.key = key

    def _targets(self, turn: Turn) -> list[McpClient]:
        return [c for c in turn.session.clients.values() if c.config.forward]

    async def on_turn_start(self, turn: Turn) -> None:
        if self.key not in turn.metadata:
            raise ValueError(f"turn metadata needs a {self.key!r} key")  # fails the turn early

        def current_value() -> str:
            return str(turn.metadata[self.key])

        for client in self._targets(turn):
            client.set_turn_headers(turn.id, {self.header: current_value})

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        for client in self._targets(turn):
            client.clear_turn_headers(turn.id)


async def main() -> None:
    async with RecordingServer("crm") as crm, RecordingServer("search") as search:
        servers = [
            ServerConfig(name="crm", url=crm.url, forward=True),  # gets the tenant header
            ServerConfig(name="search", url=search.url),  # never does
        ]
        async with Session(servers, hooks=[TenantHeader()]) as session:

            @session.on_turn_end
            async def log_outcome(turn: Turn, outcome: TurnOutcome) -> None:
                print(f"turn {turn.index} ended: {outcome.state.value}")

            async with session.turn(metadata={"tenant": "acme"}) as turn:
                await turn.call_tool("crm", "echo", {"text": "first"})
                turn.metadata["tenant"] = "globex"  # read again at send time
                await turn.call_tool("crm", "echo", {"text": "second"})
                await turn.call_tool("search", "echo", {"text": "elsewhere"})

            await session.clients["crm"].call_tool("echo", {"text": "after the turn"})

        for server in (crm, search):
            for call in server.requests("tools/call"):
                print(f"{server.name} got {call.arguments['text']!r} with x-tenant={call.header('x-tenant')}")


if __name__ == "__main__":
    anyio.run(main)

"""Drive turns programmatically: start_turn, interrupt, replace, and their outcomes.

Each turn body runs in a task owned by the session. ``handle.interrupt()`` aborts a turn
(its in-flight tool calls are cancelled on the server); starting a turn while one runs
replaces it (``on_busy="replace"``, the default); closing the session shuts a running
turn down. Every turn ends with exactly one `TurnOutcome`, after its end hooks ran.
"""

import anyio

from codex_runtime import ServerConfig, Session, Turn, TurnHeaders, TurnOutcome
from codex_runtime.testing import RecordingServer


def show(turn: Turn, outcome: TurnOutcome) -> None:
    reason = f" ({outcome.abort_reason.value})" if outcome.abort_reason else ""
    error = f": {outcome.error!r}" if outcome.error else ""
    calls = ", ".join(f"{c.tool}={'ok' if c.ok else c.error}" for c in turn.tool_calls)
    print(f"turn {turn.index}: {outcome.state.value}{reason}{error}  [{calls}]")


async def main() -> None:
    async with RecordingServer("apps") as server:
        apps = ServerConfig(name="apps", url=server.url, apps=True)

        async def quick(turn: Turn) -> None:
            await turn.call_tool("apps", "echo", {"text": f"turn {turn.index}"})

        async def long_running(turn: Turn) -> None:
            # `block` waits on the server until released: a call that stays in flight.
            await turn.call_tool("apps", "block", {"key": f"turn-{turn.index}"})

        async def broken(turn: Turn) -> None:
            await turn.call_tool("apps", "echo", {"text": "about to fail"})
            raise ValueError("the model returned nonsense")

        async with Session([apps], hooks=[TurnHeaders()]) as session:
            handle = await session.start_turn(quick)  # returns once the turn is running
            show(handle.turn, await handle.wait())

            handle = await session.start_turn(long_running)
            await server.wait_for_calls("block", 1)  # the call is in flight on the server
            handle.interrupt()
            show(handle.turn, await handle.wait())

            first = await session.start_turn(long_running)
            await server.wait_for_calls("block", 2)
            second = await session.start_turn(quick)  # replaces the first one
            show(first.turn, await first.wait())
            show(second.turn, await second.wait())

            handle = await session.start_turn(broken)
            show(handle.turn, await handle.wait())

            last = await session.start_turn(long_running)
            await server.wait_for_calls("block", 3)
        show(last.turn, await last.wait())  # the session closed while it ran

        await server.wait_for_calls("block", 3, outcome="cancelled")
        print("the server saw:", [f"{c.tool}:{c.outcome}" for c in server.tool_calls()])


if __name__ == "__main__":
    anyio.run(main)

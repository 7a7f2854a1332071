"""Tests of the hook runner and turn lifecycle semantics (no network needed).

Sessions here have no servers, or `McpClient`s that are built but never connected: turn
entries are set and cleared on a client without a connection. Every test runs on asyncio
and trio.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from codex_runtime import (
    AbortReason,
    InvalidMetadataError,
    McpClient,
    ServerConfig,
    Session,
    Turn,
    TurnHandle,
    TurnHeaders,
    TurnHook,
    TurnInProgressError,
    TurnOutcome,
    TurnState,
    TurnStateError,
    current_turn_id,
)
from codex_runtime.headers import Headers

pytestmark = pytest.mark.anyio


class Recorder:
    """A hook that appends ``(name, phase, turn index)`` to a shared log."""

    def __init__(self, name: str, log: list[tuple[str, str, int]], *, fail: str | None = None) -> None:
        self.name = name
        self.log = log
        self.fail = fail
        self.outcomes: list[TurnOutcome] = []

    async def on_turn_start(self, turn: Turn) -> None:
        self.log.append((self.name, "start", turn.index))
        if self.fail == "start":
            raise ValueError(f"{self.name} start failed")

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        await anyio.lowlevel.checkpoint()  # end hooks run shielded even in a cancelled task
        self.log.append((self.name, "end", turn.index))
        self.outcomes.append(outcome)
        if self.fail == "end":
            raise RuntimeError(f"{self.name} end failed")


class StartOnly:
    def __init__(self, log: list[tuple[str, str, int]]) -> None:
        self.log = log

    async def on_turn_start(self, turn: Turn) -> None:
        self.log.append(("start-only", "start", turn.index))


class EndOnly:
    def __init__(self, log: list[tuple[str, str, int]]) -> None:
        self.log = log

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        self.log.append(("end-only", "end", turn.index))


def unconnected(name: str, *, apps: bool) -> McpClient:
    return McpClient(ServerConfig(name=name, url=f"http://127.0.0.1:9/{name}", apps=apps))


# -- order -----------------------------------------------------------------------------------------


async def test_start_hooks_run_in_order_and_end_hooks_in_reverse() -> None:
    log: list[tuple[str, str, int]] = []
    session = Session(hooks=[Recorder("a", log), StartOnly(log), EndOnly(log)])

    @session.on_turn_start
    async def started(turn: Turn) -> None:
        log.append(("fn", "start", turn.index))

    @session.on_turn_end
    async def ended(turn: Turn, outcome: TurnOutcome) -> None:
        log.append(("fn", "end", turn.index))

    async with session:
        async with session.turn() as turn:
            log.append(("body", turn.state.value, turn.index))
    assert log == [
        ("a", "start", 1),
        ("start-only", "start", 1),
        ("fn", "start", 1),
        ("body", "running", 1),
        ("fn", "end", 1),
        ("end-only", "end", 1),
        ("a", "end", 1),
    ]
    assert turn.outcome is not None and turn.outcome.ok
    assert isinstance(Recorder("x", []), TurnHook)


async def test_hooks_and_body_run_bound_to_the_turn_and_share_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[tuple[str, str | None, str]] = []
    session = Session()

    @session.on_turn_start
    async def set_var(turn: Turn) -> None:
        var.set(f"from start of {turn.index}")
        seen.append(("start", current_turn_id(), turn.id))

    @session.on_turn_end
    async def check(turn: Turn, outcome: TurnOutcome) -> None:
        seen.append(("end", current_turn_id(), turn.id))

    values: list[str] = []

    async def body(turn: Turn) -> None:
        values.append(var.get())
        seen.append(("body", current_turn_id(), turn.id))

    async with session:
        async with session.turn() as turn:
            await body(turn)
        handle = await session.start_turn(body)
        await handle.wait()
    assert values == ["from start of 1", "from start of 2"]
    assert all(bound == turn_id for _, bound, turn_id in seen)
    assert current_turn_id() is None


# -- end hooks always run ------------------------------------------------------------------------


async def test_a_failing_start_hook_fails_the_turn_and_started_hooks_still_end() -> None:
    log: list[tuple[str, str, int]] = []
    a, b, c = Recorder("a", log), Recorder("b", log, fail="start"), Recorder("c", log)
    ran = []
    async with Session(hooks=[a, b, c]) as session:
        with pytest.raises(ValueError, match="b start failed"):
            async with session.turn() as turn:
                ran.append(turn)
        assert ran == []
        assert log == [("a", "start", 1), ("b", "start", 1), ("b", "end", 1), ("a", "end", 1)]
        outcome = a.outcomes[0]
        assert outcome.state is TurnState.FAILED
        assert isinstance(outcome.error, ValueError)
        [failure] = outcome.hook_errors
        assert (failure.hook, failure.phase) == ("Recorder", "start")

        log.clear()

        async def body(turn: Turn) -> None:
            ran.append(turn)

        handle = await session.start_turn(body)
        outcome = await handle.wait()
        assert outcome.state is TurnState.FAILED and isinstance(outcome.error, ValueError)
        assert ran == []
        assert handle.turn.state is TurnState.FAILED
        assert session.current_turn is None


async def test_end_hooks_run_when_the_body_raises() -> None:
    log: list[tuple[str, str, int]] = []
    hook = Recorder("a", log)
    error = KeyError("boom")
    async with Session(hooks=[hook]) as session:
        with pytest.raises(KeyError) as info:
            async with session.turn():
                raise error
        assert info.value is error

        async def body(turn: Turn) -> None:
            raise error

        outcome = await (await session.start_turn(body)).wait()
    assert log == [("a", "start", 1), ("a", "end", 1), ("a", "start", 2), ("a", "end", 2)]
    for got in (hook.outcomes[0], outcome):
        assert got.state is TurnState.FAILED and got.error is error and got.abort_reason is None


async def test_end_hooks_run_shielded_when_the_turn_is_cancelled_from_outside() -> None:
    log: list[tuple[str, str, int]] = []
    hook = Recorder("a", log)
    after: list[str] = []
    async with Session(hooks=[hook]) as session:
        with anyio.CancelScope() as scope:
            async with session.turn() as turn:
                scope.cancel()
                await anyio.sleep_forever()
            after.append("not reached: the cancellation goes on")
        assert scope.cancelled_caught
        assert after == []
    assert log == [("a", "start", 1), ("a", "end", 1)]
    assert turn.outcome is not None
    assert (turn.outcome.state, turn.outcome.abort_reason) == (TurnState.ABORTED, AbortReason.INTERRUPTED)


async def test_end_hooks_run_when_the_task_is_cancelled_during_start_hooks() -> None:
    log: list[tuple[str, str, int]] = []
    entered = anyio.Event()
    recorder = Recorder("a", log)
    session = Session(hooks=[recorder])

    @session.on_turn_start
    async def slow(turn: Turn) -> None:
        if turn.index == 1:
            entered.set()
            await anyio.sleep_forever()

    async with session:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                async with session.turn():
                    raise AssertionError("the body never runs")

            tg.start_soon(run)
            await entered.wait()
            tg.cancel_scope.cancel()
        assert session.current_turn is None
        async with session.turn() as second:  # the session is usable again
            pass
    assert log[:2] == [("a", "start", 1), ("a", "end", 1)]
    first_outcome = recorder.outcomes[0]
    assert (first_outcome.state, first_outcome.abort_reason) == (TurnState.ABORTED, AbortReason.INTERRUPTED)
    assert second.index == 2


async def test_end_hook_failures_are_collected_logged_and_never_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[tuple[str, str, int]] = []
    hooks = [Recorder("a", log), Recorder("b", log, fail="end"), Recorder("c", log, fail="end")]
    with caplog.at_level(logging.WARNING, logger="codex_runtime.session"):
        async with Session(hooks=hooks) as session:
            async with session.turn() as turn:
                pass
    assert [entry for entry in log if entry[1] == "end"] == [
        ("c", "end", 1),
        ("b", "end", 1),
        ("a", "end", 1),
    ]
    assert turn.outcome is not None
    assert turn.outcome.state is TurnState.COMPLETED and not turn.outcome.ok
    assert [(f.phase, str(f.error)) for f in turn.outcome.hook_errors] == [
        ("end", "c end failed"),
        ("end", "b end failed"),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("on_turn_end of Recorder failed" in m for m in messages) == 2


async def test_end_hooks_are_bounded_by_the_timeout() -> None:
    log: list[tuple[str, str, int]] = []
    session = Session(hooks=[Recorder("a", log)], end_hook_timeout=0.05)

    @session.on_turn_end
    async def stuck(turn: Turn, outcome: TurnOutcome) -> None:
        await anyio.sleep_forever()

    async with session:
        async with session.turn() as turn:
            pass
    assert log == [("a", "start", 1), ("a", "end", 1)]
    assert turn.outcome is not None
    [failure] = turn.outcome.hook_errors
    assert failure.hook.endswith("stuck") and isinstance(failure.error, TimeoutError)


# -- aborts ------------------------------------------------------------------------------------


async def test_an_aborted_body_gets_the_grace_period_then_is_cancelled() -> None:
    async with Session(abort_grace=10) as session:
        proceed = anyio.Event()
        steps: list[str] = []

        async def finishes_within_grace(turn: Turn) -> None:
            await proceed.wait()
            steps.append(f"still running after the abort ({turn.abort_reason})")

        handle = await session.start_turn(finishes_within_grace)
        handle.interrupt()
        proceed.set()
        outcome = await handle.wait()
        assert steps == ["still running after the abort (AbortReason.INTERRUPTED)"]
        assert (outcome.state, outcome.abort_reason) == (TurnState.ABORTED, AbortReason.INTERRUPTED)

    async with Session(abort_grace=0.01) as session:

        async def never_finishes(turn: Turn) -> None:
            await anyio.sleep_forever()

        handle = await session.start_turn(never_finishes)
        handle.interrupt()
        outcome = await handle.wait()
        assert (outcome.state, outcome.abort_reason) == (TurnState.ABORTED, AbortReason.INTERRUPTED)


async def test_aborting_twice_is_a_no_op_and_there_is_one_outcome() -> None:
    log: list[tuple[str, str, int]] = []
    async with Session(hooks=[Recorder("a", log)], abort_grace=0) as session:

        async def body(turn: Turn) -> None:
            await anyio.sleep_forever()

        handle = await session.start_turn(body)
        handle.interrupt()
        handle.turn.abort(AbortReason.SHUTDOWN)
        handle.interrupt()
        outcome = await handle.wait()
        handle.interrupt()  # after the end: still a no-op
        assert outcome is handle.turn.outcome is handle.outcome
        assert outcome.abort_reason is AbortReason.INTERRUPTED
        assert handle.done
    assert log == [("a", "start", 1), ("a", "end", 1)]


async def test_replacement_waits_for_the_old_turns_end_hooks() -> None:
    log: list[tuple[str, str, int]] = []
    async with Session(hooks=[Recorder("a", log)]) as session:

        async def body(turn: Turn) -> None:
            await anyio.sleep_forever()

        first = await session.start_turn(body)
        async with session.turn() as second:
            log.append(("body", "run", second.index))
        outcome = await first.wait()
    assert log == [("a", "start", 1), ("a", "end", 1), ("a", "start", 2), ("body", "run", 2), ("a", "end", 2)]
    assert (outcome.state, outcome.abort_reason) == (TurnState.ABORTED, AbortReason.REPLACED)


async def test_a_turn_replaced_while_its_start_hooks_run_never_runs_its_body() -> None:
    log: list[tuple[str, str, int]] = []
    entered = anyio.Event()
    session = Session(hooks=[Recorder("a", log)], abort_grace=0.01)

    @session.on_turn_start
    async def slow_first_start(turn: Turn) -> None:
        if turn.index == 1:
            entered.set()
            await anyio.sleep_forever()

    ran: list[int] = []

    async def body(turn: Turn) -> None:
        ran.append(turn.index)

    async with session:
        async with anyio.create_task_group() as tg:
            handles: list[Any] = []

            async def start_first() -> None:
                handles.append(await session.start_turn(body))

            tg.start_soon(start_first)
            await entered.wait()
            second = await session.start_turn(body)
        first_outcome = await handles[0].wait()
        await second.wait()
    assert (first_outcome.state, first_outcome.abort_reason) == (TurnState.ABORTED, AbortReason.REPLACED)
    assert handles[0].turn.started_at is not None
    assert ran == [2]
    assert log == [("a", "start", 1), ("a", "end", 1), ("a", "start", 2), ("a", "end", 2)]


async def test_a_turn_block_interrupted_while_its_start_hooks_run_is_cancelled_at_once() -> None:
    log: list[tuple[str, str, int]] = []
    entered = anyio.Event()
    session = Session(hooks=[Recorder("a", log)], abort_grace=0.01)

    @session.on_turn_start
    async def slow(turn: Turn) -> None:
        entered.set()
        await anyio.sleep_forever()

    reached: list[str] = []
    async with session:
        async with anyio.create_task_group() as tg:
            turns: list[Turn] = []

            async def run() -> None:
                async with session.turn() as turn:
                    turns.append(turn)
                    await anyio.sleep_forever()  # cancelled at once: the turn is aborted
                    reached.append("never")
                reached.append("after the block")

            tg.start_soon(run)
            await entered.wait()
            session.current_turn.interrupt()  # type: ignore[union-attr]
    [turn] = turns
    assert reached == ["after the block"]
    assert turn.outcome is not None
    assert (turn.outcome.state, turn.outcome.abort_reason) == (TurnState.ABORTED, AbortReason.INTERRUPTED)
    assert log == [("a", "start", 1), ("a", "end", 1)]


async def test_shutdown_aborts_the_running_turn_and_ends_it() -> None:
    log: list[tuple[str, str, int]] = []
    async with Session(hooks=[Recorder("a", log)]) as session:

        async def body(turn: Turn) -> None:
            await anyio.sleep_forever()

        handle = await session.start_turn(body)
    outcome = await handle.wait()
    assert (outcome.state, outcome.abort_reason) == (TurnState.ABORTED, AbortReason.SHUTDOWN)
    assert log == [("a", "start", 1), ("a", "end", 1)]
    with pytest.raises(RuntimeError, match=r"not open|closing"):
        await session.start_turn(body)


async def test_concurrent_replacements_end_every_turn_but_the_last() -> None:
    log: list[tuple[str, str, int]] = []
    async with Session(hooks=[Recorder("a", log)]) as session:

        async def body(turn: Turn) -> None:
            await anyio.sleep_forever()

        first = await session.start_turn(body)
        handles: list[TurnHandle] = []
        async with anyio.create_task_group() as tg:
            for _ in range(2):

                async def start() -> None:
                    handles.append(await session.start_turn(body))

                tg.start_soon(start)
        second, third = sorted(handles, key=lambda h: h.turn.index)
        outcomes = [await h.wait() for h in (first, second)]
        assert [(o.state, o.abort_reason) for o in outcomes] == [
            (TurnState.ABORTED, AbortReason.REPLACED)
        ] * 2
        assert session.current_turn is third.turn
        assert third.turn.state is TurnState.RUNNING
    assert (await third.wait()).abort_reason is AbortReason.SHUTDOWN
    assert log == [("a", phase, i) for i in (1, 2, 3) for phase in ("start", "end")]


async def test_a_turn_waiting_to_replace_one_fails_when_the_session_closes() -> None:
    release = anyio.Event()
    ending = anyio.Event()
    session = Session()

    @session.on_turn_end
    async def slow_end(turn: Turn, outcome: TurnOutcome) -> None:
        if turn.index == 1:
            ending.set()
            await release.wait()

    errors: list[BaseException] = []

    async def replace() -> None:
        try:
            async with session.turn():
                raise AssertionError("never started")
        except RuntimeError as exc:
            errors.append(exc)

    async def body(turn: Turn) -> None:
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        async with session:
            first = await session.start_turn(body)
            tg.start_soon(replace)
            await ending.wait()  # the first turn is ending; the second waits for it
            release.set()
    assert (await first.wait()).abort_reason is AbortReason.REPLACED
    assert len(errors) == 1 and "closing" in str(errors[0])


async def test_a_timeout_aborts_a_turn_stuck_in_its_start_hooks() -> None:
    session = Session(abort_grace=0.01)

    @session.on_turn_start
    async def stuck(turn: Turn) -> None:
        await anyio.sleep_forever()

    async with session:
        async with session.turn(timeout=0.05) as turn:
            assert turn.state is TurnState.PENDING  # it never ran
            await anyio.lowlevel.checkpoint()  # the block is cancelled at its first checkpoint
            raise AssertionError("not reached")
    assert turn.outcome is not None
    assert (turn.outcome.state, turn.outcome.abort_reason) == (TurnState.ABORTED, AbortReason.TIMEOUT)


async def test_a_turn_cannot_be_started_from_inside_the_running_turn() -> None:
    async with Session() as session:
        async with session.turn() as turn:
            with pytest.raises(TurnInProgressError, match="inside"):
                async with session.turn():
                    pass

            async def body(inner: Turn) -> None:
                pass

            with pytest.raises(TurnInProgressError, match="inside"):
                await session.start_turn(body)
        assert turn.outcome is not None and turn.outcome.state is TurnState.COMPLETED


# -- the state machine ---------------------------------------------------------------------------


def test_only_the_legal_transitions_are_allowed() -> None:
    legal = {
        (TurnState.PENDING, TurnState.RUNNING),
        (TurnState.PENDING, TurnState.FAILED),
        (TurnState.PENDING, TurnState.ABORTED),
        (TurnState.RUNNING, TurnState.COMPLETED),
        (TurnState.RUNNING, TurnState.FAILED),
        (TurnState.RUNNING, TurnState.ABORTED),
    }
    paths = {
        TurnState.PENDING: [],
        TurnState.RUNNING: [TurnState.RUNNING],
        TurnState.COMPLETED: [TurnState.RUNNING, TurnState.COMPLETED],
        TurnState.FAILED: [TurnState.FAILED],
        TurnState.ABORTED: [TurnState.RUNNING, TurnState.ABORTED],
    }
    session = Session()
    for source, path in paths.items():
        for target in TurnState:
            turn = Turn(session, 1, {}, Headers(), None)
            for step in path:
                turn._transition(step)
            assert turn.state is source
            if (source, target) in legal:
                turn._transition(target)
                assert turn.state is target
            else:
                with pytest.raises(TurnStateError, match="illegal turn transition"):
                    turn._transition(target)
                assert turn.state is source


async def test_an_ended_turn_refuses_tool_calls() -> None:
    async with Session() as session:
        async with session.turn() as turn:
            assert turn.state is TurnState.RUNNING
        with pytest.raises(TurnStateError, match="completed"):
            await turn.call_tool("apps", "echo", {})
    assert turn.started_at is not None and turn.ended_at is not None
    assert turn.outcome is not None and turn.outcome.duration >= 0


# -- TurnHeaders without a network ------------------------------------------------------------


async def test_turn_headers_set_entries_on_apps_clients_only_and_clear_them() -> None:
    apps, other = unconnected("apps", apps=True), unconnected("other", apps=False)
    async with Session(clients=[apps, other], hooks=[TurnHeaders()]) as session:
        assert session.apps_clients == [apps]
        async with session.turn() as turn:
            assert apps.turn_entry_ids() == {turn.id}
            assert other.turn_entry_ids() == frozenset()
        assert apps.turn_entry_ids() == frozenset()


@pytest.mark.parametrize("key", ["session_id", "thread_id", "turn_id", "turn_started_at_unix_ms"])
async def test_overriding_a_reserved_key_fails_at_turn_start(key: str) -> None:
    apps = unconnected("apps", apps=True)
    async with Session(clients=[apps], hooks=[TurnHeaders()]) as session:
        with pytest.raises(InvalidMetadataError, match=f"reserved key '{key}'"):
            async with session.turn(metadata={key: "x"}):
                raise AssertionError("not reached")
        assert apps.turn_entry_ids() == frozenset()


def test_bad_hooks_and_options_are_refused() -> None:
    with pytest.raises(TypeError, match="not a turn hook"):
        Session(hooks=[object()])
    with pytest.raises(ValueError, match="on_busy"):
        Session(on_busy="queue")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="abort_grace"):
        Session(abort_grace=-1)
    with pytest.raises(ValueError, match="mode"):
        TurnHeaders(mode="cookies")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        Session(clients=[unconnected("a", apps=True), unconnected("a", apps=False)])


async def test_turn_arguments_are_validated_before_a_turn_exists() -> None:
    async with Session() as session:
        with pytest.raises(TypeError, match="keys must be strings"):
            async with session.turn(metadata={1: "x"}):  # type: ignore[dict-item]
                pass
        with pytest.raises(ValueError, match="timeout"):
            await session.start_turn(lambda turn: anyio.lowlevel.checkpoint(), timeout=-1)
        assert session.current_turn is None
        async with session.turn(forwarded_headers=[("x-a", "1"), ("x-a", "2")]) as turn:
            assert turn.forwarded_headers.get_all("x-a") == ["1", "2"]
        assert turn.index == 1

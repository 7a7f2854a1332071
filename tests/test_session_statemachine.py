"""A hypothesis stateful test of the turn state machine.

Random sequences of start, replace, interrupt, fail and finish steps (plus repeated
interrupts and illegal transitions) drive one `Session`, and after every step the model
is checked: at most one live turn, exactly one outcome per turn with the expected state
and abort reason, each turn's end hook run once and before the next turn's start hook,
and no turn entry left on the Apps client but the running turn's.

The session runs on an event loop in a blocking portal (asyncio or trio), so the steps
themselves are plain functions; no servers are needed (the Apps client is never
connected: turn entries live on the client object).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from codex_runtime import (
    AbortReason,
    McpClient,
    ServerConfig,
    Session,
    Turn,
    TurnHandle,
    TurnHeaders,
    TurnOutcome,
    TurnState,
    TurnStateError,
)


@attrs.define
class Control:
    """How a turn body ends: when ``go`` is set, it returns (or raises if ``fail``)."""

    go: anyio.Event = attrs.field(factory=anyio.Event)
    fail: bool = False


@attrs.define
class ModelTurn:
    handle: TurnHandle
    control: Control
    expected: tuple[TurnState, AbortReason | None] | None = None  # None while running


class HookLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    async def on_turn_start(self, turn: Turn) -> None:
        self.events.append(("start", turn.index))

    async def on_turn_end(self, turn: Turn, outcome: TurnOutcome) -> None:
        await anyio.lowlevel.checkpoint()
        self.events.append(("end", turn.index))


class TurnMachine(RuleBasedStateMachine):
    backend: ClassVar[str] = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = anyio.from_thread.start_blocking_portal(self.backend)
        self.portal = self._portal_cm.__enter__()
        self.apps = McpClient(ServerConfig(name="apps", url="http://127.0.0.1:9/mcp", apps=True))
        self.hooks = HookLog()
        self.turns: list[ModelTurn] = []
        self.session: Session | None = None
        self._session_cm: Any = None

    # -- helpers ---------------------------------------------------------------------------

    @property
    def running(self) -> ModelTurn | None:
        live = [t for t in self.turns if t.expected is None]
        assert len(live) <= 1
        return live[0] if live else None

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, *args)

    def start(self) -> None:
        assert self.session is not None
        control = Control()

        async def body(turn: Turn) -> None:
            await control.go.wait()
            if control.fail:
                raise ValueError("the body failed")

        previous = self.running
        handle: TurnHandle = self.call(self.session.start_turn, body)
        if previous is not None:
            previous.expected = (TurnState.ABORTED, AbortReason.REPLACED)
        self.turns.append(ModelTurn(handle, control))
        assert handle.turn.state is TurnState.RUNNING

    def end_with(self, fail: bool) -> None:
        current = self.running
        assert current is not None
        current.control.fail = fail
        self.call(current.control.go.set)
        self.call(current.handle.wait)
        current.expected = (TurnState.FAILED, None) if fail else (TurnState.COMPLETED, None)

    # -- steps -------------------------------------------------------------------------------

    @initialize(grace=st.sampled_from([0.0, 0.002]))
    def open_session(self, grace: float) -> None:
        session = Session(clients=[self.apps], hooks=[TurnHeaders(), self.hooks], abort_grace=grace)
        self._session_cm = self.portal.wrap_async_context_manager(session)
        self.session = self._session_cm.__enter__()

    @precondition(lambda self: self.running is None)
    @rule()
    def start_turn(self) -> None:
        self.start()

    @precondition(lambda self: self.running is not None)
    @rule()
    def replace_turn(self) -> None:
        self.start()

    @precondition(lambda self: self.running is not None)
    @rule()
    def interrupt(self) -> None:
        current = self.running
        assert current is not None
        self.call(current.handle.interrupt)
        self.call(current.handle.wait)
        current.expected = (TurnState.ABORTED, AbortReason.INTERRUPTED)

    @precondition(lambda self: self.running is not None)
    @rule()
    def fail(self) -> None:
        self.end_with(fail=True)

    @precondition(lambda self: self.running is not None)
    @rule()
    def finish(self) -> None:
        self.end_with(fail=False)

    @precondition(lambda self: any(t.expected is not None for t in self.turns))
    @rule(data=st.data(), reason=st.sampled_from(AbortReason))
    def abort_an_ended_turn(self, data: st.DataObject, reason: AbortReason) -> None:
        ended = data.draw(st.sampled_from([t for t in self.turns if t.expected is not None]))
        before = ended.handle.outcome
        self.call(ended.handle.turn.abort, reason)
        assert ended.handle.outcome is before

    @precondition(lambda self: bool(self.turns))
    @rule(data=st.data(), new_state=st.sampled_from(TurnState))
    def illegal_transition(self, data: st.DataObject, new_state: TurnState) -> None:
        turn = data.draw(st.sampled_from(self.turns)).handle.turn
        before = turn.state
        if before is TurnState.RUNNING and new_state.is_terminal:
            return  # legal, but only the session may end a running turn
        with pytest.raises(TurnStateError):
            turn._transition(new_state)
        assert turn.state is before

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def outcomes_match_the_model(self) -> None:
        for model in self.turns:
            outcome = model.handle.outcome
            if model.expected is None:
                assert outcome is None
                assert model.handle.turn.state is TurnState.RUNNING
                continue
            assert outcome is not None
            assert (outcome.state, outcome.abort_reason) == model.expected
            assert model.handle.turn.state is outcome.state
            assert outcome.hook_errors == ()
            if outcome.state is TurnState.FAILED:
                assert isinstance(outcome.error, ValueError)
            else:
                assert outcome.error is None

    @invariant()
    def one_live_turn_and_its_entry_only(self) -> None:
        if self.session is None:
            return
        current = self.running
        expected_current = current.handle.turn if current is not None else None
        assert self.session.current_turn is expected_current
        live_ids = {expected_current.id} if expected_current is not None else set()
        assert self.apps.turn_entry_ids() == live_ids

    @invariant()
    def hooks_are_sequential(self) -> None:
        expected: list[tuple[str, int]] = []
        for index, model in enumerate(self.turns, start=1):
            assert model.handle.turn.index == index
            expected.append(("start", index))
            if model.expected is not None:
                expected.append(("end", index))
        assert self.hooks.events == expected

    def teardown(self) -> None:
        try:
            if self._session_cm is not None:
                current = self.running
                self._session_cm.__exit__(None, None, None)
                if current is not None:
                    current.expected = (TurnState.ABORTED, AbortReason.SHUTDOWN)
                self.session = None
                self.outcomes_match_the_model()
                self.hooks_are_sequential()
                assert self.apps.turn_entry_ids() == frozenset()
        finally:
            self._portal_cm.__exit__(None, None, None)


SETTINGS = settings(
    max_examples=40,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class AsyncioTurnMachine(TurnMachine):
    backend = "asyncio"


class TrioTurnMachine(TurnMachine):
    backend = "trio"


TestTurnStateMachineAsyncio = AsyncioTurnMachine.TestCase
TestTurnStateMachineAsyncio.settings = SETTINGS
TestTurnStateMachineTrio = TrioTurnMachine.TestCase
TestTurnStateMachineTrio.settings = SETTINGS

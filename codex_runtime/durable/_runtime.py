"""`DurableRuntime`: agent turns as DBOS workflows that survive the process running them."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.abc
import anyio.to_thread
import attrs
import sniffio
from dbos import (
    DBOS,
    DBOSConfig,
    DBOSPortableJSONSerializer,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowSerializationFormat,
)

from .._session_store import SessionStore, scrub
from .._version import __version__
from ..agent import AgentError, Model
from ..headers import CodexRuntimeError
from ..session import AbortReason, Session, TurnState
from ._loop import DurableLoop
from ._workers import Workers

__all__ = ["DurableError", "DurableRuntime", "DurableTurnResult", "ModelFactory", "SessionFactory"]

logger = logging.getLogger("codex_runtime.durable")

#: Builds the `Session` of a turn: ``factory(session_id, settings, store)`` must return an
#: unopened ``Session(..., store=store, session_id=session_id)``.
SessionFactory = Callable[[str, Mapping[str, Any], SessionStore], Session]
#: Builds the `Model` of a turn from its settings.
ModelFactory = Callable[[Mapping[str, Any]], Model]

WORKFLOW_NAME = "codex_runtime.turn"
QUEUE_NAME = "codex_runtime_turns"
# Recovery runs only workflows of the same application version: tie it to the code.
_APP_VERSION = f"codex-runtime-{__version__}-turn-1"

_active: DurableRuntime | None = None


class DurableError(CodexRuntimeError):
    """The durable layer cannot do what was asked (not on asyncio, a second runtime in one
    process, a factory that does not build what it must, settings holding a secret...)."""


@attrs.frozen
class DurableTurnResult:
    """How a durable turn ended. ``state`` is the turn's `TurnState`; ``error`` says why a
    ``FAILED`` turn failed (the model, ``max_steps``, a start hook, a session that could not
    open); ``text`` is the model's final answer."""

    turn_id: str
    session_id: str
    index: int
    state: TurnState
    text: str | None = None
    abort_reason: AbortReason | None = None
    error: str | None = None
    steps: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DurableTurnResult:
        reason = data.get("abort_reason")
        return cls(
            turn_id=data["turn_id"],
            session_id=data["session_id"],
            index=int(data.get("index") or 0),
            state=TurnState(data["state"]),
            text=data.get("text"),
            abort_reason=AbortReason(reason) if reason else None,
            error=data.get("error"),
            steps=int(data.get("steps") or 0),
        )


def _runtime() -> DurableRuntime:
    if _active is None:
        raise DurableError("a durable turn ran with no DurableRuntime open in this process")
    return _active


@DBOS.workflow(name=WORKFLOW_NAME, serialization_type=WorkflowSerializationFormat.PORTABLE)
async def _turn_workflow(
    session_id: str, user_input: str, settings: dict[str, Any], metadata: dict[str, Any]
) -> dict[str, Any]:
    return await _runtime()._run_workflow(session_id, user_input, settings, metadata)


def _check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise TypeError("settings must be a mapping of JSON values")
    try:
        plain = json.loads(json.dumps(dict(settings)))
    except (TypeError, ValueError) as exc:
        raise DurableError(f"settings must be JSON values ({exc})") from None
    if scrub(plain) != plain:
        raise DurableError(
            "settings are stored with the turn and must not hold secrets (a key named like a "
            "token, key, secret or password): let the model factory read them from the environment"
        )
    return dict(plain)


def _check_loop_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    plain = dict(options or {})
    unknown = set(plain) - {"max_steps", "instructions", "parallel_tool_calls", "on_event"}
    if unknown:
        raise ValueError(
            "loop_options may set max_steps, instructions, parallel_tool_calls, on_event; "
            f"not {sorted(unknown)}"
        )
    return plain


def _route_dbos_logs() -> None:
    """Send DBOS's log records through standard logging (logger ``dbos``) like ours, instead
    of the console handler DBOS would install on the ``sys.stderr`` of the moment."""
    dbos_logs = logging.getLogger("dbos")
    for handler in list(dbos_logs.handlers):
        if handler.name == "__dbos_console_log_handler__":
            dbos_logs.removeHandler(handler)
    if not dbos_logs.handlers:
        dbos_logs.addHandler(logging.NullHandler())  # DBOS adds its console handler only when none
    dbos_logs.propagate = True


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class DurableRuntime:
    """Runs agent turns as DBOS workflows, so that a turn survives the process running it.

    Each turn is a workflow; each model call and each tool call in it is a step. When the
    process dies mid-turn, the turn resumes when a runtime on the same database starts
    again (or, with ``takeover_after``, on another live worker): finished steps are not run
    again, and a tool call that was in flight is resent only when the tool is annotated
    ``readOnlyHint`` or ``idempotentHint`` (otherwise the model is told its outcome is
    unknown). The resumed turn keeps its id and index, so `TurnHeaders` sets the same turn
    entries again. Turns of one session run one at a time across all workers (a DBOS queue
    partitioned by session id).

    Sessions and models are built by the factories given here, from each turn's
    ``settings`` (JSON, stored with the turn: a configuration path, a model name; never a
    secret), so a recovering process rebuilds them from configuration. Sessions stay open
    for the runtime's life and are reused by later turns of the same session.

    DBOS runs on asyncio: so does this runtime (`DurableError` on trio). One runtime per
    process.

    Args:
        store: The `SessionStore` the sessions record into (the factory passes it on).
        sessions: ``factory(session_id, settings, store) -> Session`` (unopened).
        models: ``factory(settings) -> Model``.
        database_url: DBOS's database: ``postgresql://...`` to share turns between worker
            processes, or ``sqlite:///path``. Default: a SQLite file beside a `SqliteStore`
            (``<store file>.dbos``).
        executor_id: This worker's name in the database. A worker restarted with the same
            id resumes its own unfinished turns at start. Default ``"local"``.
        takeover_after: When set (seconds), workers write a heartbeat to the database and a
            live worker takes over the unfinished turns of one silent for this long.
        loop_options: Keyword arguments for each turn's `AgentLoop` (``max_steps``,
            ``instructions``, ``parallel_tool_calls``, ``on_event``), or a function of the
            turn's settings returning them.
        poll_interval: Seconds between two looks at the turn queue.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        sessions: SessionFactory,
        models: ModelFactory,
        database_url: str | None = None,
        executor_id: str | None = None,
        takeover_after: float | None = None,
        heartbeat: float = 1.0,
        loop_options: Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        poll_interval: float = 0.05,
        name: str = "codex-runtime",
    ) -> None:
        if not isinstance(store, SessionStore):
            raise TypeError("DurableRuntime() needs a SessionStore (e.g. SqliteStore)")
        if not callable(sessions) or not callable(models):
            raise TypeError("sessions and models must be factories (callables)")
        if database_url is None:
            path = getattr(store, "path", None)
            if not isinstance(path, Path):
                raise DurableError("give database_url: the store is not a file to put DBOS's database beside")
            database_url = _sqlite_url(path.with_name(path.name + ".dbos"))
        if not isinstance(database_url, str) or not database_url.startswith(("sqlite:///", "postgresql://")):
            raise DurableError("database_url must be a postgresql:// or sqlite:/// URL")
        for label, value in (("heartbeat", heartbeat), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{label} must be a positive number of seconds")
        if takeover_after is not None and (
            isinstance(takeover_after, bool)
            or not isinstance(takeover_after, int | float)
            or takeover_after <= heartbeat
        ):
            raise ValueError("takeover_after must be a number of seconds longer than heartbeat")
        if not callable(loop_options):
            _check_loop_options(loop_options)
        self.store = store
        self.database_url = database_url
        self.executor_id = executor_id or os.environ.get("DBOS__VMID") or "local"
        self.takeover_after = takeover_after
        self.heartbeat = float(heartbeat)
        self.name = name
        self._sessions_factory = sessions
        self._models_factory = models
        self._loop_options = loop_options
        self._poll = float(poll_interval)
        self._tg: anyio.abc.TaskGroup | None = None
        self._queue: Queue | None = None
        self._closing = anyio.Event()
        self._sessions: dict[tuple[str, str], Session] = {}
        self._opening: dict[tuple[str, str], anyio.Event] = {}
        self._scopes: set[anyio.CancelScope] = set()
        self._workers: Workers | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<DurableRuntime executor={self.executor_id!r}>"

    # -- life --------------------------------------------------------------------------

    async def __aenter__(self) -> DurableRuntime:
        global _active
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = "none"
        if library != "asyncio":
            raise DurableError(
                f"the durable layer runs on asyncio only (DBOS is asyncio-based), not {library}"
            )
        if _active is not None:
            raise DurableError("a DurableRuntime is already open in this process (DBOS is one per process)")
        _active = self
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            config: DBOSConfig = {
                "name": self.name,
                "system_database_url": self.database_url,
                "application_version": _APP_VERSION,
                "executor_id": self.executor_id,
                "log_level": "WARNING",
                "serializer": DBOSPortableJSONSerializer(),
            }
            _route_dbos_logs()
            DBOS(config=config)
            # Launched from this loop, so that DBOS runs the workflows (recovered ones too) on it.
            DBOS.launch()
            self._queue = await DBOS.register_queue_async(
                QUEUE_NAME,
                partition_concurrency=1,
                polling_interval_sec=self._poll,
                on_conflict="always_update",
            )
            if self.takeover_after is not None:
                # After the launch: DBOS creates the database.
                self._workers = await anyio.to_thread.run_sync(Workers, self.database_url, self.executor_id)
                await anyio.to_thread.run_sync(self._workers.beat)
                tg.start_soon(self._watch_workers)
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        global _active
        self._stopping = True
        with anyio.CancelScope(shield=True):
            # Turns still running stay unfinished in the database: the next runtime resumes them.
            for scope in list(self._scopes):
                scope.cancel()
            with anyio.move_on_after(10):
                while self._scopes:  # noqa: ASYNC110 - the workflow tasks are DBOS's, not ours
                    await anyio.sleep(0.01)
        self._closing.set()
        tg, self._tg = self._tg, None
        try:
            if tg is not None:
                await tg.__aexit__(None, None, None)  # the sessions close in their owner tasks
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(DBOS.destroy)
                if self._workers is not None:
                    await anyio.to_thread.run_sync(self._workers.close)
            self._sessions.clear()
            _active = None

    def _check_open(self) -> Queue:
        if self._queue is None or self._tg is None or self._stopping:
            raise DurableError("the DurableRuntime is not open (use `async with DurableRuntime(...)`)")
        return self._queue

    # -- turns -------------------------------------------------------------------------

    async def submit_turn(
        self,
        session_id: str,
        user_input: str,
        *,
        settings: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        turn_id: str | None = None,
    ) -> str:
        """Queue a durable turn of ``session_id``; return its turn id (also its workflow id).

        ``settings`` (JSON, no secrets) go to the factories; ``metadata`` becomes the turn
        metadata. Nothing is queued when an argument is bad.
        """
        queue = self._check_open()
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session_id must be a non-empty string")
        if not isinstance(user_input, str):
            raise TypeError("user_input must be a str")
        plain = _check_settings(settings)
        if metadata is not None and (
            not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata)
        ):
            raise TypeError("metadata must be a mapping with string keys")
        try:
            meta = json.loads(json.dumps(scrub(dict(metadata or {}))))
        except (TypeError, ValueError) as exc:
            raise DurableError(f"metadata must be JSON values ({exc})") from None
        turn_id = turn_id or uuid.uuid4().hex
        with SetWorkflowID(turn_id), SetEnqueueOptions(queue_partition_key=session_id):
            await queue.enqueue_async(_turn_workflow, session_id, user_input, plain, meta)
        return turn_id

    async def result(self, turn_id: str) -> DurableTurnResult:
        """Wait for the durable turn ``turn_id`` to end (wherever it runs) and return it."""
        self._check_open()
        handle: Any = await DBOS.retrieve_workflow_async(turn_id)
        data = await handle.get_result(polling_interval_sec=self._poll)
        return DurableTurnResult.from_json(data)

    async def run_turn(
        self,
        session_id: str,
        user_input: str,
        *,
        settings: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> DurableTurnResult:
        """Run a durable turn and wait for its end (see `submit_turn`)."""
        turn_id = await self.submit_turn(session_id, user_input, settings=settings, metadata=metadata)
        return await self.result(turn_id)

    async def unfinished_turns(self) -> list[str]:
        """Ids of the durable turns queued or running (in any worker), oldest first."""
        self._check_open()
        found = await DBOS.list_workflows_async(
            status=["PENDING", "ENQUEUED"], name=WORKFLOW_NAME, load_input=False, load_output=False
        )
        return [w.workflow_id for w in found]

    # -- inside the workflow ------------------------------------------------------------

    async def _allocate(self, session_id: str) -> dict[str, Any]:
        for (open_id, _), session in list(self._sessions.items()):
            if open_id == session_id and session._recorder is not None:
                await session._recorder.flush()  # an earlier turn's records, still queued
        stored = await self.store.get_session(session_id)
        top = max((t.index for t in stored.turns), default=0) if stored is not None else 0
        messages = await self.store.load_messages(session_id)
        # Recorded with the step: a resumed turn keeps its index and its start time.
        return {"index": top + 1, "base": len(messages), "started_at": time.time()}

    async def _run_workflow(
        self, session_id: str, user_input: str, settings: dict[str, Any], metadata: dict[str, Any]
    ) -> dict[str, Any]:
        turn_id = DBOS.workflow_id
        assert turn_id is not None
        if self._stopping:
            raise asyncio.CancelledError()  # dequeued while closing: left for the next runtime
        out: dict[str, Any] = {}
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                alloc = await DBOS.run_step_async({"name": "allocate"}, self._allocate, session_id)
                out = await self._run(turn_id, alloc, session_id, user_input, settings, metadata)
            finally:
                self._scopes.discard(scope)
        if scope.cancelled_caught:
            # The runtime is closing: leave the turn unfinished (DBOS records nothing for a
            # cancellation), so that the next runtime resumes it.
            raise asyncio.CancelledError()
        return out

    async def _run(
        self,
        turn_id: str,
        alloc: Mapping[str, Any],
        session_id: str,
        user_input: str,
        settings: dict[str, Any],
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "turn_id": turn_id,
            "session_id": session_id,
            "index": alloc["index"],
            "state": TurnState.FAILED.value,
        }
        try:
            session = await self._session_for(session_id, settings)
            model = self._models_factory(settings)
        except Exception as exc:
            logger.error("durable turn %s: cannot build its session or model", turn_id, exc_info=True)
            out["error"] = f"{type(exc).__name__}: {exc}"
            return out
        recorder = session._recorder
        assert recorder is not None
        options = self._loop_options(settings) if callable(self._loop_options) else self._loop_options
        loop = DurableLoop(session, model, base=alloc["base"], **_check_loop_options(options))
        recorder.expect_turn(
            turn_id,
            alloc["index"],
            durable=settings,
            user_input=user_input,
            started_at=alloc.get("started_at"),
        )
        try:
            result = await loop.run_turn(user_input, metadata=metadata)
            out["state"] = result.outcome.state.value
            out["text"] = result.text
            out["steps"] = result.steps
            if result.outcome.abort_reason is not None:
                out["abort_reason"] = result.outcome.abort_reason.value
        except AgentError as exc:
            out["error"] = str(exc)
        except Exception as exc:  # a start hook refused the turn
            out["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            session._next_ident = None
            with anyio.CancelScope(shield=True):
                await recorder.flush()  # in the store before the workflow is done
            closer = getattr(model, "aclose", None)
            if closer is not None:
                with anyio.CancelScope(shield=True):
                    maybe = closer()
                    if inspect.isawaitable(maybe):
                        await maybe
        return out

    async def _session_for(self, session_id: str, settings: Mapping[str, Any]) -> Session:
        key = (session_id, json.dumps(settings, sort_keys=True))
        while True:
            session = self._sessions.get(key)
            if session is not None:
                return session
            opening = self._opening.get(key)
            if opening is None:
                break
            await opening.wait()
        tg = self._tg
        if tg is None:
            raise DurableError("the DurableRuntime is closing")
        self._opening[key] = event = anyio.Event()
        try:
            session = cast(Session, await tg.start(self._host, session_id, settings))
            self._sessions[key] = session
            return session
        finally:
            del self._opening[key]
            event.set()

    async def _host(
        self,
        session_id: str,
        settings: Mapping[str, Any],
        *,
        task_status: anyio.abc.TaskStatus[Session] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Owner task of one session: open it, keep it open for the runtime's life."""
        session = self._sessions_factory(session_id, settings, self.store)
        if not isinstance(session, Session):
            raise DurableError("the session factory must return a Session")
        if session.store is not self.store or session.session_id != session_id:
            raise DurableError(
                "the session factory must build Session(..., store=store, session_id=session_id) "
                "with the store and session id it is given"
            )
        started = False
        try:
            async with session:
                task_status.started(session)
                started = True
                await self._closing.wait()
        except Exception:
            if not started:
                raise
            logger.warning("closing session %s failed", session_id, exc_info=True)

    # -- workers -----------------------------------------------------------------------

    async def _watch_workers(self) -> None:
        workers = self._workers
        assert workers is not None and self.takeover_after is not None
        while not self._closing.is_set():
            with anyio.move_on_after(self.heartbeat):
                await self._closing.wait()
            if self._closing.is_set():
                return
            try:
                await anyio.to_thread.run_sync(workers.beat)
                for dead in await anyio.to_thread.run_sync(workers.claim_silent, self.takeover_after):
                    await self._take_over(dead)
            except Exception:
                logger.warning("the worker heartbeat failed", exc_info=True)

    async def _take_over(self, executor_id: str) -> None:
        found = await DBOS.list_workflows_async(
            status="PENDING", name=WORKFLOW_NAME, executor_id=executor_id, load_input=False, load_output=False
        )
        for workflow in found:
            logger.info("taking over turn %s of silent worker %s", workflow.workflow_id, executor_id)
            await DBOS.resume_workflow_async(workflow.workflow_id, queue_name=QUEUE_NAME)

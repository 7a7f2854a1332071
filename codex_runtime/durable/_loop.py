"""The agent loop of a durable turn: every model call and every tool call is a DBOS step.

A step's output is recorded when it finishes; when the turn's workflow runs again after a
crash, finished steps return their recorded output instead of running. Each tool call is
two steps drawn in order right after the model's answer (so parallel calls get the same
step ids on every run): ``tool-sent``, recorded before the request leaves, then ``tool``.
A run that finds ``tool-sent`` recorded by an earlier run but no ``tool`` output knows the
call was in flight when that run died: it resends it only when the tool is annotated
``readOnlyHint`` or ``idempotentHint``, and otherwise tells the model the outcome is unknown.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import anyio
from dbos import DBOS, StepReservation
from mcp_types import CallToolResult, TextContent

from .._resource_tools import BUILTIN_SERVER
from .._session_store import scrub
from ..agent import AgentLoop, Message, Model, ModelError, ModelRequest, ModelResponse, ToolCall, ToolSpec
from ..client import ToolCallError
from ..headers import CodexRuntimeError
from ..session import (
    Session,
    ToolCallDenied,
    ToolCallRecord,
    ToolCallStatus,
    Turn,
    TurnAbortedError,
    TurnStateError,
)

__all__ = ["UNKNOWN_OUTCOME"]

#: What the model is told about a non-idempotent tool call that was in flight at a crash.
UNKNOWN_OUTCOME = (
    "outcome unknown: the process running this tool call stopped before its result came back, "
    "and the call was not sent again because the tool is not marked idempotent; it may or may "
    "not have run. Check its effects before calling it again."
)


def response_to_json(response: ModelResponse) -> dict[str, Any]:
    return {
        "text": response.text,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_error": c.arguments_error}
            for c in response.tool_calls
        ],
        "finish_reason": response.finish_reason,
        "usage": dict(response.usage) if response.usage is not None else None,
    }


def response_from_json(data: Mapping[str, Any]) -> ModelResponse:
    if data.get("error") is not None:
        raise ModelError(str(data["error"]), status=data.get("status"))
    calls = tuple(
        ToolCall(c["name"], c.get("arguments") or {}, id=c["id"], arguments_error=c.get("arguments_error"))
        for c in data.get("tool_calls") or ()
    )
    return ModelResponse(
        text=data.get("text"),
        tool_calls=calls,
        finish_reason=data.get("finish_reason"),
        usage=data.get("usage"),
    )


async def _sent(token: str) -> str:
    return token


class DurableLoop(AgentLoop):
    """An `AgentLoop` whose model and tool calls are steps of the current DBOS workflow.

    ``base`` is the length of the stored conversation when the turn was first started: a
    run after a crash drops whatever the dead run stored past it before going on.
    """

    def __init__(self, session: Session, model: Model, *, base: int, **options: Any) -> None:
        super().__init__(session, model, **options)
        self._base = base
        self._run_token = uuid.uuid4().hex  # tells this run's `tool-sent` records from earlier ones
        self._reserved: dict[str, tuple[StepReservation, StepReservation]] = {}
        self._resendable: set[str] = set()
        self._live: dict[str, CallToolResult] = {}
        self._failures: dict[str, CodexRuntimeError] = {}
        self._ran: set[str] = set()

    async def _restore(self) -> None:
        store, recorder = self.session.store, self.session._recorder
        assert store is not None and recorder is not None
        await recorder.flush()
        stored = await store.load_messages(self.session.session_id)
        self._restored = True
        if self._base:
            self._messages = [Message.from_json(m) for m in stored[: self._base]]
            self._saved = self._base
        else:
            self.reset()

    async def _catalog(self) -> tuple[ToolSpec, ...]:
        specs = await super()._catalog()
        # The session's tools are listed once per client (cached): their annotations say
        # which calls may be sent again after a crash. The built-in resource tools only read.
        tools = {t.name: t.tool for t in await self.session.list_tools()}
        self._resendable = set()
        for spec in specs:
            hints = tools[spec.name].annotations if spec.name in tools else None
            if spec.server == BUILTIN_SERVER or (
                hints is not None and (hints.read_only_hint or hints.idempotent_hint)
            ):
                self._resendable.add(spec.name)
        return specs

    async def _respond(self, request: ModelRequest) -> ModelResponse:
        data = await DBOS.run_step_async({"name": "model"}, self._model_step, request)
        response = response_from_json(data)
        # Draw the steps of every call now, in the answer's order: the same ids on every run.
        for call in response.tool_calls:
            self._reserved[call.id] = (DBOS.reserve_step(), DBOS.reserve_step())
        return response

    async def _model_step(self, request: ModelRequest) -> dict[str, Any]:
        try:
            response = await self.model.respond(request)
        except (TurnAbortedError, TurnStateError):
            raise
        except Exception as exc:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                raise
            return {
                "error": f"the model failed: {type(exc).__name__}: {exc}",
                "status": getattr(exc, "status", None),
            }
        if not isinstance(response, ModelResponse):
            return {"error": f"the model returned {type(response).__name__}, not a ModelResponse"}
        return response_to_json(response)

    async def _call_tool(self, turn: Turn, call: ToolCall, spec: ToolSpec) -> CallToolResult:
        sent_step, tool_step = self._reserved.pop(call.id)
        token = await sent_step.run_async({"name": "tool-sent"}, _sent, self._run_token)
        data = await tool_step.run_async({"name": "tool"}, self._tool_step, turn, call, spec, token)
        live = self._live.pop(call.id, None)
        failure = self._failures.pop(call.id, None)
        if call.id not in self._ran:
            self._record_replayed(turn, spec, call, data)
        if failure is not None:
            raise failure
        if live is not None:
            return live
        if data.get("denied") is not None:
            raise ToolCallDenied(spec.server, spec.tool, str(data["denied"]))
        if data.get("error") is not None:
            raise ToolCallError(spec.server, spec.tool, str(data["error"]))
        if data.get("unknown"):
            return CallToolResult(content=[TextContent(type="text", text=UNKNOWN_OUTCOME)], is_error=True)
        return CallToolResult.model_validate(data["result"])

    async def _tool_step(self, turn: Turn, call: ToolCall, spec: ToolSpec, token: str) -> dict[str, Any]:
        self._ran.add(call.id)
        started = time.time()
        if token != self._run_token and call.name not in self._resendable:
            self._record_replayed(turn, spec, call, {"unknown": True, "started_at": started})
            return {"unknown": True, "started_at": started, "ended_at": time.time()}
        try:
            result = await super()._call_tool(turn, call, spec)
        except (TurnAbortedError, TurnStateError):
            raise
        except CodexRuntimeError as exc:
            self._failures[call.id] = exc
            out: dict[str, Any] = {"error": str(exc), "started_at": started, "ended_at": time.time()}
            if isinstance(exc, ToolCallDenied):
                out["denied"] = exc.reason
            return out
        self._live[call.id] = result
        dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        # What is kept is redacted like the session store (JSON text under secret keys).
        return {"result": scrub(dumped), "started_at": started, "ended_at": time.time()}

    def _record_replayed(self, turn: Turn, spec: ToolSpec, call: ToolCall, data: Mapping[str, Any]) -> None:
        """Put a call this run did not send (replayed, or not resent) in the turn's records."""
        recorder = self.session._recorder
        unknown = bool(data.get("unknown"))
        result = None
        if data.get("result") is not None:
            result = CallToolResult.model_validate(data["result"])
        is_error = bool(result is not None and result.is_error)
        error = "unknown" if unknown else data.get("error")
        if unknown:
            status = ToolCallStatus.CANCELLED
        elif data.get("denied") is not None:
            status = ToolCallStatus.DENIED
        elif error is not None:
            status = ToolCallStatus.UNAVAILABLE
        else:
            status = ToolCallStatus.ERROR if is_error else ToolCallStatus.OK
        record = ToolCallRecord(
            server=spec.server,
            tool=spec.tool,
            arguments=dict(call.arguments),
            started_at=float(data.get("started_at") or time.time()),
            ended_at=float(data.get("ended_at") or time.time()),
            ok=result is not None and not is_error,
            is_error=is_error,
            error=error if error is None else str(error),
            status=status,
            call_id=call.id,
            result=result,
        )
        turn._tool_calls.append(record)
        if recorder is not None:
            recorder.tool_call(turn, record, result)

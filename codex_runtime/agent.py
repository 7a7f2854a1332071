"""An agent loop on top of a `Session`: a model proposes tool calls, the turn runs them.

`AgentLoop` runs one turn per user input: it asks its `Model` for the next step, runs
the tool calls the model asks for inside the turn (concurrently when there are several),
feeds the results back and repeats until the model answers without tool calls. The
conversation persists across turns. Models: `ScriptedModel` (deterministic, for tests
and examples) and `OpenAIChatModel` (any OpenAI-compatible Chat Completions endpoint:
OpenAI, vLLM, SGLang, llama.cpp, Ollama, ...).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import anyio
import attrs
import httpx2
from mcp_types import (
    INVALID_REQUEST,
    CallToolResult,
    CreateMessageResult,
    ErrorData,
    ImageContent,
    SamplingMessage,
    TextContent,
)

from ._handlers import ServerRequest
from ._resource_tools import BUILTIN_SERVER, resource_tool_specs, run_resource_tool
from ._streaming import ChatStreamAssembler, ResponsesStreamAssembler, StreamError, sse_events
from ._trace import bind_tool_call_id, inject_trace_headers, invoking_agent
from .headers import CodexRuntimeError, HeaderPolicy, Headers, HeadersInput, check_settable
from .session import (
    PromptDecision,
    Session,
    StopDecision,
    ToolCallDenied,
    Turn,
    TurnAbortedError,
    TurnInProgressError,
    TurnOutcome,
    TurnState,
    TurnStateError,
)

__all__ = [
    "AgentError",
    "AgentEvent",
    "AgentLoop",
    "ImagePart",
    "MaxStepsError",
    "Message",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelSampling",
    "ModelStep",
    "OpenAIChatModel",
    "ScriptedModel",
    "TextDelta",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallProgress",
    "ToolCallStarted",
    "ToolResult",
    "ToolSpec",
    "TurnResult",
]

logger = logging.getLogger("codex_runtime.agent")

# -- errors ----------------------------------------------------------------------------------


class AgentError(CodexRuntimeError):
    """An agent turn failed: the model failed, or ``max_steps`` was reached.

    The turn ended ``FAILED`` and its end hooks ran before this was raised. ``outcome``
    is the turn's `TurnOutcome` and ``tool_calls`` the tool calls it ran (set by
    `AgentLoop.run_turn`).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.outcome: TurnOutcome | None = None
        self.tool_calls: tuple[ToolResult, ...] = ()


class ModelError(AgentError):
    """A model could not give a usable answer.

    For `OpenAIChatModel`: the provider answered an HTTP error (``status`` is set), could
    not be reached, or answered something that is not a chat completion. (A call of a
    tool that is not in the catalog is not an error of the model: the loop answers it
    with a tool error and the turn goes on.)
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class MaxStepsError(AgentError):
    """The model still asked for tools after ``max_steps`` answers in one turn."""


# -- messages and model protocol ---------------------------------------------------------------


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _arguments(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError("tool call arguments must be a mapping (a JSON object)")
    return dict(value)


@attrs.frozen
class ToolCall:
    """A tool call the model asks for.

    ``name`` is the qualified tool name ``server__tool`` of the catalog. When the model
    sent arguments that are not a JSON object, ``arguments_error`` says why (and
    ``arguments`` is empty): the loop answers the model with an error result instead of
    calling the tool.
    """

    name: str
    arguments: dict[str, Any] = attrs.field(factory=dict, converter=_arguments)
    id: str = attrs.field(kw_only=True, factory=_new_call_id)
    arguments_error: str | None = attrs.field(kw_only=True, default=None)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError("a tool call needs a non-empty tool name")
        if not isinstance(self.id, str) or not self.id:
            raise TypeError("a tool call needs a non-empty id")


def _calls(value: Iterable[ToolCall]) -> tuple[ToolCall, ...]:
    calls = tuple(value)
    if not all(isinstance(c, ToolCall) for c in calls):
        raise TypeError("tool_calls must hold ToolCall objects")
    return calls


Role = Literal["system", "user", "assistant", "tool"]


@attrs.frozen
class ImagePart:
    """An image a tool returned: base64 ``data`` of type ``mime_type`` (e.g. ``image/png``)."""

    data: str
    mime_type: str

    @property
    def data_url(self) -> str:
        """The image as a ``data:`` URL (what OpenAI-compatible APIs take as ``image_url``)."""
        return f"data:{self.mime_type};base64,{self.data}"


def _images(value: Iterable[ImagePart]) -> tuple[ImagePart, ...]:
    images = tuple(value)
    if not all(isinstance(i, ImagePart) for i in images):
        raise TypeError("images must hold ImagePart objects")
    return images


@attrs.frozen
class Message:
    """One message of the conversation.

    ``assistant`` messages may carry ``tool_calls``; each is answered by a ``tool``
    message with its ``tool_call_id``, the tool's ``name`` and the result as text
    (``is_error`` when the call failed) and the ``images`` the tool returned.
    """

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_calls)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False
    images: tuple[ImagePart, ...] = attrs.field(default=(), converter=_images)

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", text)

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", text)

    @classmethod
    def assistant(cls, text: str | None, tool_calls: Iterable[ToolCall] = ()) -> Message:
        return cls("assistant", text, tuple(tool_calls))

    @classmethod
    def tool(
        cls,
        call_id: str,
        name: str,
        content: str,
        *,
        is_error: bool = False,
        images: Iterable[ImagePart] = (),
    ) -> Message:
        return cls("tool", content, tool_call_id=call_id, name=name, is_error=is_error, images=tuple(images))

    def to_json(self) -> dict[str, Any]:
        """The message as a JSON object (what a session store keeps)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "name": c.name, "arguments": c.arguments, "arguments_error": c.arguments_error}
                for c in self.tool_calls
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        if self.is_error:
            out["is_error"] = True
        if self.images:
            out["images"] = [{"data": i.data, "mime_type": i.mime_type} for i in self.images]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """The message `to_json` made."""
        calls = tuple(
            ToolCall(
                c["name"], c.get("arguments") or {}, id=c["id"], arguments_error=c.get("arguments_error")
            )
            for c in data.get("tool_calls") or ()
        )
        return cls(
            data["role"],
            data.get("content"),
            calls,
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
            is_error=bool(data.get("is_error", False)),
            images=tuple(ImagePart(i["data"], i["mime_type"]) for i in data.get("images") or ()),
        )


@attrs.frozen
class ToolSpec:
    """A tool of the catalog offered to the model."""

    name: str
    server: str
    tool: str
    description: str
    input_schema: Mapping[str, Any]


@attrs.frozen
class ModelRequest:
    """What a model is asked: the conversation so far, the tool catalog and the turn.

    ``step`` counts the model calls of this turn from 1. The turn gives models the
    forwarded headers (``turn.forwarded_headers``) and the turn metadata. A streaming
    model awaits ``on_text_delta(text)`` for each piece of text as it arrives (the agent
    loop turns them into `TextDelta` events); it may be None.
    """

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]
    turn: Turn = attrs.field(eq=False, repr=False)
    step: int = 1
    parallel_tool_calls: bool = True
    on_text_delta: Callable[[str], Awaitable[None]] | None = attrs.field(
        default=None, eq=False, repr=False, kw_only=True
    )


@attrs.frozen
class ModelResponse:
    """A model's answer: text and/or tool calls."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = attrs.field(default=(), converter=_calls)
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None


@runtime_checkable
class Model(Protocol):
    """Anything that answers a `ModelRequest`. Raise `ModelError` (or any error) on failure.

    A model may also have a ``provider_name`` attribute (a string such as ``"openai"``):
    `TraceTurns` reports it as ``gen_ai.provider.name`` on the agent's turn spans.
    """

    async def respond(self, request: ModelRequest) -> ModelResponse: ...


# -- results and events --------------------------------------------------------------------------


@attrs.frozen
class ToolResult:
    """One tool call of an agent turn, with what was fed back to the model.

    ``server``/``tool`` are None when the call never reached a server (arguments that
    were not a JSON object, or the turn hit ``max_steps``). ``result`` is the server's
    `CallToolResult` when there was one.
    """

    call_id: str
    name: str
    server: str | None
    tool: str | None
    arguments: Mapping[str, Any]
    output: str
    is_error: bool
    step: int
    result: CallToolResult | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class TurnResult:
    """How an agent turn ended.

    ``text`` is the model's final answer (None when the turn was aborted or its prompt
    blocked), ``tool_calls`` every tool call of the turn in order, ``outcome`` the turn's
    `TurnOutcome`, ``steps`` the number of model calls, ``blocked`` the reason an
    ``on_user_prompt`` hook blocked the prompt (the model was never called).
    """

    text: str | None
    tool_calls: tuple[ToolResult, ...]
    outcome: TurnOutcome
    steps: int
    turn: Turn = attrs.field(eq=False, repr=False)
    blocked: str | None = None

    @property
    def aborted(self) -> bool:
        return self.outcome.state is TurnState.ABORTED


@attrs.frozen
class ModelStep:
    """Event: the model answered (step ``step`` of the turn)."""

    step: int
    response: ModelResponse


@attrs.frozen
class ToolCallStarted:
    """Event: a tool call is about to run (``server``/``tool`` None if it cannot run)."""

    step: int
    call: ToolCall
    server: str | None
    tool: str | None


@attrs.frozen
class ToolCallFinished:
    """Event: a tool call finished; ``result`` is what goes back to the model."""

    step: int
    result: ToolResult


@attrs.frozen
class ToolCallProgress:
    """Event: a running tool call reported progress (``notifications/progress``)."""

    call: ToolCall
    progress: float
    total: float | None
    message: str | None


@attrs.frozen
class TextDelta:
    """Event: a piece of the model's text, as a streaming model received it (step ``step``)."""

    step: int
    text: str


AgentEvent = ModelStep | ToolCallStarted | ToolCallProgress | ToolCallFinished | TextDelta
EventHandler = Callable[[AgentEvent], Awaitable[None] | None]


def result_text(result: CallToolResult) -> str:
    """The text a model is given for a tool result: text blocks, else JSON of the rest."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif getattr(block, "type", None) in ("image", "audio"):
            parts.append(f"[{block.type}: {getattr(block, 'mime_type', 'unknown')}]")
        else:
            parts.append(json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True)))
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


def result_images(result: CallToolResult) -> tuple[ImagePart, ...]:
    """The images of a tool result (its ``image`` content blocks), for models that take images."""
    return tuple(
        ImagePart(block.data, block.mime_type or "image/png")
        for block in result.content
        if isinstance(block, ImageContent) and isinstance(block.data, str) and block.data
    )


def _task_required(tool: Any) -> bool:
    """Whether a tool can only be called task-augmented (``execution.taskSupport: required``).

    This client does not make task-augmented calls, so such a tool is never offered.
    """
    execution = getattr(tool, "execution", None)
    return getattr(execution, "task_support", None) == "required"


def _names(names: Iterable[str], limit: int = 20) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:limit]) or "none"
    return shown + (f", ... ({len(ordered) - limit} more)" if len(ordered) > limit else "")


def _is_abort(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_abort(e) for e in exc.exceptions)
    return isinstance(exc, TurnAbortedError | anyio.get_cancelled_exc_class())


def _first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group's group that is not an abort."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            if not _is_abort(exc):
                return _first_failure(exc)
        elif not _is_abort(exc):
            return exc
    return group


# -- the loop ------------------------------------------------------------------------------------


class _TurnRun:
    def __init__(self) -> None:
        self.text: str | None = None
        self.results: list[ToolResult] = []
        self.steps = 0
        self.blocked: str | None = None


def _hook_label(hook: object) -> str:
    return getattr(hook, "name", None) or type(hook).__name__


class AgentLoop:
    """Runs agent turns on a `Session` with a `Model`; the conversation persists across turns.

    Args:
        session: An open `Session`; its tools (``await session.list_tools()``, listed
            at the start of each turn) are the catalog offered to the model, named
            ``server__tool``.
        model: A `Model` (e.g. `OpenAIChatModel`, `ScriptedModel`).
        max_steps: Model calls allowed per turn. When the ``max_steps``-th answer still
            asks for tools, they are not run and the turn fails (`MaxStepsError`).
        parallel_tool_calls: Run the tool calls of one answer concurrently.
        instructions: A system message put first in the conversation.
        on_event: Called (sync or async) with each `TextDelta` (streaming models),
            `ModelStep`, `ToolCallStarted`, `ToolCallProgress` and `ToolCallFinished`,
            inside the turn; an error it raises fails the turn (for `ToolCallProgress` it
            is only logged).
        resource_tools: Offer the model the built-in tools ``list_resources`` and
            ``read_resource`` (to follow resource links tools return). ``None`` (the
            default) offers them when a server of the session declares resources.
        name: The agent's name: under `TraceTurns` each turn of this loop is a span
            ``invoke_agent {name}`` (``invoke_agent`` without a name), and each tool
            call's ``execute_tool`` span carries the model's call id.
    """

    def __init__(
        self,
        session: Session,
        model: Model,
        *,
        max_steps: int = 20,
        parallel_tool_calls: bool = True,
        instructions: str | None = None,
        on_event: EventHandler | None = None,
        name: str | None = None,
        resource_tools: bool | None = None,
    ) -> None:
        if not isinstance(session, Session):
            raise TypeError("AgentLoop() needs a Session")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError("name must be a non-empty string (or None)")
        if not callable(getattr(model, "respond", None)):
            raise TypeError("AgentLoop() needs a model with an async respond(request) method")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError("max_steps must be a positive integer")
        self.session = session
        self.model = model
        self.max_steps = max_steps
        self.parallel_tool_calls = bool(parallel_tool_calls)
        self.instructions = instructions
        self.on_event = on_event
        self.name = name
        self.resource_tools = resource_tools
        sampling = session.handlers.sampling if session.handlers is not None else None
        if isinstance(sampling, ModelSampling) and sampling.session is None:
            sampling.session = session
        self._messages: list[Message] = []
        self._turn: Turn | None = None
        self._running = False
        self._interrupt_pending = False
        self._restored = False  # conversation loaded from the session's store
        self._saved = 0  # messages already in the session's store
        self._offered: tuple[str, ...] = ()
        self._steered: list[str] = []
        self.reset()

    @property
    def messages(self) -> list[Message]:
        """The conversation so far (a copy)."""
        return list(self._messages)

    @property
    def current_turn(self) -> Turn | None:
        """The turn this loop is running, if any."""
        return self._turn

    def reset(self) -> None:
        """Forget the conversation (keeping the instructions)."""
        self._messages = [Message.system(self.instructions)] if self.instructions else []
        self._saved = 0

    def interrupt(self) -> None:
        """Abort the running turn (reason ``interrupted``); `run_turn` then returns it ABORTED.

        Called while `run_turn` is still starting its turn, it aborts that turn as soon
        as it exists. A no-op when no turn runs.
        """
        if self._turn is not None:
            self._turn.interrupt()
        elif self._running:
            self._interrupt_pending = True

    def steer(self, user_input: str) -> None:
        """Add ``user_input`` to the running turn: the model gets it before its next step.

        When the model has already given its final answer, the turn goes on for one more
        step so that the input is answered. Raises `TurnStateError` when no turn runs.
        """
        if not isinstance(user_input, str):
            raise TypeError("steer() needs the user input as a str")
        if not self._running:
            raise TurnStateError("no turn is running on this AgentLoop")
        self._steered.append(user_input)

    async def run_turn(
        self,
        user_input: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        forwarded_headers: HeadersInput | None = None,
    ) -> TurnResult:
        """Run one turn for ``user_input`` and return its `TurnResult`.

        An aborted turn (interrupted, replaced, shut down, timed out) returns with
        outcome ``ABORTED`` and ``text=None``. When the model fails or ``max_steps`` is
        reached the turn ends ``FAILED``, its end hooks run, and `AgentError` is raised.
        A failing start hook raises its own error. Tool errors never end the turn: they
        go back to the model as error results.
        """
        if not isinstance(user_input, str):
            raise TypeError("run_turn() needs the user input as a str")
        if self._running:
            raise TurnInProgressError("this AgentLoop is already running a turn")
        self._running = True
        self._interrupt_pending = False
        self._steered = []
        run = _TurnRun()
        turn: Turn | None = None
        try:
            await self._restore()
            provider = getattr(self.model, "provider_name", None)
            with invoking_agent(self.name, provider if isinstance(provider, str) else None):
                async with self.session.turn(metadata=metadata, forwarded_headers=forwarded_headers) as turn:
                    self._turn = turn
                    if self._interrupt_pending:
                        turn.interrupt()
                    await self._body(turn, user_input, run)
        except AgentError as exc:
            if turn is not None:
                exc.outcome = turn.outcome
            exc.tool_calls = tuple(run.results)
            raise
        finally:
            if turn is not None:
                await self._persist()
            self._turn = None
            self._running = False
            self._interrupt_pending = False
            self._steered = []
        assert turn is not None and turn.outcome is not None
        aborted = turn.outcome.state is TurnState.ABORTED
        return TurnResult(
            text=None if aborted else run.text,
            tool_calls=tuple(run.results),
            outcome=turn.outcome,
            steps=run.steps,
            turn=turn,
            blocked=run.blocked,
        )

    async def _restore(self) -> None:
        """Once, before the first turn: take the conversation stored for this session."""
        store = self.session.store
        if store is None or self._restored:
            return
        if self.session._recorder is not None:
            await self.session._recorder.flush()
        stored = await store.load_messages(self.session.session_id)
        self._restored = True
        if stored:
            self._messages = [Message.from_json(m) for m in stored]
            self._saved = len(self._messages)

    async def _persist(self) -> None:
        """After each turn: queue the messages it added for the session's store."""
        recorder = self.session._recorder
        if recorder is None:
            return
        first, self._saved = self._saved, len(self._messages)
        recorder.save_messages(first, [m.to_json() for m in self._messages[first:]])

    async def _respond(self, request: ModelRequest) -> ModelResponse:
        return await self.model.respond(request)

    async def _call_tool(self, turn: Turn, call: ToolCall, spec: ToolSpec) -> CallToolResult:
        if spec.server == BUILTIN_SERVER:
            return await run_resource_tool(turn, spec.tool, call.arguments)
        if self.on_event is None:
            return await turn.call_tool(spec.server, spec.tool, call.arguments, call_id=call.id)

        async def progress(value: float, total: float | None, message: str | None) -> None:
            await self._emit(ToolCallProgress(call, value, total, message))

        return await turn.call_tool(
            spec.server, spec.tool, call.arguments, on_progress=progress, call_id=call.id
        )

    async def _emit(self, event: AgentEvent) -> None:
        if self.on_event is not None:
            maybe = self.on_event(event)
            if inspect.isawaitable(maybe):
                await maybe

    async def _catalog(self) -> tuple[ToolSpec, ...]:
        # Tools that require task-augmented calls cannot be called here: not offered.
        specs = [
            ToolSpec(t.name, t.server, t.tool.name, t.description, t.input_schema)
            for t in await self.session.list_tools()
            if not _task_required(t.tool)
        ]
        if self.resource_tools is not False:
            builtins = resource_tool_specs(self.session)
            if self.resource_tools and not builtins:
                builtins = resource_tool_specs(self.session, always=True)
            specs += [ToolSpec(name, BUILTIN_SERVER, name, text, schema) for name, text, schema in builtins]
        return tuple(specs)

    async def _prompt_hooks(self, turn: Turn, prompt: str) -> str | None:
        """Run the ``on_user_prompt`` hooks in order; the reason of the first block, if any.
        Context they add reaches the model at the first step."""
        for hook in self.session.hooks:
            method = getattr(hook, "on_user_prompt", None)
            if method is None:
                continue
            try:
                decision = await method(turn, prompt)
                if decision is not None and not isinstance(decision, PromptDecision):
                    kind = type(decision).__name__
                    raise TypeError(f"on_user_prompt returned {kind}, not a PromptDecision")
            except Exception as exc:
                if _is_abort(exc):
                    raise
                # Non-blocking: reported in the outcome, the prompt goes on.
                logger.warning("on_user_prompt of %s failed", _hook_label(hook), exc_info=exc)
                turn.report_hook_failure(_hook_label(hook), "user_prompt", exc)
                continue
            if decision is None:
                continue
            if decision.action == "block":
                return decision.text
            turn.add_context(decision.text)
        return None

    async def _stop_hooks(self, turn: Turn, text: str | None) -> str | None:
        """Run the ``on_stop`` hooks in order; the reasons to go on, joined (or None)."""
        reasons: list[str] = []
        for hook in self.session.hooks:
            method = getattr(hook, "on_stop", None)
            if method is None:
                continue
            try:
                decision = await method(turn, text)
                if decision is not None and not isinstance(decision, StopDecision):
                    raise TypeError(f"on_stop returned {type(decision).__name__}, not a StopDecision")
            except Exception as exc:
                if _is_abort(exc):
                    raise
                logger.warning("on_stop of %s failed", _hook_label(hook), exc_info=exc)
                turn.report_hook_failure(_hook_label(hook), "stop", exc)
                continue
            if decision is not None:
                reasons.append(decision.reason)
        return "\n\n".join(reasons) if reasons else None

    async def _body(self, turn: Turn, user_input: str, run: _TurnRun) -> None:
        blocked = await self._prompt_hooks(turn, user_input)
        if blocked is not None:
            run.blocked = blocked
            return
        self._messages.append(Message.user(user_input))
        try:
            # Listed once per turn (as Codex does): a server that went down costs its
            # reconnect attempts once, not at every step.
            catalog = await self._catalog()
            by_name = {t.name: t for t in catalog}
            self._offered = tuple(by_name)
            for step in range(1, self.max_steps + 1):
                if turn.abort_reason is not None:
                    raise TurnAbortedError(turn.abort_reason)
                # Context that hooks added (prompt, tool calls, session start) goes before the step.
                self._messages.extend(Message.system(text) for text in turn.drain_context())
                self._take_steered()

                async def delta(text: str, step: int = step) -> None:
                    await self._emit(TextDelta(step, text))

                request = ModelRequest(
                    tuple(self._messages),
                    catalog,
                    turn,
                    step,
                    parallel_tool_calls=self.parallel_tool_calls,
                    on_text_delta=delta,
                )
                run.steps = step
                response = await self._ask(request)
                await self._emit(ModelStep(step, response))
                if not response.tool_calls:
                    self._messages.append(Message.assistant(response.text))
                    run.text = response.text or ""
                    if self._steered and step < self.max_steps:
                        continue  # input added while the model answered: answer it too
                    go_on = await self._stop_hooks(turn, response.text)
                    if go_on is None:
                        return
                    if step == self.max_steps:
                        logger.info("an on_stop hook asked to go on at max_steps (%d): the turn ends", step)
                        return
                    self._messages.append(Message.user(go_on))
                    continue
                await self._run_step(turn, step, response, by_name, run)
        except Exception as exc:
            if isinstance(exc, AgentError) or _is_abort(exc):
                raise
            raise AgentError(f"the agent turn failed: {type(exc).__name__}: {exc}") from exc

    def _take_steered(self) -> None:
        while self._steered:
            self._messages.append(Message.user(self._steered.pop(0)))

    async def _ask(self, request: ModelRequest) -> ModelResponse:
        try:
            response = await self._respond(request)
        except AgentError:
            raise
        except Exception as exc:
            if _is_abort(exc):
                raise
            raise ModelError(f"the model failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(response, ModelResponse):
            raise ModelError(f"the model returned {type(response).__name__}, not a ModelResponse")
        return response

    async def _run_step(
        self, turn: Turn, step: int, response: ModelResponse, catalog: Mapping[str, ToolSpec], run: _TurnRun
    ) -> None:
        calls = response.tool_calls
        ids = [c.id for c in calls]
        if len(set(ids)) != len(ids):
            raise ModelError("the model used the same tool call id twice in one answer")
        outputs: dict[str, ToolResult] = {}
        error: AgentError | None = None
        if step == self.max_steps:
            error = MaxStepsError(
                f"the turn reached max_steps ({self.max_steps}) and the model still asks for tools; "
                "raise max_steps or check the model's instructions"
            )
        try:
            if error is not None:
                raise error
            if self.parallel_tool_calls and len(calls) > 1:
                try:
                    async with anyio.create_task_group() as tg:
                        for call in calls:
                            tg.start_soon(self._run_call, turn, step, call, catalog.get(call.name), outputs)
                except BaseExceptionGroup as group:
                    failure = _first_failure(group)
                    if failure is group:
                        raise  # only aborts: the turn context settles them
                    raise failure from None
            else:
                for call in calls:
                    await self._run_call(turn, step, call, catalog.get(call.name), outputs)
        finally:
            # Every tool call of the answer gets a result message, even when the turn
            # ends here: providers refuse a conversation with unanswered tool calls.
            self._messages.append(Message.assistant(response.text, calls))
            for call in calls:
                result = outputs.get(call.id)
                if result is None:
                    reason = "the turn ended before this tool call finished"
                    if error is not None:
                        reason = f"not run: {error}"
                    self._messages.append(Message.tool(call.id, call.name, reason, is_error=True))
                else:
                    run.results.append(result)
                    images = result_images(result.result) if result.result is not None else ()
                    self._messages.append(
                        Message.tool(
                            call.id, call.name, result.output, is_error=result.is_error, images=images
                        )
                    )

    async def _run_call(
        self, turn: Turn, step: int, call: ToolCall, spec: ToolSpec | None, outputs: dict[str, ToolResult]
    ) -> None:
        if spec is None:
            # A name the model made up: it learns so, and the turn goes on.
            await self._emit(ToolCallStarted(step, call, None, None))
            output = (
                f"unknown tool {call.name!r}: it is not a tool of this session; "
                f"call one of the tools offered ({_names(self._offered)})"
            )
            result = ToolResult(call.id, call.name, None, None, call.arguments, output, True, step)
        elif call.arguments_error is not None:
            await self._emit(ToolCallStarted(step, call, None, None))
            output = (
                f"invalid arguments for {call.name}: {call.arguments_error}; "
                "call the tool again with arguments that are a JSON object matching its input schema"
            )
            result = ToolResult(call.id, call.name, None, None, call.arguments, output, True, step)
        else:
            await self._emit(ToolCallStarted(step, call, spec.server, spec.tool))
            try:
                with bind_tool_call_id(call.id):
                    called = await self._call_tool(turn, call, spec)
            except (TurnAbortedError, TurnStateError):
                raise
            except ToolCallDenied as exc:
                result = ToolResult(
                    call.id,
                    call.name,
                    spec.server,
                    spec.tool,
                    call.arguments,
                    f"tool call denied: {exc.reason}",
                    True,
                    step,
                )
            except CodexRuntimeError as exc:  # ToolCallError, ServerUnavailableError, ...
                result = ToolResult(
                    call.id, call.name, spec.server, spec.tool, call.arguments, f"error: {exc}", True, step
                )
            else:
                result = ToolResult(
                    call.id,
                    call.name,
                    spec.server,
                    spec.tool,
                    call.arguments,
                    result_text(called),
                    bool(called.is_error),
                    step,
                    called,
                )
        outputs[call.id] = result
        await self._emit(ToolCallFinished(step, result))


# -- sampling served by a model ------------------------------------------------------------------


class ModelSampling:
    """A `ClientHandlers` sampling handler served by a `Model` (opt in: pass it yourself).

    A server's ``sampling/createMessage`` becomes a `ModelRequest` without tools, made on
    behalf of the session's running turn (so the model call carries that turn's provider
    headers and trace context); the model's text is the answer. Requests that name
    another turn, or arrive while no turn runs, are refused.

        sampling = ModelSampling(model)
        async with Session(servers, handlers=ClientHandlers(sampling=sampling)) as session:
            loop = AgentLoop(session, model)   # binds ``sampling`` to the session
    """

    def __init__(self, model: Model, *, session: Session | None = None, name: str | None = None) -> None:
        if not callable(getattr(model, "respond", None)):
            raise TypeError("ModelSampling() needs a model with an async respond(request) method")
        self.model = model
        self.session = session
        self.name = name or str(getattr(model, "model", None) or type(model).__name__)

    async def __call__(self, request: ServerRequest) -> CreateMessageResult | ErrorData:
        turn = self.session.current_turn if self.session is not None else None
        if turn is None or turn.state is not TurnState.RUNNING:
            return ErrorData(code=INVALID_REQUEST, message="sampling is served only while a turn runs")
        if request.turn_id is not None and request.turn_id != turn.id:
            return ErrorData(code=INVALID_REQUEST, message="sampling is served only for the running turn")
        params = request.params
        messages = [Message.system(params.system_prompt)] if params.system_prompt else []
        messages += [_sampled_message(m) for m in params.messages]
        model_request = ModelRequest(tuple(messages), (), turn, 1, parallel_tool_calls=False)
        response = await self.model.respond(model_request)
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=response.text or ""),
            model=self.name,
            stop_reason="endTurn",
        )


def _sampled_message(message: SamplingMessage) -> Message:
    blocks = message.content if isinstance(message.content, list) else [message.content]
    text = "\n".join(
        b.text if isinstance(b, TextContent) else f"[{getattr(b, 'type', 'content')}]" for b in blocks
    )
    return Message.user(text) if message.role == "user" else Message.assistant(text)


# -- scripted model ------------------------------------------------------------------------------

ScriptStep = (
    ModelResponse
    | str
    | ToolCall
    | Sequence[ToolCall]
    | BaseException
    | Callable[[ModelRequest], ModelResponse | Awaitable[ModelResponse]]
)


class ScriptedModel:
    """A model that answers from a script, one step per model call (tests, examples).

    Each step is a `ModelResponse`; a `str` (a final answer); a `ToolCall` or a list of
    them (a step asking for tools); an exception instance (raised, to simulate a failing
    model); or a function of the `ModelRequest` returning a `ModelResponse` (it may be
    async). Every request is kept in ``requests``. Asking past the script's end raises
    `ModelError`.
    """

    def __init__(self, steps: Iterable[ScriptStep]) -> None:
        self._steps = list(steps)
        self.requests: list[ModelRequest] = []

    @property
    def remaining(self) -> int:
        """Steps not used yet."""
        return len(self._steps)

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        await anyio.lowlevel.checkpoint()
        if not self._steps:
            raise ModelError(f"ScriptedModel has no step left for model call {len(self.requests)}")
        step = self._steps.pop(0)
        if isinstance(step, ModelResponse):
            return step
        if isinstance(step, str):
            return ModelResponse(text=step)
        if isinstance(step, ToolCall):
            return ModelResponse(tool_calls=(step,))
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            produced = step(request)
            if inspect.isawaitable(produced):
                produced = await produced
            if not isinstance(produced, ModelResponse):
                raise ModelError(
                    f"a ScriptedModel step returned {type(produced).__name__}, not a ModelResponse"
                )
            return produced
        calls = tuple(step)
        if not all(isinstance(c, ToolCall) for c in calls):
            raise TypeError("a ScriptedModel step list must hold ToolCall objects")
        return ModelResponse(tool_calls=calls)


# -- OpenAI-compatible model ---------------------------------------------------------------------

_WIRE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_BODY_SNIPPET = 300


def wire_tool_name(name: str) -> str:
    """The function name sent to the provider for the qualified tool ``name``.

    Providers accept ``[A-Za-z0-9_-]{1,64}``; other names are made safe and given a
    short hash so that different tools never share a name.
    """
    if _WIRE_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', name)[:55]}_{digest}"


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_SNIPPET else text[:_BODY_SNIPPET] + "..."


class OpenAIChatModel:
    """A model behind an OpenAI-compatible Chat Completions API, with function tools.

    Works with OpenAI and with self-hosted servers that speak the same API (vLLM, SGLang,
    llama.cpp, Ollama, ...): it POSTs ``{base_url}/chat/completions``.

    What the provider receives, lowest precedence first: the headers ``policy`` lets
    through from the turn's forwarded headers (`HeaderPolicy.for_provider`; the default
    policy forwards only ``x-request-id``, ``x-correlation-id`` and ``x-request-id-*``;
    `HeaderPolicy.smg` also forwards ``authorization``); then ``headers``; then
    ``Authorization: Bearer <api_key>``; then the W3C ``traceparent``/``tracestate`` of
    the current span (the turn span under `TraceTurns`). It never receives MCP-only
    headers, the turn entries of Apps servers or any server's static headers.

    Failures raise `ModelError`: HTTP errors (with ``status``), an unreachable provider,
    a body that is not a chat completion. A call of a tool not in the catalog, and tool
    arguments that are not a JSON object, do not raise: the loop feeds an error result
    back to the model.

    Images that tools return reach the model as ``image_url`` content parts (data URLs)
    of a ``user`` message following the tool results (Chat Completions accepts images only
    in user messages); with ``accepts_images=False`` (a text-only model) they are only
    named in the tool result's text.

    With ``stream=True`` (the default) the answer is streamed (server-sent events): each
    piece of text goes to the request's ``on_text_delta`` as it arrives, tool calls are
    assembled from their pieces, and an interrupted turn closes the stream at once. A
    provider that answers a streamed request with plain JSON is understood too.

    Use ``async with OpenAIChatModel(...)`` or call `aclose` to close its HTTP client
    (opened at the first call; use one instance within one event loop).

    Args:
        base_url: The API base, e.g. ``https://api.openai.com/v1`` or
            ``http://localhost:8000/v1`` (vLLM) or ``http://localhost:11434/v1`` (Ollama).
        model: The model name.
        api_key: Sent as ``Authorization: Bearer <api_key>``; None for servers without auth.
        headers: Extra headers for every request (protected names are refused).
        policy: The `HeaderPolicy` selecting forwarded headers (default `HeaderPolicy()`).
        timeout: Seconds allowed for one model call.
        options: Extra request fields (``temperature``, ``max_tokens``, ...).
        http_client: An `httpx2.AsyncClient` to use instead of an owned one.
        accepts_images: Send the images of tool results as image parts.
        stream: Ask for a streamed answer (default True).
        query_params: Query parameters added to every request URL (e.g. Azure's
            ``api-version``).
    """

    #: ``gen_ai.provider.name`` of the agent's turn spans: the API this model speaks.
    provider_name = "openai"

    #: The path under ``base_url`` requests are sent to.
    path = "/chat/completions"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        headers: HeadersInput | None = None,
        policy: HeaderPolicy | None = None,
        timeout: float = 120.0,
        options: Mapping[str, Any] | None = None,
        http_client: httpx2.AsyncClient | None = None,
        accepts_images: bool = True,
        stream: bool = True,
        query_params: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not re.match(r"https?://[^\s/]+", base_url):
            raise ValueError("base_url must be an http:// or https:// URL, e.g. https://api.openai.com/v1")
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty model name")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
            raise ValueError("api_key must be a non-empty string (or None)")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        configured = headers if isinstance(headers, Headers) else Headers(headers or ())
        check_settable(configured, layer="provider")
        reserved = {"model", "messages", "input", "tools", "stream"} & set(options or {})
        if reserved:
            raise ValueError(f"options may not set {', '.join(sorted(reserved))}: the model sets them")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.policy = policy if policy is not None else HeaderPolicy()
        self.timeout = float(timeout)
        self.options = dict(options or {})
        self._headers = configured
        self._api_key = api_key
        self._http = http_client
        self._owns_http = http_client is None
        self.accepts_images = bool(accepts_images)
        self.stream = bool(stream)
        if query_params is not None and not (
            isinstance(query_params, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in query_params.items())
        ):
            raise ValueError("query_params must map strings to strings")
        self.query_params = dict(query_params or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, {self.model!r})"

    @property
    def endpoint(self) -> str:
        """The URL requests are sent to."""
        return f"{self.base_url}{self.path}"

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the owned HTTP client (a later call opens a new one)."""
        http, self._http = (self._http, None) if self._owns_http else (None, self._http)
        if http is not None:
            with anyio.CancelScope(shield=True):
                await http.aclose()

    def provider_headers(self, turn: Turn | None) -> dict[str, str]:
        """The headers a model call made now, inside ``turn``, sends (see the class doc)."""
        out: dict[str, str] = {"accept": "application/json"}
        if turn is not None:
            out.update(self.policy.for_provider(turn._forwarded_input).to_dict())
        out.update(self._headers.to_dict())
        if self._api_key is not None:
            out["authorization"] = f"Bearer {self._api_key}"
        trace: dict[str, str] = {}
        inject_trace_headers(trace)
        if "traceparent" in trace:
            out.pop("tracestate", None)
            out.update(trace)
        return out

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _wire_messages(request.messages, images=self.accepts_images),
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": wire_tool_name(t.name),
                        "description": t.description,
                        "parameters": dict(t.input_schema) or {"type": "object", "properties": {}},
                    },
                }
                for t in request.tools
            ]
            if not request.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(self.options)
        return body

    def _client(self) -> httpx2.AsyncClient:
        if self._http is None:
            self._http = httpx2.AsyncClient(
                timeout=httpx2.Timeout(self.timeout, connect=min(self.timeout, 30.0))
            )
        return self._http

    def parse_body(self, data: Any, request: ModelRequest) -> ModelResponse:
        """The `ModelResponse` of a provider's (non-streamed, or re-assembled) answer body."""
        names = {wire_tool_name(t.name): t.name for t in request.tools}
        return _parse_completion(data, names)

    async def respond(self, request: ModelRequest) -> ModelResponse:
        """Ask the provider for the next step (one HTTP request, streamed or not)."""
        if self.stream:
            return await self._respond_streamed(request)
        headers = self.provider_headers(request.turn)
        body = self.request_body(request)
        try:
            response = await self._client().post(
                self.endpoint, json=body, headers=headers, params=self.query_params, timeout=self.timeout
            )
        except httpx2.TimeoutException:
            raise ModelError(
                f"the model provider at {self.endpoint} did not answer within {self.timeout:g} s"
            ) from None
        except httpx2.HTTPError as exc:
            raise ModelError(
                f"cannot reach the model provider at {self.endpoint}: "
                f"{type(exc).__name__}: {_snippet(str(exc))}"
            ) from None
        if response.status_code >= 400:
            raise ModelError(
                f"the model provider answered HTTP {response.status_code}: {_error_message(response)}",
                status=response.status_code,
            )
        try:
            data = response.json()
        except ValueError:
            raise ModelError(
                f"the model provider answered malformed JSON (HTTP {response.status_code}): "
                f"{_snippet(response.text) or 'empty body'}",
                status=response.status_code,
            ) from None
        return self.parse_body(data, request)

    def _assembler(self) -> ChatStreamAssembler | ResponsesStreamAssembler:
        return ChatStreamAssembler()

    async def _respond_streamed(self, request: ModelRequest) -> ModelResponse:
        headers = self.provider_headers(request.turn)
        body = self.request_body(request)
        assembler = self._assembler()
        try:
            async with self._client().stream(
                "POST",
                self.endpoint,
                json=body,
                headers=headers,
                params=self.query_params,
                timeout=self.timeout,
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    status = response.status_code
                    message = _error_message(response)
                    raise ModelError(f"the model provider answered HTTP {status}: {message}", status=status)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    await response.aread()  # the provider ignored "stream": a plain answer
                    try:
                        data = response.json()
                    except ValueError:
                        raise ModelError(
                            f"the model provider answered malformed JSON (HTTP {response.status_code}): "
                            f"{_snippet(response.text) or 'empty body'}",
                            status=response.status_code,
                        ) from None
                    return self.parse_body(data, request)
                async for event, data in sse_events(response.aiter_lines()):
                    delta = assembler.feed(event, data)
                    if delta and request.on_text_delta is not None:
                        await request.on_text_delta(delta)
                    if assembler.done:
                        break
        except httpx2.TimeoutException:
            raise ModelError(
                f"the model provider at {self.endpoint} did not answer within {self.timeout:g} s"
            ) from None
        except httpx2.HTTPError as exc:
            raise ModelError(
                f"cannot reach the model provider at {self.endpoint}: "
                f"{type(exc).__name__}: {_snippet(str(exc))}"
            ) from None
        except StreamError as exc:
            raise ModelError(f"the model provider's stream broke off: {exc}") from None
        try:
            data = assembler.result()
        except StreamError as exc:
            raise ModelError(f"the model provider's stream broke off: {exc}") from None
        return self.parse_body(data, request)


def _wire_messages(messages: Iterable[Message], *, images: bool) -> list[dict[str, Any]]:
    """The Chat Completions messages; tool images follow each run of tool results as a user message."""
    wired: list[dict[str, Any]] = []
    pending: list[tuple[Message, ImagePart]] = []
    for message in messages:
        if message.role != "tool" and pending:
            wired.append(_images_message(pending))
            pending = []
        wired.append(_wire_message(message))
        if images and message.role == "tool":
            pending.extend((message, image) for image in message.images)
    if pending:
        wired.append(_images_message(pending))
    return wired


def _images_message(images: list[tuple[Message, ImagePart]]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for message, image in images:
        parts.append(
            {
                "type": "text",
                "text": f"Image returned by the tool call {message.tool_call_id} ({message.name}):",
            }
        )
        parts.append({"type": "image_url", "image_url": {"url": image.data_url}})
    return {"role": "user", "content": parts}


def _wire_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        content = message.content or ""
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": f"ERROR: {content}" if message.is_error else content,
        }
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": wire_tool_name(call.name),
                    # Invalid arguments are not sent back verbatim: some servers re-parse
                    # the history and would refuse the whole request.
                    "arguments": json.dumps(call.arguments),
                },
            }
            for call in message.tool_calls
        ]
    return out


def _error_message(response: httpx2.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return _snippet(response.text) or response.reason_phrase or "no details"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return _snippet(error["message"])
        if isinstance(error, str):
            return _snippet(error)
        if isinstance(data.get("message"), str):
            return _snippet(data["message"])
    return _snippet(json.dumps(data))


def _malformed(problem: str) -> ModelError:
    return ModelError(f"the model provider's answer is not a chat completion: {problem}")


def _parse_completion(data: Any, names: Mapping[str, str]) -> ModelResponse:
    if not isinstance(data, dict):
        raise _malformed("the body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _malformed("no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _malformed("choices[0] has no message")
    text = _content_text(message.get("content"))
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise _malformed("message.tool_calls is not a list")
    calls: list[ToolCall] = []
    for index, raw in enumerate(raw_calls):
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _malformed(f"tool_calls[{index}] has no function name")
        wire = function["name"]
        # A name that is not in the catalog is kept as it is: the loop answers the model
        # with a tool error (an unknown tool) and the turn goes on.
        name = names.get(wire) or wire or "<unnamed>"
        call_id = raw.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = _new_call_id()
        arguments, problem = _parse_arguments(function.get("arguments"))
        calls.append(ToolCall(name, arguments, id=call_id, arguments_error=problem))
    finish = choice.get("finish_reason")
    usage = data.get("usage")
    return ModelResponse(
        text=text,
        tool_calls=tuple(calls),
        finish_reason=finish if isinstance(finish, str) else None,
        usage=usage if isinstance(usage, dict) else None,
    )


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(texts)
    raise _malformed("message.content is neither text nor a list of parts")


def _parse_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, dict):  # some servers send an object rather than JSON text
        return dict(raw), None
    if not isinstance(raw, str):
        return {}, f"arguments must be JSON text, got {type(raw).__name__}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON ({exc.msg} at position {exc.pos}): {_snippet(raw)[:120]}"
    if not isinstance(value, dict):
        return {}, f"the arguments must be a JSON object, not {type(value).__name__}"
    return value, None

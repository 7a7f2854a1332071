"""Durable agent turns on DBOS Transact (``pip install "codex-runtime[durable]"``).

A turn is a DBOS workflow and each model call and each tool call a step, so a turn cut by
a crash resumes when its worker (or, on a shared Postgres, another worker) starts again:
finished steps are not run again, and a tool call that was in flight is resent only when
the tool is annotated ``readOnlyHint`` or ``idempotentHint`` (otherwise the model is told
its outcome is unknown). The resumed turn keeps its id, so `TurnHeaders` sets the same turn
entries again. Sessions and models are rebuilt from factories registered at start, never
from pickled objects; turns of one session run one at a time across workers.

DBOS is asyncio-based, and so is this layer: `DurableRuntime` refuses to run on trio.
Everything else in codex-runtime runs on both.
"""

from ._loop import UNKNOWN_OUTCOME
from ._runtime import (
    QUEUE_NAME,
    WORKFLOW_NAME,
    DurableError,
    DurableRuntime,
    DurableTurnResult,
    ModelFactory,
    SessionFactory,
)

__all__ = [
    "QUEUE_NAME",
    "UNKNOWN_OUTCOME",
    "WORKFLOW_NAME",
    "DurableError",
    "DurableRuntime",
    "DurableTurnResult",
    "ModelFactory",
    "SessionFactory",
]

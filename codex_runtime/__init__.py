"""codex-runtime: an agent session runtime with turn lifecycle hooks.

A `Session` owns long-lived MCP clients and runs one turn at a time; hooks run at turn
start and end; request headers and W3C trace context reach MCP servers at the right scope
and nowhere else.
"""

from ._version import __version__
from .agent import (
    AgentError,
    AgentLoop,
    MaxStepsError,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    OpenAIChatModel,
    ScriptedModel,
    ToolCall,
    TurnResult,
)
from .client import (
    McpClient,
    ServerConfig,
    ServerUnavailableError,
    ToolCallError,
    ToolTimeoutError,
    bind_turn,
    current_turn_id,
    request_headers,
)
from .config import ConfigError, ConfigWarning, load_config
from .headers import (
    PROTECTED,
    CodexRuntimeError,
    HeaderLimits,
    HeaderPolicy,
    Headers,
    InvalidHeaderError,
    is_secret,
    redact,
)
from .hooks import ForwardHeaders, InvalidMetadataError, TurnHeaders
from .session import (
    AbortReason,
    HookFailure,
    Session,
    SessionTool,
    ToolCallRecord,
    Turn,
    TurnAbortedError,
    TurnHandle,
    TurnHook,
    TurnInProgressError,
    TurnOutcome,
    TurnState,
    TurnStateError,
)
from .tracing import TraceTurns, TracingUnavailableError

__all__ = [
    "PROTECTED",
    "AbortReason",
    "AgentError",
    "AgentLoop",
    "CodexRuntimeError",
    "ConfigError",
    "ConfigWarning",
    "ForwardHeaders",
    "HeaderLimits",
    "HeaderPolicy",
    "Headers",
    "HookFailure",
    "InvalidHeaderError",
    "InvalidMetadataError",
    "MaxStepsError",
    "McpClient",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "OpenAIChatModel",
    "ScriptedModel",
    "ServerConfig",
    "ServerUnavailableError",
    "Session",
    "SessionTool",
    "ToolCall",
    "ToolCallError",
    "ToolCallRecord",
    "ToolTimeoutError",
    "TraceTurns",
    "TracingUnavailableError",
    "Turn",
    "TurnAbortedError",
    "TurnHandle",
    "TurnHeaders",
    "TurnHook",
    "TurnInProgressError",
    "TurnOutcome",
    "TurnResult",
    "TurnState",
    "TurnStateError",
    "__version__",
    "bind_turn",
    "current_turn_id",
    "is_secret",
    "load_config",
    "redact",
    "request_headers",
]

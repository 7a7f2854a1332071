"""codex-runtime: an agent session runtime with turn lifecycle hooks.

A `Session` owns long-lived MCP clients and runs one turn at a time; hooks run at turn
start and end; request headers and W3C trace context reach MCP servers at the right scope
and nowhere else.

The names below are imported from their modules on first use, so that importing one light
module (the command line, `codex_runtime.headers`) does not load the MCP SDK, the HTTP
client or the agent stack. ``from codex_runtime import Session`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._model_providers import ModelProvider, ModelSettings
    from ._responses import OpenAIResponsesModel
    from .agent import (
        AgentError,
        AgentLoop,
        MaxStepsError,
        Model,
        ModelError,
        ModelRequest,
        ModelResponse,
        ModelSampling,
        OpenAIChatModel,
        ScriptedModel,
        TextDelta,
        ToolCall,
        TurnResult,
    )
    from .client import (
        AuthorizationError,
        ClientHandlers,
        McpClient,
        McpRequestError,
        ServerConfig,
        ServerRequest,
        ServerUnavailableError,
        ToolCallError,
        ToolTimeoutError,
        bind_turn,
        current_turn_id,
        request_headers,
    )
    from .config import (
        CodexConfig,
        ConfigError,
        ConfigWarning,
        ServerSettingsError,
        load_codex_config,
        load_config,
    )
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
    from .hooks import (
        CodexHooks,
        CommandHook,
        ForwardHeaders,
        HookCommandError,
        HookConfigWarning,
        InvalidMetadataError,
        TurnHeaders,
    )
    from .session import (
        AbortReason,
        HookFailure,
        PromptDecision,
        Session,
        SessionPrompt,
        SessionResource,
        SessionTool,
        StopDecision,
        ToolCallDenied,
        ToolCallRecord,
        ToolCallRequest,
        ToolCallStatus,
        ToolDecision,
        Turn,
        TurnAbortedError,
        TurnHandle,
        TurnHook,
        TurnInProgressError,
        TurnOutcome,
        TurnState,
        TurnStateError,
    )
    from .store import SessionStore, SqliteStore, StoreError
    from .tracing import TraceTurns, TracingUnavailableError

#: Module -> the public names it defines, re-exported here and imported on first use. A new
#: public name goes here, in the `TYPE_CHECKING` imports above (for type checkers) and in
#: `__all__` (tests/test_lazy_imports.py checks that the three agree).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "agent": (
        "AgentError",
        "AgentLoop",
        "MaxStepsError",
        "Model",
        "ModelError",
        "ModelRequest",
        "ModelResponse",
        "ModelSampling",
        "OpenAIChatModel",
        "ScriptedModel",
        "TextDelta",
        "ToolCall",
        "TurnResult",
    ),
    "_responses": ("OpenAIResponsesModel",),
    "_model_providers": ("ModelProvider", "ModelSettings"),
    "client": (
        "AuthorizationError",
        "ClientHandlers",
        "McpClient",
        "McpRequestError",
        "ServerConfig",
        "ServerRequest",
        "ServerUnavailableError",
        "ToolCallError",
        "ToolTimeoutError",
        "bind_turn",
        "current_turn_id",
        "request_headers",
    ),
    "config": (
        "CodexConfig",
        "ConfigError",
        "ConfigWarning",
        "ServerSettingsError",
        "load_codex_config",
        "load_config",
    ),
    "headers": (
        "PROTECTED",
        "CodexRuntimeError",
        "HeaderLimits",
        "HeaderPolicy",
        "Headers",
        "InvalidHeaderError",
        "is_secret",
        "redact",
    ),
    "hooks": (
        "CodexHooks",
        "CommandHook",
        "ForwardHeaders",
        "HookCommandError",
        "HookConfigWarning",
        "InvalidMetadataError",
        "TurnHeaders",
    ),
    "session": (
        "AbortReason",
        "HookFailure",
        "PromptDecision",
        "Session",
        "SessionPrompt",
        "SessionResource",
        "SessionTool",
        "StopDecision",
        "ToolCallDenied",
        "ToolCallRecord",
        "ToolCallRequest",
        "ToolCallStatus",
        "ToolDecision",
        "Turn",
        "TurnAbortedError",
        "TurnHandle",
        "TurnHook",
        "TurnInProgressError",
        "TurnOutcome",
        "TurnState",
        "TurnStateError",
    ),
    "store": (
        "SessionStore",
        "SqliteStore",
        "StoreError",
    ),
    "tracing": (
        "TraceTurns",
        "TracingUnavailableError",
    ),
}

#: Public submodules reachable as attributes (``codex_runtime.tracing``) without an import.
_SUBMODULES = frozenset(
    {
        "agent",
        "app_server",
        "auth",
        "cli",
        "client",
        "config",
        "headers",
        "hooks",
        "session",
        "store",
        "testing",
        "tracing",
    }
)

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "PROTECTED",
    "AbortReason",
    "AgentError",
    "AgentLoop",
    "AuthorizationError",
    "ClientHandlers",
    "CodexConfig",
    "CodexHooks",
    "CodexRuntimeError",
    "CommandHook",
    "ConfigError",
    "ConfigWarning",
    "ForwardHeaders",
    "HeaderLimits",
    "HeaderPolicy",
    "Headers",
    "HookCommandError",
    "HookConfigWarning",
    "HookFailure",
    "InvalidHeaderError",
    "InvalidMetadataError",
    "MaxStepsError",
    "McpClient",
    "McpRequestError",
    "Model",
    "ModelError",
    "ModelProvider",
    "ModelRequest",
    "ModelResponse",
    "ModelSampling",
    "ModelSettings",
    "OpenAIChatModel",
    "OpenAIResponsesModel",
    "PromptDecision",
    "ScriptedModel",
    "ServerConfig",
    "ServerRequest",
    "ServerSettingsError",
    "ServerUnavailableError",
    "Session",
    "SessionPrompt",
    "SessionResource",
    "SessionStore",
    "SessionTool",
    "SqliteStore",
    "StopDecision",
    "StoreError",
    "TextDelta",
    "ToolCall",
    "ToolCallDenied",
    "ToolCallError",
    "ToolCallRecord",
    "ToolCallRequest",
    "ToolCallStatus",
    "ToolDecision",
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
    "load_codex_config",
    "load_config",
    "redact",
    "request_headers",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        if name in _SUBMODULES:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})

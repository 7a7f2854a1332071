"""JSON-RPC 2.0 pieces of the app-server: error codes, typed errors, params checked by field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "Params",
    "RpcError",
]

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
#: Implementation-defined (JSON-RPC's -32000..-32099): the request was valid but could not be done.
SERVER_ERROR: Final = -32000


class RpcError(Exception):
    """An error answer: ``code``, ``message`` and optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class Params:
    """A request's ``params``, read field by field; a wrong field is -32602 naming it."""

    def __init__(self, raw: Any) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise RpcError(INVALID_PARAMS, f"params must be an object, not {_kind(raw)}")
        self.raw: Mapping[str, Any] = raw

    def _bad(self, name: str, expected: str) -> RpcError:
        value = self.raw.get(name)
        return RpcError(INVALID_PARAMS, f"invalid params: `{name}` must be {expected}, not {_kind(value)}")

    def string(self, name: str) -> str:
        value = self.raw.get(name)
        if name not in self.raw:
            raise RpcError(INVALID_PARAMS, f"invalid params: missing field `{name}`")
        if not isinstance(value, str) or not value:
            raise self._bad(name, "a non-empty string")
        return value

    def optional_string(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(name, "a string or null")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._bad(name, "a boolean")
        return value

    def count(self, name: str) -> int | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._bad(name, "a non-negative integer")
        return value

    def user_input(self, name: str = "input") -> list[dict[str, Any]]:
        """The ``input`` list of a turn: text items (``{"type": "text", "text": ...}``)."""
        if name not in self.raw:
            raise RpcError(INVALID_PARAMS, f"invalid params: missing field `{name}`")
        items = self.raw[name]
        if not isinstance(items, list):
            raise self._bad(name, "an array of input items")
        if not items:
            raise RpcError(INVALID_PARAMS, f"invalid params: `{name}` must hold at least one item")
        out: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            where = f"{name}[{index}]"
            if not isinstance(item, Mapping):
                raise RpcError(
                    INVALID_PARAMS, f"invalid params: `{where}` must be an object, not {_kind(item)}"
                )
            kind = item.get("type")
            if kind != "text":
                shown = repr(kind) if isinstance(kind, str) else _kind(kind)
                raise RpcError(
                    INVALID_PARAMS,
                    f'invalid params: `{where}.type` is {shown}; only "text" input is supported',
                )
            text = item.get("text")
            if not isinstance(text, str):
                raise RpcError(
                    INVALID_PARAMS, f"invalid params: `{where}.text` must be a string, not {_kind(text)}"
                )
            if not isinstance(item.get("text_elements", []), list):
                raise RpcError(INVALID_PARAMS, f"invalid params: `{where}.text_elements` must be an array")
            out.append({"type": "text", "text": text, "text_elements": []})
        return out

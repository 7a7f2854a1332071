"""`ServerConfig`: how to reach one MCP server and which turn-scoped data it may receive."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx2

from .auth import OAuth
from .headers import CodexRuntimeError, Headers, InvalidHeaderError, is_protected, redact

__all__ = ["ConfigError", "HeaderDelivery", "Protocol", "ServerConfig"]

HeaderDelivery = Literal["http", "meta", "both"]
Protocol = Literal["auto", "legacy"]

_URL_RE = re.compile(r"^https?://[^\s/?#@]*@?[^\s/?#]+(?:[/?#][^\s]*)?$", re.ASCII)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DELIVERIES = ("http", "meta", "both")
_PROTOCOLS = ("auto", "legacy")


class ConfigError(CodexRuntimeError, ValueError):
    """A server configuration (or a configuration file) is invalid.

    The message names the offending server and key and says how to fix it; it never
    contains the value of a header or an environment variable.
    """


def _fail(name: object, key: str, problem: str) -> ConfigError:
    return ConfigError(f"server {name!r}: {key} {problem}")


class _Invalid:
    """Marks a constructor argument that could not be converted; reported by the validator."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem


def _str_tuple(key: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Iterable):
            return _Invalid(key, "must be a list of strings")
        return tuple(value)

    return convert


def _args(value: Any) -> Any:
    return _str_tuple("args")(value)


def _methods(value: Any) -> Any:
    return _str_tuple("turn_header_methods")(value)


def _disabled(value: Any) -> Any:
    return _str_tuple("disabled_tools")(value)


def _opt_str_tuple(value: Any) -> Any:
    if value is None:
        return None
    return _str_tuple("enabled_tools")(value)


def _to_headers(value: Any) -> Any:
    if isinstance(value, Headers):
        return value
    if (value is not None and not isinstance(value, Mapping | Iterable)) or isinstance(value, str | bytes):
        return _Invalid("headers", "must be a mapping of header names to values")
    try:
        return Headers(value or ())
    except InvalidHeaderError as exc:
        return _Invalid("headers", f"invalid: {exc}")
    except (TypeError, ValueError):
        return _Invalid("headers", "must be a mapping of header names to values")


def _to_env(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return _Invalid("env", "must map strings to strings")
    return dict(value)


def _secret_names(value: Any) -> Any:
    if value is None:
        return frozenset()
    if isinstance(value, str) or not isinstance(value, Iterable):
        return _Invalid("secret_headers", "must be a list of header names")
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        return _Invalid("secret_headers", "must be a list of header names")
    return frozenset(n.strip().lower() for n in names)


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[REDACTED]@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@attrs.frozen(repr=False)
class ServerConfig:
    """How to reach one MCP server, validated at construction.

    Exactly one of ``url`` (streamable HTTP) or ``command`` (a stdio subprocess, with
    ``args``, ``env`` and ``cwd``) must be given. Invalid input raises `ConfigError`
    before anything is connected.

    Attributes:
        name: Short identifier (letters, digits, ``_``, ``.``, ``-``; at most 64), used to
            qualify tool names as ``name__tool``.
        headers: Static HTTP headers sent on every request of this server (e.g. an API
            key). On stdio they travel in ``params._meta.extra_headers`` of tool calls.
        apps: The server is a first-party "Apps" server: it receives the turn entries of
            `TurnHeaders` (session id, turn id, turn metadata). No other server does.
        forward: The server receives the caller headers of `ForwardHeaders`.
        required: A session fails to start when this server cannot be connected.
        protocol: ``"auto"`` (the SDK's negotiation; the stateless 2026-07-28 protocol
            against modern servers) or ``"legacy"`` (the 2025-11-25 session protocol).
        header_delivery: Where turn- and call-scoped headers go: ``"http"`` (HTTP
            headers), ``"meta"`` (``params._meta.extra_headers``) or ``"both"``. Stdio
            servers are always ``"meta"``.
        turn_header_methods: JSON-RPC methods that carry turn entries.
        startup_timeout: Seconds allowed to connect (initialize / discover and list tools).
        tool_timeout: Default seconds allowed for one ``tools/call``.
        enabled_tools: When set, only these tools are listed and callable.
        disabled_tools: These tools are hidden and cannot be called.
        secret_headers: Names of static headers whose values are secret whatever their
            name, because of where they came from (`load_config` lists those read from
            the environment: ``env_http_headers`` and ``bearer_token_env_var``). They are
            redacted wherever headers are shown (reprs, ``codex-runtime call
            --show-headers``), beside the names `is_secret` knows.
        auth: HTTP authorization: an `OAuth` spec, or any ``httpx2.Auth`` (the SDK's
            client-credentials, private-key JWT and identity-assertion providers pass
            straight through). With ``auth`` set, no header layer may set ``authorization``.
    """

    name: str
    url: str | None = None
    command: str | None = None
    args: tuple[str, ...] = attrs.field(default=(), converter=_args)
    env: Mapping[str, str] | None = attrs.field(default=None, converter=_to_env, hash=False)
    cwd: str | None = None
    headers: Headers = attrs.field(factory=Headers, converter=_to_headers)
    apps: bool = False
    forward: bool = False
    required: bool = False
    protocol: Protocol = "auto"
    header_delivery: HeaderDelivery = "http"
    turn_header_methods: tuple[str, ...] = attrs.field(default=("tools/call",), converter=_methods)
    startup_timeout: float = 10.0
    tool_timeout: float = 60.0
    enabled_tools: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_str_tuple)
    disabled_tools: tuple[str, ...] = attrs.field(default=(), converter=_disabled)
    secret_headers: frozenset[str] = attrs.field(factory=frozenset, converter=_secret_names)
    auth: OAuth | httpx2.Auth | None = attrs.field(default=None, eq=False)

    def __attrs_post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME_RE.match(name) or "__" in name:
            raise ConfigError(
                f"server name {name!r} is invalid: use 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit, without '__' (it separates server and tool names)"
            )
        for field in attrs.fields(type(self)):
            converted = getattr(self, field.name)
            if isinstance(converted, _Invalid):
                raise _fail(name, converted.key, converted.problem)
        if (self.url is None) == (self.command is None):
            raise _fail(name, "url/command", "must have exactly one of `url` (HTTP) or `command` (stdio)")
        if self.url is not None:
            if not isinstance(self.url, str) or not _URL_RE.match(self.url):
                raise _fail(
                    name, "url", "must be an http:// or https:// URL without spaces or control characters"
                )
            if self.args or self.env or self.cwd is not None:
                raise _fail(name, "args/env/cwd", "only apply to stdio servers (with `command`)")
        if self.command is not None and (not isinstance(self.command, str) or not self.command):
            raise _fail(name, "command", "must be a non-empty string")
        if not all(isinstance(a, str) for a in self.args):
            raise _fail(name, "args", "must be a list of strings")
        if self.env is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()
        ):
            raise _fail(name, "env", "must map strings to strings")
        if self.cwd is not None and not isinstance(self.cwd, str):
            raise _fail(name, "cwd", "must be a string")
        for flag in ("apps", "forward", "required"):
            if not isinstance(getattr(self, flag), bool):
                raise _fail(name, flag, "must be true or false")
        if self.protocol not in _PROTOCOLS:
            raise _fail(name, "protocol", f"must be one of {', '.join(_PROTOCOLS)}")
        if self.header_delivery not in _DELIVERIES:
            raise _fail(name, "header_delivery", f"must be one of {', '.join(_DELIVERIES)}")
        for key in ("startup_timeout", "tool_timeout"):
            value: Any = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail(name, key, "must be a number of seconds")
            if not (value > 0 and value < 1e9):
                raise _fail(name, key, "must be a positive number of seconds (below 1e9)")
        for key in ("turn_header_methods", "disabled_tools"):
            if not all(isinstance(v, str) and v for v in getattr(self, key)):
                raise _fail(name, key, "must be a list of non-empty strings")
        if self.enabled_tools is not None and not all(isinstance(v, str) and v for v in self.enabled_tools):
            raise _fail(name, "enabled_tools", "must be a list of non-empty strings")
        for header in self.headers.keys():
            if is_protected(header):
                raise _fail(name, "headers", f"may not set {header!r}: the transport manages it")
        if self.auth is not None:
            if not isinstance(self.auth, OAuth | httpx2.Auth):
                raise _fail(name, "auth", "must be an OAuth(...) spec or an httpx2.Auth")
            if self.command is not None:
                raise _fail(name, "auth", "applies to HTTP servers (with `url`) only")
            if "authorization" in self.headers:
                raise _fail(
                    name, "headers", "may not set 'authorization' with `auth`: the auth provider sets it"
                )

    @property
    def transport(self) -> Literal["streamable-http", "stdio"]:
        """``"streamable-http"`` or ``"stdio"``."""
        return "stdio" if self.command is not None else "streamable-http"

    @property
    def effective_delivery(self) -> HeaderDelivery:
        """The delivery actually used: stdio servers can only take ``"meta"``."""
        return "meta" if self.command is not None else self.header_delivery

    def shown_headers(self, headers: Any = None) -> dict[str, str]:
        """``headers`` (default: the static ones) as they may be shown: secrets redacted.

        Hides the values of `is_secret` names and of ``secret_headers``; accepts any form
        `redact` does (e.g. what a request carried, or ``_meta.extra_headers``).
        """
        return redact(self.headers if headers is None else headers, secret_names=self.secret_headers)

    def tool_allowed(self, tool: str) -> bool:
        """Whether ``enabled_tools`` / ``disabled_tools`` let this tool through."""
        if tool in self.disabled_tools:
            return False
        return self.enabled_tools is None or tool in self.enabled_tools

    def __repr__(self) -> str:
        url = _redact_url(self.url) if isinstance(self.url, str) else self.url
        target = f"url={url!r}" if self.url is not None else f"command={self.command!r}"
        flags = "".join(f", {f}=True" for f in ("apps", "forward", "required") if getattr(self, f))
        # Header values and environment values may be secrets: values of secret names and
        # of names secret by provenance are redacted; environment values are never shown.
        headers = self.shown_headers() if isinstance(self.headers, Headers) else {}
        if self.auth is not None:
            shown = repr(self.auth) if isinstance(self.auth, OAuth) else type(self.auth).__name__
            flags += f", auth={shown}"
        return (
            f"ServerConfig(name={self.name!r}, {target}{flags}, headers=Headers({headers!r}), "
            f"protocol={self.protocol!r}, header_delivery={self.header_delivery!r})"
        )


def value_kind(value: object) -> str:
    """A value's type in the words of the configuration formats (never the value)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"

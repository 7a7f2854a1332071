"""Load `ServerConfig` objects from a Codex ``config.toml`` or an ``mcpServers`` JSON file.

Two file formats are understood, chosen by the file name:

* A ``.json`` file holds the ``mcpServers`` object used by other MCP clients::

      {"mcpServers": {
          "docs": {"url": "https://docs.example.com/mcp", "headers": {"X-Api-Key": "..."}},
          "files": {"command": "mcp-files", "args": ["--root", "."], "env": {"LOG": "1"}}
      }}

* Anything else is read as a Codex ``config.toml``; each ``[mcp_servers.NAME]`` table is
  one server and everything else in the file (model, profiles, ...) is ignored::

      [mcp_servers.docs]
      url = "https://docs.example.com/mcp"
      bearer_token_env_var = "DOCS_TOKEN"
      tool_timeout_sec = 30

Secrets are kept out of errors: a `ConfigError` names the file, the server and the key
at fault but never shows a header value or the value of an environment variable.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
import warnings
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs

from ._codex_hooks import CodexHooks, hooks_for_config
from ._model_providers import ModelSettings, load_model_settings
from ._server_config import ConfigError, ServerConfig
from ._server_config import value_kind as _kind
from .auth import OAuth, default_token_store
from .headers import Headers, InvalidHeaderError, is_protected

__all__ = [
    "CodexConfig",
    "ConfigError",
    "ConfigWarning",
    "ServerSettingsError",
    "load_codex_config",
    "load_config",
]

_Format = Literal["toml", "json"]


class ConfigWarning(UserWarning):
    """A configuration file holds something that is ignored, such as an unknown key.

    The message names the file, the server and the key.
    """


class ServerSettingsError(ConfigError):
    """One server's settings cannot be resolved: an environment variable it names is unset or empty.

    The file itself is fine, so with ``load_config(..., unresolved=...)`` only this server
    is left out (and reported) while the others load.

    Attributes:
        server: The server's name.
        required: Whether the server is marked ``required = true`` (then its failure is
            fatal, as a required server that cannot start).
    """

    def __init__(self, message: str, *, server: str, required: bool = False) -> None:
        super().__init__(message)
        self.server = server
        self.required = required


# Keys understood in a server table of either format; each maps to a `ServerConfig` field.
_COMMON_KEYS: Final = frozenset(
    {
        "command",
        "args",
        "env",
        "env_vars",
        "cwd",
        "url",
        "env_http_headers",
        "bearer_token_env_var",
        "apps",
        "forward",
        "header_delivery",
        "protocol",
        "required",
        "startup_timeout_sec",
        "tool_timeout_sec",
        "enabled_tools",
        "disabled_tools",
        "auth",
        "scopes",
        "oauth",
    }
)
_OAUTH_KEYS: Final = ("client_id", "callback_port")
_TOML_KEYS: Final = _COMMON_KEYS | {"http_headers", "enabled", "startup_timeout_ms"}
_JSON_KEYS: Final = _COMMON_KEYS | {"headers", "type", "disabled", "enabled"}

# Accepted values of a JSON server's "type" key and the transport each requires.
_JSON_TYPES: Final = {"stdio": "command", "http": "url", "streamable-http": "url"}

# A likely meaning of a key that belongs to the other format.
_HINTS: Final = {
    "toml": {"headers": "http_headers", "disabled": "enabled = false"},
    "json": {"http_headers": "headers"},
}


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    unresolved: dict[str, ServerSettingsError] | None = None,
) -> list[ServerConfig]:
    """Read the MCP servers configured in a file, in the order the file lists them.

    A path ending in ``.json`` is read as a JSON ``{"mcpServers": {...}}`` object; any
    other path as a Codex ``config.toml`` (its ``[mcp_servers.NAME]`` tables). Disabled
    servers (``enabled = false`` in TOML, ``"disabled": true`` in JSON) are left out;
    apart from the type of that flag they are not checked.

    Keys of a server table (JSON names in parentheses where they differ):

    * ``command``, ``args``, ``env``, ``cwd``: a stdio server. ``env_vars``: names of
      environment variables passed through to it (as in Codex: a name, or a table
      ``{ name = "VAR", source = "local" }``); an unset variable is skipped, and ``env``
      wins over a variable of the same name. Beside these the server gets only the
      MCP SDK's small default environment (``HOME``, ``LOGNAME``, ``PATH``, ``SHELL``,
      ``TERM``, ``USER`` on POSIX), never the whole environment.
    * ``url``: a streamable HTTP server; ``http_headers`` (``headers``): static headers;
      ``env_http_headers``: header name -> name of the environment variable holding its
      value; ``bearer_token_env_var``: the variable whose value is sent as
      ``Authorization: Bearer <value>``.
    * ``startup_timeout_sec`` (or Codex's ``startup_timeout_ms``), ``tool_timeout_sec``:
      seconds, an integer or a float.
    * ``enabled_tools``, ``disabled_tools``: lists of tool names.
    * ``apps``, ``forward``, ``required``: booleans; ``protocol`` (``"auto"`` or
      ``"legacy"``), ``header_delivery`` (``"http"``, ``"meta"`` or ``"both"``).
    * ``auth = "oauth"``, ``scopes``, ``oauth.client_id``, ``oauth.callback_port`` (Codex's
      keys): an `OAuth` spec. An HTTP server without an ``Authorization`` header uses the
      tokens ``codex-runtime login NAME`` stored for it even without these keys.
    * JSON only: ``type`` (``"stdio"``, ``"http"`` or ``"streamable-http"``), checked
      against ``command``/``url`` and otherwise ignored.

    An unknown key in a server table is reported with a `ConfigWarning` and ignored.

    Args:
        path: The configuration file.
        environ: Environment variables for ``env_http_headers``,
            ``bearer_token_env_var`` and ``env_vars``; `os.environ` (read now) when
            omitted.
        unresolved: When given, a server whose settings cannot be resolved (an
            environment variable named by ``env_http_headers`` or
            ``bearer_token_env_var`` is unset or empty) is left out instead of failing
            the whole file, and its `ServerSettingsError` is stored here under the
            server's name. Without it, that error is raised.

    Returns:
        One validated `ServerConfig` per enabled server.

    Raises:
        ConfigError: The file cannot be read or parsed, or a server entry is invalid
            (wrong type, unknown transport, missing environment variable, invalid
            header, ...). The message names the file, the server and the key, and never
            contains a header value or an environment variable's value.
    """
    where = os.fspath(path)
    env: Mapping[str, str] = os.environ if environ is None else environ
    # Errors are raised outside the `except` blocks: the original exception would stay
    # reachable as `__context__` (even with `from None`) and may hold the file's content.
    problem = None
    try:
        with open(where, "rb") as fp:
            raw = fp.read()
    except OSError as exc:
        problem = f"cannot read the configuration file: {exc.strerror or type(exc).__name__}"
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not valid UTF-8 (at byte {exc.start})"
    if problem is not None:
        raise ConfigError(f"{where}: {problem}")

    fmt: _Format = "json" if where.lower().endswith(".json") else "toml"
    entries = _json_servers(where, text) if fmt == "json" else _toml_servers(where, text)

    servers: list[ServerConfig] = []
    for name, table in entries:
        try:
            server = _build_server(where, fmt, name, table, env)
        except ServerSettingsError as exc:
            if unresolved is None:
                raise
            unresolved[exc.server] = exc
            continue
        if server is not None:
            servers.append(server)
    return servers


@attrs.frozen
class CodexConfig:
    """What `load_codex_config` read from a Codex configuration.

    ``servers``: the enabled MCP servers (as `load_config` returns them); ``hooks``: a
    `CodexHooks` with the file's hooks (empty when none are configured); ``model``: the
    model provider settings, or ``None`` when the file sets none.
    """

    servers: list[ServerConfig] = attrs.field(factory=list)
    hooks: CodexHooks = attrs.field(factory=CodexHooks)
    model: ModelSettings | None = None


def load_codex_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    trust_project_hooks: bool = False,
    unresolved: dict[str, ServerSettingsError] | None = None,
) -> CodexConfig:
    """Read a Codex configuration: its MCP servers, its hooks and its model provider.

    The servers are read as `load_config` reads them. The hooks are those of the file
    (``[hooks]`` of a ``config.toml``), of the ``hooks.json`` beside it, and of the project
    folder ``<cwd>/.codex`` (``hooks.json`` and ``config.toml``). Naming a file is the
    caller's trust decision: its hooks run. Project hooks run only when
    ``trust_project_hooks`` is true (otherwise a `HookConfigWarning` says they were
    skipped), as Codex asks users to trust hooks before they run. Hooks run in ``cwd``
    (default: the current directory).

    ``unresolved`` is passed to `load_config`: servers whose environment variables are
    not set are left out and reported there instead of failing the file.

    Raises:
        ConfigError: The file, a server entry or a hook entry is invalid.
    """
    servers = load_config(path, environ=environ, unresolved=unresolved)
    found = hooks_for_config(path, cwd=cwd, trusted=trust_project_hooks)
    json_file = os.fspath(path).lower().endswith(".json")
    model = None if json_file else load_model_settings(path, environ=environ)
    return CodexConfig(servers=servers, hooks=CodexHooks(found, cwd=cwd), model=model)


# --------------------------------------------------------------------------- parsing


def _toml_servers(where: str, text: str) -> list[tuple[str, Any]]:
    """The ``(name, table)`` pairs of a Codex ``config.toml``'s ``mcp_servers``."""
    problem = None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message says where: "... (at line 3, column 7)".
        problem = str(exc)
    if problem is not None:
        raise ConfigError(f"{where}: invalid TOML: {problem}")
    servers = document.get("mcp_servers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f"{where}: mcp_servers must be a table of [mcp_servers.NAME] tables")
    return list(servers.items())


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _json_servers(where: str, text: str) -> list[tuple[str, Any]]:
    """The ``(name, object)`` pairs of a JSON file's ``mcpServers``."""
    problem = None
    try:
        document = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        # Not chained: `exc.doc` is the whole document.
        problem = f"{exc.msg} (at line {exc.lineno}, column {exc.colno})"
    except _DuplicateKeyError as exc:
        problem = f"duplicate key {exc.args[0]!r}"
    except (ValueError, RecursionError) as exc:
        # E.g. an integer with too many digits, or nesting too deep to parse.
        problem = type(exc).__name__
    if problem is not None:
        raise ConfigError(f"{where}: invalid JSON: {problem}")
    if not isinstance(document, dict):
        raise ConfigError(f"{where}: the top level must be an object with an mcpServers object")
    if "mcpServers" not in document:
        raise ConfigError(f'{where}: no mcpServers object (expected {{"mcpServers": {{...}}}})')
    servers = document["mcpServers"]
    if not isinstance(servers, dict):
        raise ConfigError(f"{where}: mcpServers must be an object mapping server names to objects")
    return list(servers.items())


# --------------------------------------------------------------------------- servers


class _Server:
    """Typed access to one server table; every error names the file, server and key."""

    def __init__(self, where: str, name: str, table: Mapping[str, Any]) -> None:
        self.where = where
        self.name = name
        self.table = table

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where}: server {self.name!r}: {key} {problem}")

    def string(self, key: str, *, nonempty: bool = False) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        if nonempty and not value:
            raise self.error(key, "must not be empty")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def number(self, key: str) -> float | None:
        value = self.table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_kind(value)}")
        number = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
        if not (math.isfinite(number) and number > 0):
            raise self.error(key, "must be a positive, finite number")
        return number

    def strings(self, key: str) -> list[str] | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(key, f"must be a list of strings, not {_kind(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", f"must be a string, not {_kind(item)}")
        return list(value)

    def string_map(self, key: str) -> dict[str, str] | None:
        """A table of strings; a wrong value is reported by its key only (it may be secret)."""
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table of strings, not {_kind(value)}")
        for item_key, item in value.items():
            if not isinstance(item, str):
                raise self.error(f"{key}[{item_key!r}]", f"must be a string, not {_kind(item)}")
        return dict(value)


def _build_server(
    where: str, fmt: _Format, name: str, table: object, environ: Mapping[str, str]
) -> ServerConfig | None:
    """Check one server table and build its `ServerConfig`; ``None`` when it is disabled."""
    if not isinstance(table, dict):
        what = "an object" if fmt == "json" else "a table ([mcp_servers.NAME])"
        raise ConfigError(f"{where}: server {name!r} must be {what}, not {_kind(table)}")
    server = _Server(where, name, table)

    enabled = server.boolean("enabled")
    disabled = server.boolean("disabled") if fmt == "json" else None
    if disabled is True or enabled is False:
        return None

    known = _TOML_KEYS if fmt == "toml" else _JSON_KEYS
    for key in table:
        if key not in known:
            hint = _HINTS[fmt].get(key)
            tail = f" (did you mean {hint}?)" if hint else ""
            warnings.warn(
                f"{where}: server {name!r}: unknown key {key!r} ignored{tail}", ConfigWarning, stacklevel=3
            )

    command = server.string("command")
    url = server.string("url")
    if (command is None) == (url is None):
        raise server.error("url/command", "exactly one of `url` (HTTP) or `command` (stdio) must be set")
    if fmt == "json":
        kind = server.string("type")
        if kind is not None:
            required_key = _JSON_TYPES.get(kind)
            if required_key is None:
                raise server.error("type", f"must be one of {', '.join(_JSON_TYPES)}")
            if server.table.get(required_key) is None:
                raise server.error("type", f"{kind!r} requires `{required_key}`")

    secrets: list[str] = []
    args = server.strings("args")
    env = server.string_map("env")
    if env is not None:
        secrets.extend(env.values())
    passed = _env_vars(server, environ)
    if passed is not None:
        if url is not None:
            raise server.error("env_vars", "only applies to stdio servers (with `command`)")
        secrets.extend(passed.values())
        env = {**passed, **(env or {})}
    cwd = server.string("cwd")
    from_environ: list[str] = []
    headers = _headers(server, fmt, environ, secrets, from_environ)

    startup_timeout = server.number("startup_timeout_sec")
    startup_timeout_ms = server.number("startup_timeout_ms") if fmt == "toml" else None
    if startup_timeout_ms is not None:
        if startup_timeout is not None:
            raise server.error("startup_timeout_ms", "conflicts with startup_timeout_sec: set only one")
        startup_timeout = startup_timeout_ms / 1000
        if startup_timeout <= 0:
            raise server.error("startup_timeout_ms", "must be a positive number")
    tool_timeout = server.number("tool_timeout_sec")
    enabled_tools = server.strings("enabled_tools")
    disabled_tools = server.strings("disabled_tools")
    flags = {flag: server.boolean(flag) for flag in ("apps", "forward", "required")}
    choices = {key: server.string(key) for key in ("protocol", "header_delivery")}
    auth = _oauth(server, url, headers)

    fields: dict[str, Any] = {
        "url": url,
        "command": command,
        "args": args,
        "env": env,
        "cwd": cwd,
        "headers": headers,
        "startup_timeout": startup_timeout,
        "tool_timeout": tool_timeout,
        "enabled_tools": enabled_tools,
        "disabled_tools": disabled_tools,
        "secret_headers": from_environ or None,
        "auth": auth,
        **flags,
        **choices,
    }
    # Unset keys keep `ServerConfig`'s defaults.
    given = {key: value for key, value in fields.items() if value is not None or key in ("url", "command")}
    # Raised outside the `except` blocks so that the original (which may hold values in its
    # arguments or its own chain) is neither `__cause__` nor `__context__`.
    problem = None
    try:
        return ServerConfig(name=server.name, **given)
    except (ConfigError, InvalidHeaderError) as exc:
        problem = _redact(str(exc), secrets)
    except (TypeError, ValueError) as exc:  # defensive: a check above should have caught it
        problem = f"invalid entry ({type(exc).__name__})"
    if not problem.startswith("server "):
        problem = f"server {name!r}: {problem}"
    raise ConfigError(f"{where}: {problem}")


def _oauth(server: _Server, url: str | None, headers: list[tuple[str, str]]) -> OAuth | None:
    """The server's `OAuth` spec (Codex's ``auth``, ``scopes``, ``oauth.client_id``,
    ``oauth.callback_port``), or ``None``.

    As in Codex, an HTTP server without a configured ``Authorization`` header also uses the
    tokens a ``codex-runtime login`` stored for it, with no OAuth key at all.
    """
    mode = server.string("auth")
    if mode is not None and mode not in ("oauth", "chatgpt"):
        raise server.error("auth", 'must be "oauth"')
    if mode == "chatgpt":
        warnings.warn(
            f'{server.where}: server {server.name!r}: auth = "chatgpt" is unsupported; using OAuth',
            ConfigWarning,
            stacklevel=4,
        )
    scopes = server.strings("scopes")
    table = server.table.get("oauth")
    if table is not None and not isinstance(table, dict):
        raise server.error("oauth", "must be a table (oauth.client_id, oauth.callback_port)")
    options: dict[str, Any] = dict(table or {})
    for key in options:
        if key not in _OAUTH_KEYS:
            warnings.warn(
                f"{server.where}: server {server.name!r}: unknown key 'oauth.{key}' ignored",
                ConfigWarning,
                stacklevel=4,
            )
    client_id = options.get("client_id")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        raise server.error("oauth.client_id", "must be a non-empty string")
    port = options.get("callback_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise server.error("oauth.callback_port", "must be a port number")
    explicit = mode is not None or scopes is not None or table is not None
    if url is None:
        if explicit:
            raise server.error("auth/scopes/oauth", "apply to HTTP servers (with `url`) only")
        return None
    if any(name.lower() == "authorization" for name, _ in headers):
        if explicit:
            raise server.error(
                "auth/scopes/oauth", "cannot be combined with an Authorization header or bearer_token_env_var"
            )
        return None
    if not explicit and not default_token_store(server.name, url).exists():
        return None
    try:
        return OAuth(scopes=tuple(scopes or ()), client_id=client_id, callback_port=port or 0)
    except ValueError as exc:
        raise server.error("scopes", str(exc)) from None


def _headers(
    server: _Server, fmt: _Format, environ: Mapping[str, str], secrets: list[str], from_environ: list[str]
) -> list[tuple[str, str]]:
    """The server's static headers: literal ones, then env_http_headers, then the bearer token.

    Every value is added to ``secrets``; each header is checked on its own so that an
    error can name the header without showing its value. The names of headers whose
    value was read from the environment are added to ``from_environ``: their values are
    secret whatever the name (`ServerConfig.secret_headers`).
    """
    headers: list[tuple[str, str]] = []
    seen: dict[str, str] = {}  # lower-cased header name -> the key that set it

    def add(key: str, header: str, value: str) -> None:
        secrets.append(value)
        label = f"{key}[{header!r}]" if key != "bearer_token_env_var" else key
        previous = seen.get(header.lower())
        if previous is not None:
            raise server.error(label, f"sets header {header!r}, which {previous} already sets")
        _check_header(server, label, header, value)
        seen[header.lower()] = key
        headers.append((header, value))

    static_key = "http_headers" if fmt == "toml" else "headers"
    for header, value in (server.string_map(static_key) or {}).items():
        add(static_key, header, value)

    for header, variable in (server.string_map("env_http_headers") or {}).items():
        value = _lookup(server, f"env_http_headers[{header!r}]", variable, environ)
        add("env_http_headers", header, value)
        from_environ.append(header)

    bearer_variable = server.string("bearer_token_env_var", nonempty=True)
    if bearer_variable is not None:
        token = _lookup(server, "bearer_token_env_var", bearer_variable, environ)
        secrets.append(token)
        if not token.strip():
            raise _unresolved(
                server,
                "bearer_token_env_var",
                f"names environment variable {bearer_variable!r}, which is empty",
            )
        add("bearer_token_env_var", "Authorization", f"Bearer {token}")
        from_environ.append("authorization")
    return headers


def _env_vars(server: _Server, environ: Mapping[str, str]) -> dict[str, str] | None:
    """The variables ``env_vars`` passes through to a stdio server, read from ``environ``.

    Codex's forms: a name, or ``{ name = "VAR", source = "local" }``. Unset variables are
    skipped, as Codex does.
    """
    value = server.table.get("env_vars")
    if value is None:
        return None
    if not isinstance(value, list):
        raise server.error("env_vars", f"must be a list of environment variable names, not {_kind(value)}")
    passed: dict[str, str] = {}
    for index, item in enumerate(value):
        key = f"env_vars[{index}]"
        if isinstance(item, dict):
            unknown = set(item) - {"name", "source"}
            if unknown:
                raise server.error(key, f"has unknown key {sorted(unknown)[0]!r} (expected name, source)")
            source = item.get("source", "local")
            if source != "local":
                raise server.error(
                    key, "source must be 'local' (a remote source needs remote stdio, which is not supported)"
                )
            item = item.get("name")
        if not isinstance(item, str) or not item or "=" in item or "\0" in item:
            raise server.error(key, "must be the name of an environment variable")
        found = environ.get(item)
        if isinstance(found, str):
            passed[item] = found
    return passed


def _lookup(server: _Server, label: str, variable: str, environ: Mapping[str, str]) -> str:
    """The value of an environment variable named by the configuration."""
    if not variable:
        raise server.error(label, "must name an environment variable, not be empty")
    value = environ.get(variable)
    if value is None:
        raise _unresolved(server, label, f"names environment variable {variable!r}, which is not set")
    if not isinstance(value, str):  # a caller-supplied mapping holding a non-string
        raise server.error(label, f"names environment variable {variable!r}, whose value is not a string")
    return value


def _unresolved(server: _Server, key: str, problem: str) -> ServerSettingsError:
    required = server.table.get("required") is True
    message = f"{server.where}: server {server.name!r}: {key} {problem}"
    return ServerSettingsError(message, server=server.name, required=required)


def _check_header(server: _Server, label: str, header: str, value: str) -> None:
    """Raise a `ConfigError` naming ``header`` (never its value) if it cannot be configured."""
    if is_protected(header):
        raise server.error(label, f"may not set header {header.lower()!r}: the transport manages it")
    problem = None
    try:
        Headers([(header, value)])
    except (InvalidHeaderError, TypeError) as exc:
        # `InvalidHeaderError` never shows a value; redacting is a second line of defence.
        problem = f"is invalid: {_redact(str(exc), [value])}"
    if problem is not None:
        raise server.error(label, problem)


def _redact(message: str, secrets: list[str]) -> str:
    """``message`` with every secret value (and its ``repr``) replaced by ``***``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) < 3:  # too short to hide without mangling the message
            continue
        for form in (repr(secret)[1:-1], secret):
            if form:
                message = message.replace(form, "***")
    return message

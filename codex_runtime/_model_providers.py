"""Codex's model provider settings: ``model``, ``model_provider`` and ``[model_providers.NAME]``.

A Codex ``config.toml`` names its model and the provider serving it::

    model = "gpt-5.1"
    model_provider = "gateway"

    [model_providers.gateway]
    name = "Our gateway"
    base_url = "https://llm.example.com/v1"
    env_key = "GATEWAY_API_KEY"          # the API key is read from this variable
    wire_api = "responses"               # or "chat"
    http_headers = { "x-team" = "infra" }
    env_http_headers = { "x-tenant" = "TENANT_ID" }   # header = value of the variable
    query_params = { api-version = "2025-04-01-preview" }

`model_settings` reads them into `ModelSettings`; `ModelSettings.build` makes the model
(`OpenAIResponsesModel` for ``wire_api = "responses"``, `OpenAIChatModel` for ``"chat"``).
As in Codex, the built-in providers ``openai`` (``https://api.openai.com/v1``, or
``$OPENAI_BASE_URL``/``openai_base_url``; key ``$OPENAI_API_KEY``; headers
``OpenAI-Organization``/``OpenAI-Project`` from ``$OPENAI_ORGANIZATION``/``$OPENAI_PROJECT``),
``ollama`` (``http://localhost:11434/v1``) and ``lmstudio`` (``http://localhost:1234/v1``)
need no table, a table cannot redefine them, and ``model_provider`` defaults to ``openai``.
``wire_api`` defaults to ``"responses"`` (current Codex accepts nothing else; ``"chat"`` is
kept for providers that only speak Chat Completions). Secrets stay in the environment:
the settings keep variable names, and `build` reads the values.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from ._server_config import ConfigError

if TYPE_CHECKING:
    from .agent import OpenAIChatModel
    from .headers import HeaderPolicy, Headers

__all__ = ["ModelProvider", "ModelSettings", "load_model_settings", "model_settings"]

logger = logging.getLogger("codex_runtime.config")

WireApi = Literal["responses", "chat"]

_PROVIDER_KEYS: Final = frozenset(
    {
        "name",
        "base_url",
        "env_key",
        "env_key_instructions",
        "wire_api",
        "query_params",
        "http_headers",
        "env_http_headers",
        "request_max_retries",
        "stream_max_retries",
        "stream_idle_timeout_ms",
        "requires_openai_auth",
        "experimental_bearer_token",
        "supports_websockets",
    }
)


def _str_map(value: Any) -> dict[str, str]:
    return dict(value)


@attrs.frozen
class ModelProvider:
    """One model provider (a ``[model_providers.NAME]`` table or a built-in one).

    ``http_headers`` values are static (not shown in the repr); ``env_http_headers`` maps a
    header name to the environment variable holding its value; ``env_key`` names the
    variable holding the API key.
    """

    id: str
    name: str
    base_url: str
    wire_api: WireApi = "responses"
    env_key: str | None = None
    env_key_instructions: str | None = None
    http_headers: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map, repr=False)
    env_http_headers: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)
    query_params: Mapping[str, str] = attrs.field(factory=dict, converter=_str_map)
    key_optional: bool = False


@attrs.frozen
class ModelSettings:
    """The model a Codex configuration names and the provider serving it."""

    model: str | None
    provider: ModelProvider

    def build(
        self,
        *,
        model: str | None = None,
        environ: Mapping[str, str] | None = None,
        policy: HeaderPolicy | None = None,
        timeout: float = 120.0,
        stream: bool = True,
        extra_headers: Headers | None = None,
    ) -> OpenAIChatModel:
        """Make the model: `OpenAIResponsesModel` or `OpenAIChatModel` per ``wire_api``.

        ``model`` overrides the configured model name; ``extra_headers`` are added to
        the provider's headers (and win). The API key and the ``env_http_headers`` values
        are read from ``environ`` (default ``os.environ``) now.
        Raises `ConfigError` when no model is named or a required key is missing.
        """
        from ._responses import OpenAIResponsesModel
        from .agent import OpenAIChatModel
        from .headers import Headers, InvalidHeaderError, check_settable

        env = os.environ if environ is None else environ
        provider = self.provider
        name = model or self.model
        where = f"model provider {provider.id!r}"
        if not name:
            raise ConfigError(f"no model is configured for the {where}: set `model` in the configuration")
        api_key: str | None = None
        if provider.env_key is not None:
            api_key = (env.get(provider.env_key) or "").strip() or None
            if api_key is None and not provider.key_optional:
                hint = f" ({provider.env_key_instructions})" if provider.env_key_instructions else ""
                raise ConfigError(
                    f"the {where} reads its API key from ${provider.env_key}, which is not set{hint}"
                )
        pairs = list(provider.http_headers.items())
        for header, variable in provider.env_http_headers.items():
            value = (env.get(variable) or "").strip()
            if value:
                pairs.append((header, value))
        if extra_headers is not None:
            named = {name.lower() for name, _ in extra_headers.items()}
            pairs = [(k, v) for k, v in pairs if k.lower() not in named] + list(extra_headers.items())
        try:
            headers = Headers(pairs)
            check_settable(headers, layer="provider")
        except InvalidHeaderError as exc:
            raise ConfigError(f"the {where} has a bad header: {exc}") from None
        cls = OpenAIResponsesModel if provider.wire_api == "responses" else OpenAIChatModel
        try:
            return cls(
                provider.base_url,
                name,
                api_key=api_key,
                headers=headers,
                policy=policy,
                timeout=timeout,
                stream=stream,
                query_params=provider.query_params,
            )
        except ValueError as exc:
            raise ConfigError(f"the {where}: {exc}") from None


def _builtin(provider_id: str, environ: Mapping[str, str], openai_base_url: str | None) -> ModelProvider:
    if provider_id == "openai":
        base = (
            openai_base_url or (environ.get("OPENAI_BASE_URL") or "").strip() or "https://api.openai.com/v1"
        )
        return ModelProvider(
            "openai",
            "OpenAI",
            base,
            "responses",
            env_key="OPENAI_API_KEY",
            env_http_headers={
                "OpenAI-Organization": "OPENAI_ORGANIZATION",
                "OpenAI-Project": "OPENAI_PROJECT",
            },
            key_optional=True,
        )
    port = {"ollama": 11434, "lmstudio": 1234}[provider_id]
    base = (environ.get("CODEX_OSS_BASE_URL") or "").strip() or f"http://localhost:{port}/v1"
    return ModelProvider(provider_id, "gpt-oss", base, "responses")


_BUILTIN: Final = ("openai", "ollama", "lmstudio")


def _string(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: `{key}` must be a non-empty string")
    return value


def _mapping(where: str, key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{where}: `{key}` must be a table of strings")
    return dict(value)


def _provider(provider_id: str, table: Any, where: str) -> ModelProvider:
    here = f"{where}: [model_providers.{provider_id}]"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{here} must be a table")
    unknown = sorted(set(table) - _PROVIDER_KEYS)
    if unknown:
        logger.warning("%s: ignoring unknown key(s) %s", here, ", ".join(unknown))
    if "experimental_bearer_token" in table:
        raise ConfigError(
            f"{here}: `experimental_bearer_token` is not supported; "
            "put the key in the environment variable named by `env_key`"
        )
    if "base_url" not in table:
        raise ConfigError(f"{here} needs `base_url`")
    base_url = _string(here, "base_url", table["base_url"])
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{here}: `base_url` must be an http:// or https:// URL")
    wire_api = table.get("wire_api", "responses")
    if wire_api not in ("responses", "chat"):
        raise ConfigError(f'{here}: `wire_api` must be "responses" or "chat", not {wire_api!r}')
    env_key = table.get("env_key")
    return ModelProvider(
        provider_id,
        _string(here, "name", table["name"]) if "name" in table else provider_id,
        base_url,
        wire_api,
        env_key=None if env_key is None else _string(here, "env_key", env_key),
        env_key_instructions=table.get("env_key_instructions")
        if isinstance(table.get("env_key_instructions"), str)
        else None,
        http_headers=_mapping(here, "http_headers", table.get("http_headers", {})),
        env_http_headers=_mapping(here, "env_http_headers", table.get("env_http_headers", {})),
        query_params=_mapping(here, "query_params", table.get("query_params", {})),
    )


def model_settings(
    data: Mapping[str, Any], *, where: str = "config", environ: Mapping[str, str] | None = None
) -> ModelSettings | None:
    """The `ModelSettings` of a parsed Codex ``config.toml`` (None when it names no model).

    Raises `ConfigError` (naming the file and key, never a secret) on a bad table or an
    unknown ``model_provider``.
    """
    env = os.environ if environ is None else environ
    model = data.get("model")
    provider_id = data.get("model_provider")
    tables = data.get("model_providers", {})
    if model is None and provider_id is None:
        return None
    if model is not None:
        model = _string(where, "model", model)
    provider_id = _string(where, "model_provider", provider_id) if provider_id is not None else "openai"
    if not isinstance(tables, Mapping):
        raise ConfigError(f"{where}: `model_providers` must be a table of provider tables")
    openai_base_url = data.get("openai_base_url")
    if openai_base_url is not None:
        openai_base_url = _string(where, "openai_base_url", openai_base_url)
    for reserved in _BUILTIN:
        if reserved in tables:
            logger.warning(
                "%s: [model_providers.%s] is ignored: %r is a built-in provider (as in Codex)",
                where,
                reserved,
                reserved,
            )
    if provider_id in _BUILTIN:
        provider = _builtin(provider_id, env, openai_base_url)
    elif provider_id in tables:
        provider = _provider(provider_id, tables[provider_id], where)
    else:
        known = sorted(set(_BUILTIN) | {k for k in tables if isinstance(k, str)})
        raise ConfigError(
            f"{where}: model_provider {provider_id!r} is not defined; add [model_providers.{provider_id}] "
            f"or use one of: {', '.join(known)}"
        )
    return ModelSettings(model, provider)


def load_model_settings(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> ModelSettings | None:
    """`model_settings` of the Codex ``config.toml`` at ``path`` (None for a ``.json`` file)."""
    import tomllib

    where = os.fspath(path)
    if where.endswith(".json"):
        return None
    try:
        with open(where, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    return model_settings(data, where=where, environ=environ)

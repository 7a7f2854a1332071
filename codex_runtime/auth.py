"""HTTP authorization for MCP servers, on the `mcp` SDK's OAuth machinery.

``ServerConfig(auth=...)`` takes either an `OAuth` spec (authorization code + PKCE, with
dynamic registration, a client metadata URL or a pre-registered client; scopes and
step-up on ``403 insufficient_scope``; refresh) or any ``httpx2.Auth`` — the SDK's
``OAuthClientProvider``, ``ClientCredentialsOAuthProvider``, ``PrivateKeyJWTOAuthProvider``
and ``IdentityAssertionOAuthProvider`` pass straight through.

Tokens live in a token store: by default a JSON file (mode 0600, in a 0700 directory)
under ``$CODEX_RUNTIME_HOME/oauth`` (``~/.codex-runtime`` when unset), one per server and
URL. No token, refresh token or client secret is ever logged, shown in a repr or put in an
error message.

The browser step runs only when the spec has an ``authorize`` function, which is given
the authorization URL (`print_url` prints it; `codex-runtime login NAME` uses it). The
user's browser comes back to a one-shot listener on ``127.0.0.1``. Without ``authorize``,
a server that needs a new grant fails the request with `AuthorizationError` (run
``codex-runtime login NAME`` first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.abc
import attrs
import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl, ValidationError

from .headers import CodexRuntimeError

__all__ = [
    "AuthorizeFunction",
    "FileTokenStore",
    "MemoryTokenStore",
    "OAuth",
    "TokenStore",
    "default_token_store",
    "print_url",
    "runtime_home",
]

AuthorizeFunction = Callable[[str], Awaitable[None]]
TokenEndpointAuthMethod = Literal["none", "client_secret_post", "client_secret_basic"]

_AUTH_METHODS = ("none", "client_secret_post", "client_secret_basic")
_CALLBACK_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")
_HOME_ENV = "CODEX_RUNTIME_HOME"


class TokenStore(Protocol):
    """Where one server's OAuth tokens and client registration live (the SDK's ``TokenStorage``)."""

    async def get_tokens(self) -> OAuthToken | None: ...

    async def set_tokens(self, tokens: OAuthToken) -> None: ...

    async def get_client_info(self) -> OAuthClientInformationFull | None: ...

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None: ...


def runtime_home() -> Path:
    """``$CODEX_RUNTIME_HOME``, or ``~/.codex-runtime`` when it is unset or empty."""
    value = os.environ.get(_HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".codex-runtime"


class MemoryTokenStore:
    """A token store that lives as long as the object (nothing is written anywhere)."""

    def __init__(self) -> None:
        self._tokens: OAuthToken | None = None
        self._client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self._tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self._tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self._client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self._client_info = client_info

    def clear(self) -> None:
        """Forget the tokens and the client registration."""
        self._tokens = None
        self._client_info = None

    def __repr__(self) -> str:
        state = "with tokens" if self._tokens is not None else "empty"
        return f"<MemoryTokenStore {state}>"


class FileTokenStore:
    """One server's tokens and client registration in a JSON file readable by its owner only.

    The file records the server URL it belongs to; entries written for another URL are
    ignored, so a server whose URL changed never receives the old server's token. Writes
    are atomic (a temporary file renamed over the old one), created with mode 0600 in a
    directory created with mode 0700.
    """

    def __init__(self, path: str | os.PathLike[str], *, server_url: str | None = None) -> None:
        self.path = Path(path)
        self.server_url = server_url
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A damaged file is as good as none: the next login rewrites it.
            return {}
        if not isinstance(data, dict):
            return {}
        if self.server_url is not None and data.get("server_url") != self.server_url:
            return {}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.server_url is not None:
            data["server_url"] = self.server_url
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    async def _update(self, key: str, value: dict[str, Any]) -> None:
        async with self._lock:

            def update() -> None:
                data = self._read()
                data[key] = value
                self._write(data)

            await anyio.to_thread.run_sync(update)

    async def get_tokens(self) -> OAuthToken | None:
        raw = (await anyio.to_thread.run_sync(self._read)).get("tokens")
        try:
            return OAuthToken.model_validate(raw) if isinstance(raw, dict) else None
        except ValidationError:
            return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        await self._update("tokens", tokens.model_dump(mode="json", exclude_none=True))

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        raw = (await anyio.to_thread.run_sync(self._read)).get("client_info")
        try:
            return OAuthClientInformationFull.model_validate(raw) if isinstance(raw, dict) else None
        except ValidationError:
            return None

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await self._update("client_info", client_info.model_dump(mode="json", exclude_none=True))

    def exists(self) -> bool:
        """Whether the file holds tokens for this server."""
        return "tokens" in self._read()

    def clear(self) -> bool:
        """Delete the file; returns whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def default_token_store(name: str, url: str) -> FileTokenStore:
    """The default store of server ``name`` at ``url``: ``$CODEX_RUNTIME_HOME/oauth/<name>-<hash>.json``."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return FileTokenStore(runtime_home() / "oauth" / f"{name}-{digest}.json", server_url=url)


async def print_url(url: str) -> None:
    """An ``authorize`` function that prints the authorization URL for the user to open."""
    print(f"Open this URL in a browser to authorize access:\n\n    {url}\n", file=sys.stderr, flush=True)


def _check_str(value: object, key: str, *, empty: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, str) or (not empty and not value):
        raise ValueError(f"OAuth({key}=...) must be a non-empty string")


def _scopes(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(value)


@attrs.frozen(repr=False)
class OAuth:
    """The OAuth authorization code flow (with PKCE) for one HTTP MCP server.

    Attributes:
        scopes: Scopes to ask for. Empty: the server's challenge or metadata decides.
        client_id: A pre-registered client id (no dynamic registration then).
        client_secret: Its secret, if it has one. Never written to the token store.
        token_endpoint_auth_method: How a pre-registered client authenticates at the token
            endpoint; default ``client_secret_basic`` with a secret, ``none`` without.
        client_metadata_url: An HTTPS URL of a client ID metadata document, used as the
            client id when the authorization server supports it.
        client_name: The name registered by dynamic client registration.
        store: The token store; default a file under `runtime_home` (`default_token_store`).
        authorize: ``async (url) -> None``: shows the authorization URL to the user (for
            example `print_url`). ``None``: never start a browser flow; a server that needs a
            new grant fails with `AuthorizationError`.
        callback_port: The port of the loopback redirect listener (0: the port of the stored
            registration, else any free one). A pre-registered client needs the port of
            its registered redirect URI (``http://127.0.0.1:PORT/callback``).
        callback_path: The path of the redirect URI.
        callback_timeout: Seconds to wait for the browser to come back.
    """

    scopes: tuple[str, ...] = attrs.field(default=(), converter=_scopes)
    client_id: str | None = None
    client_secret: str | None = None
    token_endpoint_auth_method: TokenEndpointAuthMethod | None = None
    client_metadata_url: str | None = None
    client_name: str = "codex-runtime"
    store: TokenStore | None = attrs.field(default=None, eq=False)
    authorize: AuthorizeFunction | None = attrs.field(default=None, eq=False)
    callback_port: int = 0
    callback_path: str = "/callback"
    callback_timeout: float = 300.0

    def __attrs_post_init__(self) -> None:
        if not all(isinstance(s, str) and s and not any(c.isspace() for c in s) for s in self.scopes):
            raise ValueError("OAuth(scopes=...) must be scope strings without spaces")
        _check_str(self.client_id, "client_id")
        _check_str(self.client_secret, "client_secret")
        _check_str(self.client_name, "client_name")
        if self.client_secret is not None and self.client_id is None:
            raise ValueError("OAuth(client_secret=...) needs a client_id")
        if self.token_endpoint_auth_method is not None:
            if self.token_endpoint_auth_method not in _AUTH_METHODS:
                raise ValueError(
                    f"OAuth(token_endpoint_auth_method=...) must be one of {', '.join(_AUTH_METHODS)}"
                )
            if self.client_id is None:
                raise ValueError(
                    "OAuth(token_endpoint_auth_method=...) applies to a pre-registered client_id"
                )
        if self.client_metadata_url is not None:
            _check_str(self.client_metadata_url, "client_metadata_url")
            parts = urlsplit(self.client_metadata_url)
            if parts.scheme != "https" or not parts.netloc or parts.path in ("", "/"):
                raise ValueError("OAuth(client_metadata_url=...) must be an https:// URL with a path")
        if self.authorize is not None and not callable(self.authorize):
            raise ValueError("OAuth(authorize=...) must be an async function taking the URL")
        port = self.callback_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError("OAuth(callback_port=...) must be a port number (0: any free port)")
        if not isinstance(self.callback_path, str) or not _CALLBACK_PATH_RE.match(self.callback_path):
            raise ValueError("OAuth(callback_path=...) must be a URL path starting with '/'")
        timeout = self.callback_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < 1e9:
            raise ValueError("OAuth(callback_timeout=...) must be a positive number of seconds")

    def __repr__(self) -> str:
        parts = [f"scopes={self.scopes!r}"]
        if self.client_id is not None:
            parts.append(f"client_id={self.client_id!r}")
        if self.client_secret is not None:
            parts.append("client_secret='[REDACTED]'")
        if self.client_metadata_url is not None:
            parts.append(f"client_metadata_url={self.client_metadata_url!r}")
        if self.store is not None:
            parts.append(f"store={self.store!r}")
        parts.append(f"interactive={self.authorize is not None}")
        return f"OAuth({', '.join(parts)})"

    def token_store(self, name: str, url: str) -> TokenStore:
        """The store this spec uses for server ``name`` at ``url``."""
        return self.store if self.store is not None else default_token_store(name, url)


# -- failures the client turns into `AuthorizationError` ---------------------------------


class AuthorizationRequired(CodexRuntimeError):
    """The server needs a new grant and the spec has no ``authorize`` function (internal)."""


class _ExpectedFailures(logging.Filter):
    """Drop the SDK's traceback for a grant this client chose not to ask for.

    It is reported as `AuthorizationError` to the caller; an ERROR traceback in the log
    would say something broke.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, AuthorizationRequired)


logging.getLogger("mcp.client.auth.oauth2").addFilter(_ExpectedFailures())


class _Challenge:
    """What the server said when it refused a request: status, scheme and scope."""

    __slots__ = ("scheme", "scope", "status")

    def __init__(self, status: int, header: str | None) -> None:
        self.status = status
        self.scheme, self.scope = parse_www_authenticate(header)


def parse_www_authenticate(header: str | None) -> tuple[str | None, str | None]:
    """The scheme and the ``scope`` parameter of a ``WWW-Authenticate`` header."""
    if not header:
        return None, None
    text = header.strip()
    scheme = text.split(None, 1)[0].rstrip(",") if text else None
    match = re.search(r'(?:^|[\s,])scope\s*=\s*(?:"([^"]*)"|([^\s,]+))', text)
    scope = (match.group(1) if match.group(1) is not None else match.group(2)) if match else None
    return scheme or None, scope


class AuthFlowFailed(Exception):
    """An auth provider's flow raised; carries the server's last challenge (internal)."""

    def __init__(self, reason: str, status: int | None, scheme: str | None, scope: str | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.scheme = scheme
        self.scope = scope


def _describe_failure(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, AuthorizationRequired):
        return str(exc)
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    # The SDK's messages name endpoints and statuses, never a token; keep them short anyway.
    return f"{name}: {text[:300]}" if text else name


class GuardedAuth(httpx2.Auth):
    """Runs an auth provider's flow and turns its failure into `AuthFlowFailed`.

    The failure keeps the status, scheme and scope of the last challenge the MCP server
    answered the original request with, so the client can report them.
    """

    def __init__(self, inner: httpx2.Auth) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"<GuardedAuth {type(self.inner).__name__}>"

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        flow = self.inner.async_auth_flow(request)
        challenge: _Challenge | None = None
        try:
            try:
                outgoing = await flow.__anext__()
            except StopAsyncIteration:
                return
            while True:
                response = yield outgoing
                if outgoing is request and response.status_code in (401, 403):
                    challenge = _Challenge(response.status_code, response.headers.get("www-authenticate"))
                try:
                    outgoing = await flow.asend(response)
                except StopAsyncIteration:
                    return
        except (httpx2.TransportError, anyio.get_cancelled_exc_class()):
            raise
        except Exception as exc:
            raise AuthFlowFailed(
                _describe_failure(exc),
                challenge.status if challenge else None,
                challenge.scheme if challenge else None,
                challenge.scope if challenge else None,
            ) from None
        finally:
            await flow.aclose()


# -- the loopback redirect listener -------------------------------------------------------

_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>codex-runtime</title>"
    b"<p>Authorization %s. You can close this window.</p>"
)


class _LoopbackCallback:
    """One authorization round: listen on 127.0.0.1, show the URL, take the browser's redirect."""

    def __init__(self, spec: OAuth, port: int) -> None:
        self._spec = spec
        self._port = port
        self._result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        authorize = self._spec.authorize
        if authorize is None:
            raise AuthorizationRequired(
                "the server needs a new authorization grant and this client is not interactive"
            )
        state = parse_qs(urlsplit(authorization_url).query).get("state", [None])[0]
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self._port)
        async with multi:
            # 127.0.0.1 is one address: one listener.
            (listener,) = cast("list[anyio.abc.SocketListener]", multi.listeners)
            with anyio.move_on_after(self._spec.callback_timeout) as waited:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_call, authorize, authorization_url)
                    self._result = await self._accept(listener, state)
        if waited.cancelled_caught:
            raise AuthorizationRequired(
                f"the browser did not come back within {self._spec.callback_timeout:g} s"
            )

    async def _accept(self, listener: anyio.abc.SocketListener, state: str | None) -> AuthorizationCodeResult:
        while True:
            stream = await listener.accept()
            async with stream:
                result = await self._serve_one(stream, state)
            if result is not None:
                return result

    async def _serve_one(
        self, stream: anyio.abc.SocketStream, state: str | None
    ) -> AuthorizationCodeResult | None:
        data = b""
        with anyio.move_on_after(10):
            while b"\r\n\r\n" not in data and len(data) < 16384:
                try:
                    chunk = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
                data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        target = urlsplit(parts[1]) if len(parts) >= 2 else None
        if target is None or parts[0] != "GET" or target.path != self._spec.callback_path:
            await _respond(stream, 404, b"not found")
            return None
        query = parse_qs(target.query)
        got_state = query.get("state", [None])[0]
        if state is not None and got_state != state:
            # Not the redirect of this round (a stale tab, a forged request): ignore it.
            await _respond(stream, 400, _PAGE % b"failed: unexpected state")
            return None
        error = query.get("error", [None])[0]
        code = query.get("code", [None])[0]
        if error is not None or not code:
            await _respond(stream, 400, _PAGE % b"was refused")
            refused = (error or "no code")[:100]
            raise AuthorizationRequired(f"the authorization server refused the grant ({refused})")
        await _respond(stream, 200, _PAGE % b"complete")
        return AuthorizationCodeResult(code=code, state=got_state, iss=query.get("iss", [None])[0])

    async def callback(self) -> AuthorizationCodeResult:
        result, self._result = self._result, None
        if result is None:
            raise AuthorizationRequired("the browser did not come back with an authorization code")
        return result


async def _call(function: AuthorizeFunction, url: str) -> None:
    await function(url)


async def _respond(stream: anyio.abc.SocketStream, status: int, body: bytes) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/html; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n"
    ).encode()
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(head + body)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _loopback_port(client_info: OAuthClientInformationFull | None, path: str) -> int | None:
    for uri in (client_info.redirect_uris or []) if client_info is not None else []:
        parts = urlsplit(str(uri))
        if parts.hostname in ("127.0.0.1", "localhost") and parts.port and parts.path == path:
            return parts.port
    return None


class _PreRegisteredStore:
    """A store whose client registration is a pre-registered one, kept in memory only.

    The client secret of a pre-registered client is configuration: it is never written to
    the token store file.
    """

    def __init__(self, inner: TokenStore, client_info: OAuthClientInformationFull) -> None:
        self._inner = inner
        self._client_info = client_info

    def __repr__(self) -> str:
        return repr(self._inner)

    async def get_tokens(self) -> OAuthToken | None:
        return await self._inner.get_tokens()

    async def set_tokens(self, tokens: OAuthToken) -> None:
        await self._inner.set_tokens(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self._client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self._client_info = client_info


async def build_provider(spec: OAuth, *, name: str, url: str) -> OAuthClientProvider:
    """The SDK's ``OAuthClientProvider`` for `spec` on server ``name`` at ``url``."""
    store: TokenStore = spec.token_store(name, url)
    port = spec.callback_port
    if port == 0:
        stored = await store.get_client_info() if spec.client_id is None else None
        port = _loopback_port(stored, spec.callback_path) or _free_port()
    redirect_uri = AnyUrl(f"http://127.0.0.1:{port}{spec.callback_path}")
    scope = " ".join(spec.scopes) or None
    if spec.client_id is not None:
        method = spec.token_endpoint_auth_method or ("client_secret_basic" if spec.client_secret else "none")
        info = OAuthClientInformationFull(
            client_id=spec.client_id,
            client_secret=spec.client_secret,
            redirect_uris=[redirect_uri],
            token_endpoint_auth_method=method,
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope=scope,
        )
        store = _PreRegisteredStore(store, info)
    metadata = OAuthClientMetadata(
        client_name=spec.client_name,
        redirect_uris=[redirect_uri],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        scope=scope,
    )
    callback = _LoopbackCallback(spec, port)
    return OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=store,
        redirect_handler=callback.redirect,
        callback_handler=callback.callback,
        client_metadata_url=spec.client_metadata_url,
    )


async def build_auth(auth: OAuth | httpx2.Auth, *, name: str, url: str) -> GuardedAuth:
    """The ``httpx2.Auth`` a client with ``ServerConfig.auth`` sends its requests with."""
    inner = await build_provider(auth, name=name, url=url) if isinstance(auth, OAuth) else auth
    return GuardedAuth(inner)

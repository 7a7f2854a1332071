"""A loopback OAuth 2.1 authorization server in front of an MCP endpoint, for tests and examples.

`OAuthGate` wraps an MCP ASGI app: it serves protected resource metadata, authorization
server metadata, dynamic client registration, an authorization endpoint that approves at
once (redirecting to the client's redirect URI with a code), and a token endpoint
(authorization code with PKCE S256, refresh). Requests to the MCP endpoint need a valid
bearer token; tools listed in ``tool_scopes`` need their scope too (else ``403
insufficient_scope``). Everything it receives is recorded in `AuthRecord`s.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import attrs
import httpx2

from ._loopback import ReceivedHeaders

__all__ = ["AuthRecord", "OAuthGate", "approve_in_browser"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


@attrs.frozen
class AuthRecord(ReceivedHeaders):
    """One HTTP request the gate received: ``path``, ``http_method``, headers, query and form."""

    path: str
    http_method: str
    header_pairs: tuple[tuple[str, str], ...]
    query: Mapping[str, str]
    form: Mapping[str, str]
    status: int
    rpc_method: str | None = None


def _first(values: Mapping[str, list[str]]) -> dict[str, str]:
    return {k: v[0] for k, v in values.items() if v}


class OAuthGate:
    """The authorization server and the bearer check in front of ``inner`` (an MCP app at ``/mcp``)."""

    def __init__(
        self,
        inner: ASGIApp,
        base_url: Callable[[], str],
        *,
        scopes: tuple[str, ...] = ("mcp",),
        tool_scopes: Mapping[str, str] | None = None,
        first_token_lifetime: int = 3600,
        authorization_server: str | None = None,
    ) -> None:
        self._inner = inner
        self.authorization_server = authorization_server
        self._base = base_url
        self.scopes = scopes
        self.tool_scopes = dict(tool_scopes or {})
        self.first_token_lifetime = first_token_lifetime
        self._lock = threading.Lock()
        self.records: list[AuthRecord] = []
        self.clients: dict[str, dict[str, Any]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, set[str]] = {}
        self.refresh_tokens: dict[str, set[str]] = {}
        self.issued = 0

    # -- what a test looks at ----------------------------------------------------------

    def secrets(self) -> set[str]:
        """Every secret handed out: client secrets, codes, access and refresh tokens."""
        with self._lock:
            found = {c["client_secret"] for c in self.clients.values() if c.get("client_secret")}
            found |= set(self.codes) | set(self.access_tokens) | set(self.refresh_tokens)
            return found

    def revoke_all(self) -> None:
        """Forget every access and refresh token: the next request needs a new grant."""
        with self._lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def requests(self, path: str | None = None) -> list[AuthRecord]:
        with self._lock:
            return [r for r in self.records if path is None or r.path == path]

    # -- ASGI ----------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        path: str = scope["path"]
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"])
        query = _first(parse_qs(scope.get("query_string", b"").decode("latin-1")))
        form: dict[str, str] = {}
        if path in ("/token", "/register"):
            ctype = dict(headers).get("content-type", "")
            if "json" in ctype:
                try:
                    body = json.loads(raw or b"{}")
                    form = {k: v for k, v in body.items() if isinstance(v, str)}
                    form["_json"] = raw.decode()
                except ValueError:
                    form = {}
            else:
                form = _first(parse_qs(raw.decode("latin-1")))
        status, reply_headers, reply, rpc_method = self._handle(
            scope["method"], path, headers, query, form, raw
        )
        record = AuthRecord(path, scope["method"], headers, query, form, status or 200, rpc_method)
        with self._lock:
            self.records.append(record)
        if status is None:
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": raw, "more_body": False}
                return await receive()

            await self._inner(scope, replay, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in reply_headers]
                + [(b"content-length", str(len(reply)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": reply})

    def _handle(
        self,
        method: str,
        path: str,
        headers: tuple[tuple[str, str], ...],
        query: dict[str, str],
        form: dict[str, str],
        raw: bytes,
    ) -> tuple[int | None, list[tuple[str, str]], bytes, str | None]:
        base = self._base()
        if path.startswith("/.well-known/oauth-protected-resource"):
            return _json(
                200,
                {
                    "resource": f"{base}/mcp",
                    "authorization_servers": [self.authorization_server or base],
                    "scopes_supported": list(self.scopes) + sorted(set(self.tool_scopes.values())),
                    "bearer_methods_supported": ["header"],
                },
            )
        if path.startswith("/.well-known/oauth-authorization-server"):
            return _json(
                200,
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "registration_endpoint": f"{base}/register",
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                        "none",
                    ],
                },
            )
        if path == "/register" and method == "POST":
            return self._register(form)
        if path == "/authorize" and method == "GET":
            return self._authorize(query)
        if path == "/token" and method == "POST":
            return self._token(dict(headers), form)
        if path.rstrip("/") == "/mcp":
            return self._check_bearer(dict(headers), raw)
        return 404, [], b"", None

    def _register(self, form: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes, None]:
        try:
            body = json.loads(form.get("_json", "{}"))
        except ValueError:
            return _json(400, {"error": "invalid_client_metadata"})
        client_id = "client-" + secrets.token_hex(4)
        info = {
            "client_id": client_id,
            "client_secret": "cs-" + secrets.token_urlsafe(16),
            "client_id_issued_at": int(time.time()),
            "redirect_uris": body.get("redirect_uris") or [],
            "grant_types": body.get("grant_types") or ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "client_name": body.get("client_name"),
        }
        if body.get("scope"):
            info["scope"] = body["scope"]
        with self._lock:
            self.clients[client_id] = info
        return _json(201, info)

    def _authorize(self, query: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes, None]:
        client = self.clients.get(query.get("client_id", ""))
        redirect = query.get("redirect_uri", "")
        if client is None or redirect not in client["redirect_uris"]:
            return 400, [], b"unknown client or redirect URI", None
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, [], b"PKCE S256 required", None
        code = "code-" + secrets.token_urlsafe(12)
        with self._lock:
            self.codes[code] = {
                "client_id": client["client_id"],
                "challenge": query["code_challenge"],
                "redirect_uri": redirect,
                "scope": query.get("scope", ""),
            }
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        sep = "&" if urlsplit(redirect).query else "?"
        return 302, [("location", f"{redirect}{sep}{urlencode(params)}")], b"", None

    def _client_of(self, headers: dict[str, str], form: dict[str, str]) -> dict[str, Any] | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(client_id)
        if client is None or (client.get("client_secret") and client["client_secret"] != secret):
            return None
        return client

    def _issue(self, scope: str, lifetime: int) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(16)
        refresh = "rt-" + secrets.token_urlsafe(16)
        granted = set(scope.split())
        with self._lock:
            self.access_tokens[access] = granted
            self.refresh_tokens[refresh] = granted
            self.issued += 1
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "refresh_token": refresh,
            "scope": scope,
        }

    def _token(
        self, headers: dict[str, str], form: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes, None]:
        client = self._client_of(headers, form)
        if client is None:
            return _json(401, {"error": "invalid_client"})
        grant = form.get("grant_type")
        if grant == "authorization_code":
            with self._lock:
                entry = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if entry is None or entry["challenge"] != challenge or entry["client_id"] != client["client_id"]:
                return _json(400, {"error": "invalid_grant"})
            lifetime = self.first_token_lifetime if self.issued == 0 else 3600
            return _json(200, self._issue(entry["scope"], lifetime))
        if grant == "refresh_token":
            with self._lock:
                granted = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if granted is None:
                return _json(400, {"error": "invalid_grant"})
            return _json(200, self._issue(" ".join(sorted(granted)), 3600))
        return _json(400, {"error": "unsupported_grant_type"})

    def _check_bearer(
        self, headers: dict[str, str], raw: bytes
    ) -> tuple[int | None, list[tuple[str, str]], bytes, str | None]:
        rpc_method: str | None = None
        tool: str | None = None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if isinstance(body, dict):
            rpc_method = body.get("method") if isinstance(body.get("method"), str) else None
            params = body.get("params")
            if rpc_method == "tools/call" and isinstance(params, dict):
                tool = params.get("name")
        base = self._base()
        metadata = f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        with self._lock:
            granted = self.access_tokens.get(token)
        if granted is None:
            challenge = f'Bearer {metadata}, scope="{" ".join(self.scopes)}"'
            return 401, [("www-authenticate", challenge)], b"", rpc_method
        needed = self.tool_scopes.get(tool or "")
        if needed is not None and needed not in granted:
            wanted = " ".join([*self.scopes, needed])
            challenge = f'Bearer error="insufficient_scope", scope="{wanted}", {metadata}'
            return 403, [("www-authenticate", challenge)], b"", rpc_method
        return None, [], b"", rpc_method


async def approve_in_browser(url: str) -> None:
    """Play the user's browser for an `OAuth` ``authorize`` function.

    Opens the authorization URL (an authorization server that approves at once, like
    `OAuthServer`'s, redirects back with a code) and follows the redirect to the client's
    loopback listener. That second hop goes over a plain socket, so no HTTP library logs
    the code in its URL.
    """
    async with httpx2.AsyncClient() as http:
        response = await http.get(url)
    location = response.headers.get("location")
    if response.status_code not in (301, 302, 303, 307, 308) or not location:
        raise RuntimeError(f"the authorization server answered HTTP {response.status_code}, not a redirect")
    target = urlsplit(location)
    if target.hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError("the redirect does not go back to a loopback listener")
    request = (
        f"GET {target.path}?{target.query} HTTP/1.1\r\nhost: {target.netloc}\r\nconnection: close\r\n\r\n"
    )
    async with await anyio.connect_tcp("127.0.0.1", target.port or 80) as stream:
        await stream.send(request.encode())
        reply = b""
        with anyio.fail_after(30):
            while True:
                try:
                    reply += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the client's redirect listener answered {reply[:40]!r}")


def _json(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes, None]:
    return (
        status,
        [("content-type", "application/json"), ("cache-control", "no-store")],
        json.dumps(body).encode(),
        None,
    )

"""HTTP authorization against a real loopback authorization server and protected MCP server.

`OAuthServer` (codex_runtime.testing) issues client registrations, codes and tokens and
records every request; the assertions read what it received.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from codex_runtime import (
    AuthorizationError,
    ConfigError,
    InvalidHeaderError,
    McpClient,
    ServerConfig,
    ServerUnavailableError,
    Session,
    TurnHeaders,
    request_headers,
)
from codex_runtime.auth import FileTokenStore, MemoryTokenStore, OAuth, default_token_store
from codex_runtime.testing import OAuthServer
from codex_runtime.testing import approve_in_browser as browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def oauth_server() -> Iterator[OAuthServer]:
    with OAuthServer(tool_scopes={"sleep": "mcp:write"}) as server:
        yield server


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODEX_RUNTIME_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def bearer_tokens(server: OAuthServer) -> list[str | None]:
    return [r.header("authorization") for r in server.requests() if r.http_method == "POST"]


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_authorization_code_flow_with_pkce_and_dynamic_registration(
    oauth_server: OAuthServer, home: Path, protocol: str
) -> None:
    cfg = ServerConfig(name="gh", url=oauth_server.url, protocol=protocol, auth=OAuth(authorize=browser))
    async with McpClient(cfg) as client:
        result = await client.call_tool("echo", {"text": "hi"})
    assert not result.is_error

    assert len(oauth_server.auth_requests("/register")) == 1
    (authorize,) = oauth_server.auth_requests("/authorize")
    assert authorize.query["code_challenge_method"] == "S256"
    assert authorize.query["scope"] == "mcp"  # from the server's challenge
    assert authorize.query["redirect_uri"].startswith("http://127.0.0.1:")
    assert authorize.query["resource"] == oauth_server.url
    (token,) = oauth_server.auth_requests("/token")
    assert token.form["grant_type"] == "authorization_code"
    assert token.form["code_verifier"]
    assert token.header(
        "authorization",
    ).startswith("Basic ")  # the registered secret, as assigned
    # Every MCP request the server served carried the token it issued.
    issued = {t for t in oauth_server.gate.access_tokens}
    served = bearer_tokens(oauth_server)
    assert served and all(a is not None and a.removeprefix("Bearer ") in issued for a in served)
    # The auth flow's own requests carried none of the MCP layers.
    assert all(r.header("traceparent") is None for r in oauth_server.auth_requests("/token"))

    # The default token store: one 0600 file in a 0700 directory under $CODEX_RUNTIME_HOME.
    store = default_token_store("gh", oauth_server.url)
    assert store.path.parent == home / "oauth"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert store.exists()

    # A second client reuses the stored tokens: no new grant, even without a browser.
    quiet = ServerConfig(name="gh", url=oauth_server.url, protocol=protocol, auth=OAuth())
    async with McpClient(quiet) as client:
        await client.call_tool("echo", {"text": "again"})
    assert len(oauth_server.auth_requests("/authorize")) == 1
    assert len(oauth_server.auth_requests("/token")) == 1


async def test_expired_token_is_refreshed(home: Path) -> None:
    with OAuthServer(first_token_lifetime=0) as server:
        cfg = ServerConfig(name="s", url=server.url, protocol="legacy", auth=OAuth(authorize=browser))
        async with McpClient(cfg) as client:
            await client.call_tool("echo", {"text": "one"})
            grants = [r.form["grant_type"] for r in server.auth_requests("/token")]
            assert grants[0] == "authorization_code"
            assert "refresh_token" in grants
            last = server.requests("tools/call")[-1].header("authorization")
        (refresh,) = [r for r in server.auth_requests("/token") if r.form["grant_type"] == "refresh_token"]
        assert refresh.form["refresh_token"].startswith("rt-")
        # The call went out with the refreshed token, which the server still honours.
        assert last is not None and last.removeprefix("Bearer ") in server.gate.access_tokens
        assert len(server.auth_requests("/authorize")) == 1


async def test_step_up_on_insufficient_scope(oauth_server: OAuthServer, home: Path) -> None:
    cfg = ServerConfig(name="s", url=oauth_server.url, protocol="legacy", auth=OAuth(authorize=browser))
    async with McpClient(cfg) as client:
        await client.call_tool("echo", {"text": "basic scope"})
        await client.call_tool("sleep", {"seconds": 0})  # needs mcp:write: 403, re-authorized, retried
    first, second = oauth_server.auth_requests("/authorize")
    assert first.query["scope"] == "mcp"
    assert set(second.query["scope"].split()) == {"mcp", "mcp:write"}
    refused = [r for r in oauth_server.auth_requests("/mcp") if r.status == 403]
    assert len(refused) == 1 and refused[0].rpc_method == "tools/call"
    assert len(oauth_server.tool_calls("sleep")) == 1  # ran once, after the step-up


async def test_step_up_without_a_browser_raises_and_keeps_the_connection(
    oauth_server: OAuthServer, home: Path
) -> None:
    store = MemoryTokenStore()
    cfg = ServerConfig(
        name="s", url=oauth_server.url, protocol="legacy", auth=OAuth(authorize=browser, store=store)
    )
    async with McpClient(cfg) as client:
        await client.call_tool("echo", {"text": "x"})
    quiet = ServerConfig(name="s", url=oauth_server.url, protocol="legacy", auth=OAuth(store=store))
    async with McpClient(quiet) as client:
        with pytest.raises(AuthorizationError) as caught:
            await client.call_tool("sleep", {"seconds": 0})
        assert caught.value.status == 403
        assert caught.value.scheme == "Bearer"
        assert caught.value.scope is not None and "mcp:write" in caught.value.scope.split()
        assert isinstance(caught.value, ServerUnavailableError)
        # One refused call costs only itself.
        result = await client.call_tool("echo", {"text": "still here"})
        assert not result.is_error
    assert oauth_server.tool_calls("sleep") == []


async def test_no_grant_and_no_browser_fails_connect_with_authorization_error(
    oauth_server: OAuthServer, home: Path
) -> None:
    cfg = ServerConfig(name="s", url=oauth_server.url, protocol="legacy", auth=OAuth(), startup_timeout=20)
    with pytest.raises(AuthorizationError) as caught:
        async with McpClient(cfg):
            pass
    assert (caught.value.status, caught.value.scheme, caught.value.scope) == (401, "Bearer", "mcp")
    assert oauth_server.auth_requests("/authorize") == []


@pytest.mark.parametrize("protocol", ["legacy", "auto"])
async def test_server_that_wants_auth_from_a_client_without_any(
    oauth_server: OAuthServer, protocol: str
) -> None:
    cfg = ServerConfig(name="s", url=oauth_server.url, protocol=protocol)
    with pytest.raises(AuthorizationError) as caught:
        async with McpClient(cfg):
            pass
    assert caught.value.status == 401 and caught.value.scheme == "Bearer"
    assert "401" in str(caught.value)


async def test_browser_that_never_comes_back(oauth_server: OAuthServer, home: Path) -> None:
    shown: list[str] = []

    async def show(url: str) -> None:
        shown.append(url)  # the user never opens it

    spec = OAuth(authorize=show, callback_timeout=0.5, store=MemoryTokenStore())
    cfg = ServerConfig(name="s", url=oauth_server.url, protocol="legacy", auth=spec)
    with pytest.raises(AuthorizationError, match="did not come back") as caught:
        async with McpClient(cfg):
            pass
    assert caught.value.status == 401 and len(shown) == 1
    assert oauth_server.auth_requests("/authorize") == []


async def test_unreachable_authorization_server_costs_only_the_connect(home: Path) -> None:
    with OAuthServer(authorization_server="http://127.0.0.1:9") as server:
        cfg = ServerConfig(name="s", url=server.url, protocol="legacy", auth=OAuth(authorize=browser))
        with pytest.raises(AuthorizationError, match="unreachable") as caught:
            async with McpClient(cfg):
                pass
    assert caught.value.status == 401


async def test_any_httpx2_auth_passes_through(oauth_server: OAuthServer, home: Path) -> None:
    class Static(httpx2.Auth):
        def __init__(self, token: str) -> None:
            self.token = token

        def auth_flow(self, request: httpx2.Request):  # type: ignore[no-untyped-def]
            request.headers["authorization"] = f"Bearer {self.token}"
            yield request

    # Get a token the server honours, then present it with a plain httpx2.Auth.
    store = MemoryTokenStore()
    granted = ServerConfig(name="s", url=oauth_server.url, auth=OAuth(authorize=browser, store=store))
    async with McpClient(granted):
        pass
    tokens = await store.get_tokens()
    assert tokens is not None
    cfg = ServerConfig(name="s", url=oauth_server.url, protocol="legacy", auth=Static(tokens.access_token))
    oauth_server.clear()
    async with McpClient(cfg) as client:
        await client.call_tool("echo", {"text": "x"})
    assert bearer_tokens(oauth_server)[-1] == f"Bearer {tokens.access_token}"


async def test_no_layer_may_set_authorization_over_an_auth_provider(
    oauth_server: OAuthServer, home: Path
) -> None:
    with pytest.raises(ConfigError, match="authorization"):
        ServerConfig(name="s", url=oauth_server.url, auth=OAuth(), headers={"Authorization": "Bearer x"})
    store = MemoryTokenStore()
    cfg = ServerConfig(
        name="s", url=oauth_server.url, protocol="legacy", auth=OAuth(authorize=browser, store=store)
    )
    async with McpClient(cfg) as client:
        before = len(oauth_server.requests("tools/call"))
        with pytest.raises(InvalidHeaderError):
            await client.call_tool("echo", {"text": "x"}, headers={"Authorization": "Bearer forged"})
        with pytest.raises(InvalidHeaderError):
            client.set_turn_headers("turn-1", {"authorization": "Bearer forged"})
        assert client.turn_entry_ids() == frozenset()
        with request_headers({"Authorization": "Bearer forged"}), pytest.raises(InvalidHeaderError):
            await client.call_tool("echo", {"text": "x"})
        assert len(oauth_server.requests("tools/call")) == before  # nothing was sent
        with request_headers({"x-tenant": "t1"}):
            await client.call_tool("echo", {"text": "x"})
    (call,) = oauth_server.requests("tools/call")[before:]
    assert call.header("x-tenant") == "t1"
    assert call.header("authorization") != "Bearer forged"


async def test_pre_registered_client_secret_is_used_and_never_stored(
    oauth_server: OAuthServer, home: Path
) -> None:
    # Register out of band, as an administrator would.
    async with httpx2.AsyncClient() as http:
        registered = (
            await http.post(
                oauth_server.url.replace("/mcp", "/register"),
                json={"redirect_uris": ["http://127.0.0.1:38911/callback"], "client_name": "admin"},
            )
        ).json()
    spec = OAuth(
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        callback_port=38911,
        authorize=browser,
    )
    assert registered["client_secret"] not in repr(spec)
    cfg = ServerConfig(name="pre", url=oauth_server.url, protocol="legacy", auth=spec)
    assert registered["client_secret"] not in repr(cfg)
    async with McpClient(cfg) as client:
        await client.call_tool("echo", {"text": "x"})
    assert len(oauth_server.auth_requests("/register")) == 1  # only the administrator's
    (authorize,) = oauth_server.auth_requests("/authorize")
    assert authorize.query["client_id"] == registered["client_id"]
    stored = default_token_store("pre", oauth_server.url).path.read_text()
    assert registered["client_secret"] not in stored


async def test_secrets_never_reach_logs_reprs_spans_or_errors(
    oauth_server: OAuthServer, home: Path, caplog: pytest.LogCaptureFixture, spans: InMemorySpanExporter
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    cfg = ServerConfig(name="s", url=oauth_server.url, protocol="legacy", auth=OAuth(authorize=browser))
    async with Session(servers=[cfg], hooks=[TurnHeaders()]) as session:
        async with session.turn() as turn:
            # (Not echo or headers: those tools return the headers they saw, token included.)
            await turn.call_tool("s", "fail", {"message": "x"})
            await turn.call_tool("s", "sleep", {"seconds": 0})  # step-up
        client = session.clients["s"]
        texts += [repr(client), repr(cfg), repr(session), repr(turn.tool_calls)]
    quiet = ServerConfig(
        name="s", url=oauth_server.url, protocol="legacy", auth=OAuth(store=MemoryTokenStore())
    )
    with pytest.raises(AuthorizationError) as caught:
        async with McpClient(quiet):
            pass
    texts += [str(caught.value), repr(caught.value)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [logging.Formatter().formatException(r.exc_info) for r in caplog.records if r.exc_info]
    for span in spans.get_finished_spans():
        texts.append(span.name)
        texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            texts += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    secrets = oauth_server.secrets()
    assert len(secrets) >= 5  # client secret, codes, access and refresh tokens
    blob = "\n".join(texts)
    leaked = [s for s in secrets if s in blob]
    where = [line[:300] for line in blob.splitlines() if any(s in line for s in leaked)]
    assert leaked == [], where
    assert caplog.records  # the run did log


def test_oauth_spec_validation() -> None:
    with pytest.raises(ValueError, match="client_id"):
        OAuth(client_secret="s")
    with pytest.raises(ValueError, match="client_metadata_url"):
        OAuth(client_metadata_url="http://example.com/client.json")
    with pytest.raises(ValueError, match="callback_port"):
        OAuth(callback_port=70000)
    with pytest.raises(ValueError, match="scopes"):
        OAuth(scopes=("a b",))
    assert OAuth(scopes="read write").scopes == ("read", "write")
    with pytest.raises(ConfigError, match="auth"):
        ServerConfig(name="s", command="x", auth=OAuth())
    with pytest.raises(ConfigError, match="auth"):
        ServerConfig(name="s", url="http://127.0.0.1:1/mcp", auth="token")  # type: ignore[arg-type]


async def test_file_token_store_is_bound_to_its_server_url(tmp_path: Path) -> None:
    from mcp.shared.auth import OAuthToken

    path = tmp_path / "t.json"
    first = FileTokenStore(path, server_url="http://127.0.0.1:1/mcp")
    await first.set_tokens(OAuthToken(access_token="at-1", token_type="Bearer"))
    assert (await first.get_tokens()) is not None
    moved = FileTokenStore(path, server_url="http://127.0.0.1:2/mcp")
    assert await moved.get_tokens() is None
    assert repr(first) == f"FileTokenStore({str(path)!r})"
    assert first.clear() and not first.clear()

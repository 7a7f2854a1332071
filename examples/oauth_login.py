"""OAuth: log in once (browser flow, PKCE), then use and refresh the stored tokens.

A loopback MCP server behind its own authorization server stands in for a hosted one. The
first session has an ``authorize`` function, so a server that asks for authorization gets
the browser flow: in real use `print_url` (``codex-runtime login NAME`` does this), here
`approve_in_browser`, a stand-in browser for the auto-approving test server. The tokens go
to a 0600 file; the second session has no browser at all and uses them. A tool that needs
a scope the grant lacks then fails with `AuthorizationError` (status, scheme, scope).
"""

import tempfile
from pathlib import Path

import anyio

from codex_runtime import AuthorizationError, ServerConfig, Session, TurnHeaders
from codex_runtime.auth import FileTokenStore, OAuth
from codex_runtime.testing import OAuthServer, approve_in_browser


async def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        store_path = Path(home) / "oauth" / "docs.json"
        async with OAuthServer("docs", tool_scopes={"sleep": "docs:admin"}) as server:
            store = FileTokenStore(store_path, server_url=server.url)
            login = ServerConfig(
                name="docs",
                url=server.url,
                auth=OAuth(scopes=("mcp",), store=store, authorize=approve_in_browser),
            )
            async with Session([login], hooks=[TurnHeaders()]) as session:
                async with session.turn() as turn:
                    await turn.call_tool("docs", "fail", {"message": "hello"})
            (authorize,) = server.auth_requests("/authorize")
            print(
                "authorization request:", authorize.query["scope"], authorize.query["code_challenge_method"]
            )
            print("token grants:", [r.form["grant_type"] for r in server.auth_requests("/token")])
            print("token file mode:", oct(store_path.stat().st_mode & 0o777))

            # No browser this time: the stored tokens are enough.
            quiet = ServerConfig(name="docs", url=server.url, auth=OAuth(scopes=("mcp",), store=store))
            async with Session([quiet]) as session:
                async with session.turn() as turn:
                    await turn.call_tool("docs", "fail", {"message": "again"})
                    try:
                        await turn.call_tool("docs", "sleep", {"seconds": 0})
                    except AuthorizationError as exc:
                        print(f"refused: status {exc.status}, scheme {exc.scheme}, scope {exc.scope!r}")
            print("browser rounds:", len(server.auth_requests("/authorize")))
            bearer = [r.header("authorization") or "" for r in server.requests("tools/call")]
            print(
                "tool calls with a bearer token:",
                sum(b.startswith("Bearer ") for b in bearer),
                "of",
                len(bearer),
            )


if __name__ == "__main__":
    anyio.run(main)

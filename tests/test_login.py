"""`codex-runtime login` / `logout` and Codex's OAuth keys in config.toml."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from codex_runtime import ConfigError, load_config
from codex_runtime.auth import OAuth, default_token_store
from codex_runtime.testing import OAuthServer
from codex_runtime.testing import approve_in_browser as browser


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return path


def test_codex_oauth_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_RUNTIME_HOME", str(tmp_path / "home"))
    path = write_config(
        tmp_path,
        """
[mcp_servers.gh]
url = "https://mcp.example.com/mcp"
scopes = ["repo", "read:org"]
oauth = { client_id = "abc", callback_port = 5555 }

[mcp_servers.plain]
url = "https://plain.example.com/mcp"

[mcp_servers.explicit]
url = "https://explicit.example.com/mcp"
auth = "oauth"
""",
    )
    servers = {s.name: s for s in load_config(path)}
    assert servers["gh"].auth == OAuth(scopes=("repo", "read:org"), client_id="abc", callback_port=5555)
    assert servers["plain"].auth is None
    assert servers["explicit"].auth == OAuth()


def test_stored_tokens_turn_oauth_on_as_in_codex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_RUNTIME_HOME", str(tmp_path / "home"))
    url = "https://plain.example.com/mcp"
    store = default_token_store("plain", url)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(
        json.dumps({"server_url": url, "tokens": {"access_token": "x", "token_type": "Bearer"}})
    )
    path = write_config(tmp_path, f'[mcp_servers.plain]\nurl = "{url}"\n')
    (server,) = load_config(path)
    assert server.auth == OAuth()


def test_oauth_keys_conflicting_with_a_bearer_token(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
[mcp_servers.gh]
url = "https://mcp.example.com/mcp"
bearer_token_env_var = "GH_TOKEN"
scopes = ["repo"]
""",
    )
    with pytest.raises(ConfigError, match="bearer_token_env_var"):
        load_config(path, environ={"GH_TOKEN": "t0ken-value"})
    stdio = write_config(tmp_path, '[mcp_servers.s]\ncommand = "x"\nscopes = ["a"]\n')
    with pytest.raises(ConfigError, match="HTTP"):
        load_config(stdio)


@pytest.mark.anyio
async def test_login_then_logout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CODEX_RUNTIME_HOME", str(home))
    env = dict(os.environ)
    with OAuthServer() as server:
        path = write_config(tmp_path, f'[mcp_servers.gh]\nurl = "{server.url}"\nscopes = ["mcp"]\n')
        command = [
            sys.executable,
            "-m",
            "codex_runtime",
            "login",
            "gh",
            "--config",
            str(path),
            "--timeout",
            "60",
        ]
        async with await anyio.open_process(command, env=env) as proc:
            assert proc.stderr is not None and proc.stdout is not None
            seen = b""
            url = None
            with anyio.fail_after(60):
                while url is None:
                    seen += await proc.stderr.receive()
                    found = re.search(rb"(http://127\.0\.0\.1:\d+/authorize\?\S+)", seen)
                    url = found.group(1).decode() if found else None
                await browser(url)
                stdout = b""
                async for chunk in proc.stdout:
                    stdout += chunk
                await proc.wait()
        assert proc.returncode == 0, seen
        assert b"logged in to 'gh'" in stdout
        store = default_token_store("gh", server.url)
        assert str(store.path).startswith(str(home))
        # The command's output never shows a token.
        assert not any(secret.encode() in stdout + seen for secret in server.secrets())
        (authorize,) = server.auth_requests("/authorize")
        assert authorize.query["scope"] == "mcp"

        # The stored tokens are used by the configured server, with no browser.
        (cfg,) = load_config(path)
        assert isinstance(cfg.auth, OAuth) and cfg.auth.authorize is None

        out = await anyio.run_process(
            [sys.executable, "-m", "codex_runtime", "logout", "gh", "--config", str(path), "--json"],
            env=env,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["removed"] is True
        assert not store.path.exists()


def test_login_refuses_a_stdio_server(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[mcp_servers.s]\ncommand = "x"\n')
    out = subprocess.run(
        [sys.executable, "-m", "codex_runtime", "login", "s", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "stdio" in out.stderr

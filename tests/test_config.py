"""Tests of `codex_runtime.config.load_config`."""

from __future__ import annotations

import json
import math
import os
import textwrap
import tomllib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_runtime._server_config import ConfigError, ServerConfig
from codex_runtime.config import ConfigWarning, load_config

SECRET = "s3cr3t-token-value-4f9a"
OTHER_SECRET = "another-hidden-value-77b2"
FILE_SECRET = "literal-header-secret-d41c"
ENVIRON = {
    "DOCS_TOKEN": SECRET,
    "DOCS_TENANT": OTHER_SECRET,
    "EMPTY": "",
    "BAD_VALUE": f"{SECRET}\r\nx-injected: 1",
}
ALL_SECRETS = (SECRET, OTHER_SECRET, FILE_SECRET)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def write_json(tmp_path: Path, data: object, name: str = "mcp.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def assert_no_secret(exc: BaseException) -> None:
    for link in chain(exc):
        shown = [str(link), repr(link), repr(link.args), repr(getattr(link, "__dict__", {}))]
        for secret in ALL_SECRETS:
            for text in shown:
                assert secret not in text, f"secret leaked through {type(link).__name__}: {text}"


# --------------------------------------------------------------------------- TOML

FULL_TOML = f"""
model = "gpt-5"
approval_policy = "on-request"

[profiles.fast]
model = "gpt-5-mini"

[tui]
notifications = true

[mcp_servers.docs]
url = "https://docs.example.com/mcp"
http_headers = {{ "X-Client" = "codex-runtime", "X-Api-Key" = "{FILE_SECRET}" }}
env_http_headers = {{ "X-Tenant" = "DOCS_TENANT" }}
bearer_token_env_var = "DOCS_TOKEN"
startup_timeout_sec = 15
tool_timeout_sec = 42.5
enabled_tools = ["search", "fetch"]
disabled_tools = ["delete"]
required = true
enabled = true
apps = true
forward = true
header_delivery = "both"
protocol = "legacy"

[mcp_servers.files]
command = "mcp-files"
args = ["--root", "/srv/data"]
env = {{ LOG_LEVEL = "debug" }}
cwd = "/srv"
startup_timeout_ms = 2500

[mcp_servers.off]
enabled = false
url = "https://off.example.com/mcp"
bearer_token_env_var = "NOT_SET_ANYWHERE"
no_such_key = "ignored because the server is disabled"

[mcp_servers.another]
url = "http://localhost:8080/mcp"

[sandbox_workspace_write]
network_access = false
"""


def test_full_codex_toml(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_TOML)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        servers = load_config(path, environ=ENVIRON)

    assert [s.name for s in servers] == ["docs", "files", "another"]
    assert all(isinstance(s, ServerConfig) for s in servers)
    docs, files, another = servers

    assert docs.url == "https://docs.example.com/mcp"
    assert docs.command is None
    assert docs.transport == "streamable-http"
    assert docs.headers.items() == [
        ("x-client", "codex-runtime"),
        ("x-api-key", FILE_SECRET),
        ("x-tenant", OTHER_SECRET),
        ("authorization", f"Bearer {SECRET}"),
    ]
    assert docs.startup_timeout == 15
    assert docs.tool_timeout == 42.5
    assert docs.enabled_tools == ("search", "fetch")
    assert docs.disabled_tools == ("delete",)
    assert docs.required is True
    assert docs.apps is True
    assert docs.forward is True
    assert docs.header_delivery == "both"
    assert docs.protocol == "legacy"
    # Secret-looking header names are redacted by `Headers`' repr.
    assert SECRET not in repr(docs)
    assert FILE_SECRET not in repr(docs)
    # A value read from the environment is secret whatever its header's name.
    assert docs.secret_headers == frozenset({"x-tenant", "authorization"})
    assert OTHER_SECRET not in repr(docs)

    assert files.command == "mcp-files"
    assert files.url is None
    assert files.args == ("--root", "/srv/data")
    assert files.env == {"LOG_LEVEL": "debug"}
    assert files.cwd == "/srv"
    assert files.startup_timeout == 2.5
    assert files.tool_timeout == 60.0  # the default
    assert files.enabled_tools is None
    assert not files.headers
    assert (files.apps, files.forward, files.required) == (False, False, False)

    assert another.url == "http://localhost:8080/mcp"
    assert another.protocol == "auto"
    assert another.header_delivery == "http"


@pytest.mark.parametrize(
    "text",
    ["", 'model = "gpt-5"\n[profiles.x]\nmodel = "o3"\n', "[mcp_servers]\n"],
    ids=["empty", "no-servers", "empty-table"],
)
def test_toml_without_servers(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text), environ={}) == []


def test_order_is_the_file_order(tmp_path: Path) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    text = "".join(f'[mcp_servers.{n}]\ncommand = "run-{n}"\n' for n in names)
    assert [s.name for s in load_config(write(tmp_path, text), environ={})] == names
    data = {"mcpServers": {n: {"command": f"run-{n}"} for n in names}}
    assert [s.name for s in load_config(write_json(tmp_path, data), environ={})] == names


def test_bearer_token_becomes_authorization_header(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [mcp_servers.api]
        url = "https://api.example.com/mcp"
        bearer_token_env_var = "DOCS_TOKEN"
        """,
    )
    (cfg,) = load_config(path, environ=ENVIRON)
    assert cfg.headers.get("authorization") == f"Bearer {SECRET}"
    assert cfg.headers.to_dict() == {"authorization": f"Bearer {SECRET}"}
    assert SECRET not in repr(cfg)


def test_environ_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_RUNTIME_TEST_TOKEN", "from-os-environ")
    path = write(
        tmp_path,
        """
        [mcp_servers.api]
        url = "https://api.example.com/mcp"
        bearer_token_env_var = "CODEX_RUNTIME_TEST_TOKEN"
        """,
    )
    (cfg,) = load_config(str(path))
    assert cfg.headers.get("authorization") == "Bearer from-os-environ"


def test_unknown_server_key_warns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [mcp_servers.docs]
        url = "https://docs.example.com/mcp"
        headers = { "X-A" = "1" }
        retries = 3
        """,
    )
    with pytest.warns(ConfigWarning) as record:
        servers = load_config(path, environ={})
    assert [s.name for s in servers] == ["docs"]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    for key, message in zip(("headers", "retries"), messages, strict=True):
        assert str(path) in message
        assert "'docs'" in message
        assert repr(key) in message
    assert "http_headers" in messages[0]  # a hint to the TOML spelling
    assert record[0].filename == __file__  # attributed to the caller of load_config


def test_unknown_json_key_warns(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"x": {"command": "run", "autoApprove": []}}})
    with pytest.warns(ConfigWarning, match=r"server 'x': unknown key 'autoApprove'"):
        (cfg,) = load_config(path, environ={})
    assert cfg.command == "run"


def test_unknown_key_warning_can_be_made_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[mcp_servers.x]\ncommand = "run"\ntypo = 1\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        with pytest.raises(ConfigWarning):
            load_config(path, environ={})


# --------------------------------------------------------------------------- JSON


def test_json_mcp_servers(tmp_path: Path) -> None:
    data = {
        "globalShortcut": "ignored",
        "mcpServers": {
            "files": {
                "type": "stdio",
                "command": "npx",
                "args": ["-y", "mcp-files", "/tmp"],
                "env": {"DEBUG": "1"},
                "cwd": "/tmp",
            },
            "docs": {
                "type": "streamable-http",
                "url": "https://docs.example.com/mcp",
                "headers": {"X-Api-Key": FILE_SECRET},
                "env_http_headers": {"X-Tenant": "DOCS_TENANT"},
                "bearer_token_env_var": "DOCS_TOKEN",
                "apps": True,
                "forward": True,
                "required": True,
                "header_delivery": "meta",
                "protocol": "legacy",
                "startup_timeout_sec": 5,
                "tool_timeout_sec": 7.5,
                "enabled_tools": ["a"],
                "disabled_tools": ["b"],
            },
            "plain": {"type": "http", "url": "https://plain.example.com/mcp"},
            "untyped": {"url": "https://untyped.example.com/mcp"},
            "gone": {"disabled": True, "command": "never", "bearer_token_env_var": "NOT_SET"},
            "kept": {"disabled": False, "command": "kept"},
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        servers = load_config(write_json(tmp_path, data), environ=ENVIRON)
    assert [s.name for s in servers] == ["files", "docs", "plain", "untyped", "kept"]
    files, docs, plain, _, _ = servers
    assert files.transport == "stdio"
    assert files.args == ("-y", "mcp-files", "/tmp")
    assert files.env == {"DEBUG": "1"}
    assert files.cwd == "/tmp"
    assert docs.headers.to_dict() == {
        "x-api-key": FILE_SECRET,
        "x-tenant": OTHER_SECRET,
        "authorization": f"Bearer {SECRET}",
    }
    assert (docs.apps, docs.forward, docs.required) == (True, True, True)
    assert (docs.header_delivery, docs.protocol) == ("meta", "legacy")
    assert (docs.startup_timeout, docs.tool_timeout) == (5, 7.5)
    assert (docs.enabled_tools, docs.disabled_tools) == (("a",), ("b",))
    assert plain.url == "https://plain.example.com/mcp"


def test_json_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"mcpServers": {"x": {"command": "run"}}}, name="MCP.JSON")
    assert [s.name for s in load_config(path, environ={})] == ["x"]


def test_json_empty_servers(tmp_path: Path) -> None:
    assert load_config(write_json(tmp_path, {"mcpServers": {}}), environ={}) == []


# --------------------------------------------------------------------------- errors

URL = 'url = "https://x.example.com/mcp"'
CMD = 'command = "run"'

# (server table body, fragments the message must contain besides the path and the server)
TOML_ERRORS: list[tuple[str, str, tuple[str, ...]]] = [
    ("args-string", f'{CMD}\nargs = "x"', ("args", "list")),
    ("args-item", f'{CMD}\nargs = ["a", 1]', ("args[1]",)),
    ("required-string", f'{URL}\nrequired = "yes"', ("required", "true or false")),
    ("apps-int", f"{URL}\napps = 1", ("apps",)),
    ("forward-string", f'{URL}\nforward = "true"', ("forward",)),
    ("enabled-string", f'{URL}\nenabled = "no"', ("enabled",)),
    ("timeout-string", f'{URL}\ntool_timeout_sec = "10"', ("tool_timeout_sec", "number")),
    ("timeout-bool", f"{URL}\nstartup_timeout_sec = true", ("startup_timeout_sec", "number")),
    ("timeout-zero", f"{URL}\ntool_timeout_sec = 0", ("tool_timeout_sec", "positive")),
    ("timeout-negative", f"{URL}\nstartup_timeout_sec = -1.5", ("startup_timeout_sec",)),
    ("timeout-inf", f"{URL}\ntool_timeout_sec = inf", ("tool_timeout_sec",)),
    ("timeout-nan", f"{URL}\ntool_timeout_sec = nan", ("tool_timeout_sec",)),
    ("timeout-ms-string", f'{URL}\nstartup_timeout_ms = "100"', ("startup_timeout_ms",)),
    (
        "timeout-ms-and-sec",
        f"{URL}\nstartup_timeout_ms = 100\nstartup_timeout_sec = 1",
        ("startup_timeout_ms", "startup_timeout_sec"),
    ),
    ("headers-list", f'{URL}\nhttp_headers = ["a"]', ("http_headers", "table")),
    ("headers-int-value", f"{URL}\nhttp_headers = {{ X-A = 1 }}", ("http_headers['X-A']",)),
    ("env-int-value", f"{CMD}\nenv = {{ A = 1 }}", ("env['A']",)),
    ("env-list", f'{CMD}\nenv = ["A=1"]', ("env",)),
    ("cwd-int", f"{CMD}\ncwd = 1", ("cwd",)),
    ("command-list", 'command = ["run"]', ("command",)),
    ("url-int", "url = 1", ("url",)),
    ("url-bad", 'url = "ftp://x"', ("url",)),
    ("command-empty", 'command = ""', ("command",)),
    ("enabled-tools-item", f"{URL}\nenabled_tools = [1]", ("enabled_tools[0]",)),
    ("disabled-tools-string", f'{URL}\ndisabled_tools = "x"', ("disabled_tools",)),
    ("disabled-tools-empty-item", f'{URL}\ndisabled_tools = [""]', ("disabled_tools",)),
    ("protocol-int", f"{URL}\nprotocol = 2", ("protocol",)),
    ("protocol-unknown", f'{URL}\nprotocol = "v3"', ("protocol", "auto")),
    ("delivery-unknown", f'{URL}\nheader_delivery = "smoke"', ("header_delivery",)),
    ("both-url-and-command", f"{URL}\n{CMD}", ("url/command",)),
    ("neither-url-nor-command", "required = true", ("url/command",)),
    ("stdio-keys-on-http", f'{URL}\nargs = ["a"]', ("args/env/cwd",)),
    ("env-on-http", f'{URL}\nenv = {{ A = "{FILE_SECRET}" }}', ("args/env/cwd",)),
    (
        "env-header-missing",
        f'{URL}\nenv_http_headers = {{ "X-Tenant" = "MISSING_VAR" }}',
        ("env_http_headers['X-Tenant']", "MISSING_VAR", "not set"),
    ),
    ("env-header-not-table", f'{URL}\nenv_http_headers = "X"', ("env_http_headers",)),
    ("env-header-empty-name", f'{URL}\nenv_http_headers = {{ X = "" }}', ("env_http_headers['X']",)),
    (
        "bearer-missing",
        f'{URL}\nbearer_token_env_var = "MISSING_TOKEN"',
        ("bearer_token_env_var", "MISSING_TOKEN", "not set"),
    ),
    ("bearer-empty-value", f'{URL}\nbearer_token_env_var = "EMPTY"', ("bearer_token_env_var", "EMPTY")),
    ("bearer-empty-name", f'{URL}\nbearer_token_env_var = ""', ("bearer_token_env_var",)),
    ("bearer-int", f"{URL}\nbearer_token_env_var = 1", ("bearer_token_env_var",)),
    (
        "bearer-bad-value",
        f'{URL}\nbearer_token_env_var = "BAD_VALUE"',
        ("bearer_token_env_var", "control character"),
    ),
    (
        "env-header-bad-value",
        f'{URL}\nenv_http_headers = {{ "X-Tenant" = "BAD_VALUE" }}',
        ("env_http_headers['X-Tenant']",),
    ),
    ("header-bad-name", f'{URL}\nhttp_headers = {{ "Bad Name" = "v" }}', ("http_headers['Bad Name']",)),
    (
        "header-bad-value",
        f'{URL}\nhttp_headers = {{ "X-Api-Key" = "{FILE_SECRET}\\n" }}',
        ("http_headers['X-Api-Key']", "control character"),
    ),
    (
        "header-non-latin1",
        f'{URL}\nhttp_headers = {{ "X-Api-Key" = "{FILE_SECRET}\u20ac" }}',
        ("http_headers['X-Api-Key']",),
    ),
    (
        "header-trailing-space",
        f'{URL}\nhttp_headers = {{ "X-Api-Key" = "{FILE_SECRET} " }}',
        ("http_headers['X-Api-Key']",),
    ),
    (
        "header-too-large",
        f'{URL}\nhttp_headers = {{ "X-Api-Key" = "{FILE_SECRET}{"a" * 9000}" }}',
        ("http_headers['X-Api-Key']", "larger"),
    ),
    (
        "header-protected",
        f'{URL}\nhttp_headers = {{ Host = "{FILE_SECRET}" }}',
        ("http_headers['Host']", "host"),
    ),
    (
        "header-duplicate",
        f'{URL}\nhttp_headers = {{ Authorization = "{FILE_SECRET}" }}\nbearer_token_env_var = "DOCS_TOKEN"',
        ("bearer_token_env_var", "Authorization", "http_headers"),
    ),
    (
        "header-duplicate-env",
        f'{URL}\nhttp_headers = {{ X-Tenant = "{FILE_SECRET}" }}\n'
        'env_http_headers = { x-tenant = "DOCS_TENANT" }',
        ("env_http_headers['x-tenant']", "http_headers"),
    ),
]


@pytest.mark.parametrize(("body", "fragments"), [c[1:] for c in TOML_ERRORS], ids=[c[0] for c in TOML_ERRORS])
def test_toml_server_errors(tmp_path: Path, body: str, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'model = "x"\n[mcp_servers.my-server]\n{body}\n', encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ConfigError) as info:
            load_config(path, environ=ENVIRON)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "'my-server'" in message
    for fragment in fragments:
        assert fragment in message
    assert_no_secret(info.value)


def test_invalid_server_name(tmp_path: Path) -> None:
    path = write(tmp_path, f'[mcp_servers."bad name"]\n{URL}\n')
    with pytest.raises(ConfigError, match=r"server name 'bad name' is invalid") as info:
        load_config(path, environ=ENVIRON)
    assert str(info.value).startswith(f"{path}: ")

    path = write(tmp_path, f"[mcp_servers.a__b]\n{URL}\n")
    with pytest.raises(ConfigError, match=r"'a__b'"):
        load_config(path, environ=ENVIRON)


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("mcp_servers = 1\n", ("mcp_servers",)),
        ("mcp_servers = [1]\n", ("mcp_servers",)),
        ("[mcp_servers]\nweird = 1\n", ("'weird'", "table")),
    ],
    ids=["int", "list", "server-not-table"],
)
def test_toml_structure_errors(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENVIRON)
    assert str(info.value).startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_invalid_toml_says_where_without_showing_content(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        model = "x"
        [mcp_servers.docs]
        {URL}
        http_headers = {{ "X-Api-Key" = "{FILE_SECRET}"
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENVIRON)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid TOML")
    assert "line 5" in message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert_no_secret(info.value)


def test_duplicate_toml_server(tmp_path: Path) -> None:
    path = write(tmp_path, f"[mcp_servers.a]\n{URL}\n[mcp_servers.a]\n{CMD}\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path, environ=ENVIRON)


JSON_ERRORS: list[tuple[str, object, tuple[str, ...]]] = [
    ("type-sse", {"type": "sse", "url": "https://x.example.com/sse"}, ("type", "streamable-http")),
    ("type-stdio-with-url", {"type": "stdio", "url": "https://x.example.com/"}, ("type", "command")),
    ("type-http-with-command", {"type": "http", "command": "run"}, ("type", "url")),
    ("type-int", {"type": 1, "command": "run"}, ("type",)),
    ("disabled-string", {"disabled": "yes", "command": "run"}, ("disabled",)),
    ("headers-list", {"url": "https://x.example.com/", "headers": [FILE_SECRET]}, ("headers",)),
    ("headers-int", {"url": "https://x.example.com/", "headers": {"X-A": 1}}, ("headers['X-A']",)),
    (
        "headers-bad-value",
        {"url": "https://x.example.com/", "headers": {"X-Key": f"{FILE_SECRET}\u0000"}},
        ("headers['X-Key']",),
    ),
    ("args-string", {"command": "run", "args": "--flag"}, ("args",)),
    ("env-nested", {"command": "run", "env": {"A": {"B": FILE_SECRET}}}, ("env['A']",)),
    ("timeout-string", {"command": "run", "tool_timeout_sec": "10"}, ("tool_timeout_sec",)),
    ("timeout-bool", {"command": "run", "startup_timeout_sec": False}, ("startup_timeout_sec",)),
    ("timeout-huge-int", {"command": "run", "tool_timeout_sec": 10**400}, ("tool_timeout_sec",)),
    ("required-string", {"command": "run", "required": "false"}, ("required",)),
    ("server-not-object", [1, 2], ("must be an object",)),
    ("neither", {"required": True}, ("url/command",)),
    ("bearer-missing", {"url": "https://x.example.com/", "bearer_token_env_var": "NOPE"}, ("NOPE",)),
]


@pytest.mark.parametrize(
    ("server", "fragments"), [c[1:] for c in JSON_ERRORS], ids=[c[0] for c in JSON_ERRORS]
)
def test_json_server_errors(tmp_path: Path, server: object, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"my-server": server}}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENVIRON)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "'my-server'" in message
    for fragment in fragments:
        assert fragment in message
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"mcpServers": {"a": {"headers": {"X-Key": "' + FILE_SECRET + '"}', "line 1"),
        ('{\n  "mcpServers": {\n    "a": {"command": "run",}\n  }\n}', "line 3"),
        ("[]", "top level"),
        ('{"servers": {}}', "mcpServers"),
        ('{"mcpServers": []}', "mcpServers"),
        ('{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y"}}}', "duplicate key 'a'"),
        ('{"mcpServers": {"a": {"command": "x", "command": "y"}}}', "duplicate key 'command'"),
        ("[" * 100_000, "invalid JSON"),
    ],
    ids=[
        "truncated",
        "trailing-comma",
        "list",
        "no-mcpServers",
        "mcpServers-list",
        "dup-server",
        "dup-key",
        "deep",
    ],
)
def test_json_document_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "servers.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENVIRON)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)
    assert_no_secret(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(missing, environ={})
    assert str(missing) in str(info.value)

    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(tmp_path, environ={})
    assert str(tmp_path) in str(info.value)

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'[mcp_servers.a]\nurl = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"not valid UTF-8 \(at byte 23\)") as info:
        load_config(binary, environ={})
    assert str(info.value).startswith(f"{binary}: ")


def test_error_message_never_holds_environment_values(tmp_path: Path) -> None:
    # Every environment value is secret, even those of unrelated variables.
    environ = {name: f"{SECRET}-{name}" for name in ("A", "B", "PATH", "HOME")}
    path = write(tmp_path, f'[mcp_servers.x]\n{URL}\nenv_http_headers = {{ "X-A" = "A", "X-C" = "C" }}\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ)
    assert "'C'" in str(info.value)
    assert_no_secret(info.value)


# --------------------------------------------------------------------------- fuzzing

_KNOWN_KEYS = [
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "http_headers",
    "headers",
    "env_http_headers",
    "bearer_token_env_var",
    "startup_timeout_sec",
    "startup_timeout_ms",
    "tool_timeout_sec",
    "enabled_tools",
    "disabled_tools",
    "required",
    "enabled",
    "disabled",
    "type",
    "apps",
    "forward",
    "header_delivery",
    "protocol",
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["https://x.example.com/mcp", "run", "DOCS_TOKEN", "X-Key", "stdio", "http", "both", "legacy"]
    ),
)
_junk = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_servers = st.dictionaries(st.sampled_from(_KNOWN_KEYS), _junk, max_size=6)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in value)
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _no_nulls(value: Any) -> Any:
    """TOML has no null: drop ``None`` everywhere."""
    if isinstance(value, list):
        return [_no_nulls(v) for v in value if v is not None]
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    return value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(server=_servers, as_json=st.booleans())
def test_junk_values_only_raise_config_error(tmp_path: Path, server: dict[str, Any], as_json: bool) -> None:
    if as_json:
        path = tmp_path / "fuzz.json"
        path.write_text(json.dumps({"mcpServers": {"fuzz": server}}), encoding="utf-8")
    else:
        path = tmp_path / "fuzz.toml"
        server = _no_nulls(server)
        body = "".join(f"{key} = {_toml_value(value)}\n" for key, value in server.items())
        path.write_text(f"[mcp_servers.fuzz]\n{body}", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        try:
            servers = load_config(path, environ=ENVIRON)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}: ")
            assert_no_secret(exc)
            return
    assert len(servers) <= 1
    for cfg in servers:
        assert isinstance(cfg, ServerConfig)
        assert cfg.name == "fuzz"


def test_fuzz_helpers_write_valid_toml(tmp_path: Path) -> None:
    value = {"a b": ['x\u0000\u007f"\\', 1.5, -2, float("inf"), True, {"k": "\u20ac\U0001f600"}]}
    path = tmp_path / "v.toml"
    path.write_text(f"v = {_toml_value(value)}\n", encoding="utf-8")
    with path.open("rb") as fp:
        assert tomllib.load(fp) == {"v": value}


def test_path_like_and_str_are_equivalent(tmp_path: Path) -> None:
    path = write(tmp_path, f"[mcp_servers.a]\n{URL}\n")
    assert load_config(path, environ={}) == load_config(os.fspath(path), environ={})

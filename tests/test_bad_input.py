"""Fuzzing every public entry point that takes outside input.

Header names and values (``call_tool(headers=...)``, `request_headers`,
``set_turn_headers``, ``turn.call_tool``), turn metadata (with `TurnHeaders`, at turn start
and changed mid-turn), forwarded headers (with `ForwardHeaders`), server configurations
(`ServerConfig`, `load_config`, ``Session.add_server``) and the other arguments of calls
and sessions. For each bad input: a typed error, nothing sent (the server recorded
nothing new), and the client's turn entries and the session's state unchanged.

One recording server, one connected client and one session per backend live for the
whole module, held by a blocking portal (`anyio.from_thread.start_blocking_portal`), so
hypothesis drives them from synchronous tests, example after example.
"""

from __future__ import annotations

import itertools
import json
import socket
import string
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_runtime import (
    PROTECTED,
    CodexRuntimeError,
    ConfigError,
    ForwardHeaders,
    HeaderPolicy,
    Headers,
    InvalidHeaderError,
    InvalidMetadataError,
    McpClient,
    ServerConfig,
    ServerUnavailableError,
    Session,
    Turn,
    TurnHeaders,
    TurnState,
    bind_turn,
    load_config,
    request_headers,
)
from codex_runtime.hooks import RESERVED_METADATA_KEYS
from codex_runtime.testing import RecordingServer

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEADER_ERRORS = (InvalidHeaderError, TypeError)
METADATA_ERRORS = (InvalidMetadataError, TypeError)


# -- the module's server, client and session -----------------------------------------------------


@attrs.frozen
class Env:
    portal: BlockingPortal
    server: RecordingServer
    client: McpClient
    session: Session

    def state(self) -> tuple[Any, ...]:
        """Everything a rejected input must leave as it was."""
        return (
            len(self.server.requests()),
            self.client.turn_entry_ids(),
            self.session.current_turn,
            tuple(self.session.clients),
            self.client.connected,
        )

    def rejects(
        self, errors: tuple[type[BaseException], ...], fn: Callable[..., Any], *args: Any
    ) -> BaseException:
        """Run ``fn(*args)`` on the event loop; it must raise one of ``errors`` and change nothing."""
        before = self.state()
        with pytest.raises(errors) as raised:
            self.portal.call(fn, *args)
        assert self.state() == before, f"state changed by a rejected input ({raised.value!r})"
        return raised.value


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with RecordingServer("bad-input") as server, start_blocking_portal(request.param) as portal:
        config = ServerConfig(name="srv", url=server.url, apps=True, forward=True, header_delivery="both")
        with portal.wrap_async_context_manager(McpClient(config)) as client:
            session = Session(clients=[client], hooks=[TurnHeaders("both"), ForwardHeaders()], abort_grace=0)
            with portal.wrap_async_context_manager(session):
                # A long-lived entry of a turn outside the session: rejected inputs must keep it.
                client.set_turn_headers("kept-turn", {"x-kept": "kept-value"})
                yield Env(portal, server, client, session)


# -- strategies -------------------------------------------------------------------------------

TCHARS = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
CONTROL = [chr(c) for c in range(0x20) if c != 0x09] + ["\x7f"]
MARK = "secret-"  # every valid value carries it: no error message may show one

names = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12).map(
    lambda s: f"x-{s}"
)
values = st.text(alphabet=string.ascii_letters + string.digits, min_size=4, max_size=12).map(
    lambda s: MARK + s
)
not_str = st.one_of(
    st.integers(), st.none(), st.binary(max_size=4), st.floats(), st.lists(st.integers(), max_size=2)
)
bad_names = st.one_of(
    st.just(""),
    st.text(max_size=16).filter(lambda s: any(c not in TCHARS for c in s)),
    st.sampled_from([" x-a", "x-a ", "x a", "x-a:", "x\r\ny", "\u00e9t\u00e9", "x/y", "(x)", "x\x00"]),
)
visible_text = st.text(alphabet=VISIBLE, max_size=5)
bad_values = st.one_of(
    st.tuples(visible_text, st.sampled_from(CONTROL), visible_text).map("".join),
    st.tuples(
        visible_text, st.characters(min_codepoint=0x100, categories=("L", "N", "P", "S", "Z")), visible_text
    ).map("".join),
    st.tuples(
        st.text(alphabet=VISIBLE, min_size=1, max_size=5), st.sampled_from([" ", "\t"]), st.booleans()
    ).map(lambda t: t[1] + t[0] if t[2] else t[0] + t[1]),
    st.integers(min_value=8193, max_value=9000).map(lambda n: "v" * n),
)
malformed = st.sampled_from(
    ["x-a: b", b"x-a: b", 42, 4.2, [("a", "b", "c")], [["a"]], [None], [("x-a",)], object()]
)


def random_case(draw: st.DrawFn, name: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))


def in_form(draw: st.DrawFn, pairs: list[tuple[Any, Any]]) -> Any:
    """``pairs`` as one of the accepted input forms (a mapping only when it keeps every pair)."""
    forms = ["pairs", "lists"]
    hashable = all(isinstance(n, str | int | float | bytes | type(None)) for n, _ in pairs)
    if hashable and len({n for n, _ in pairs}) == len(pairs):
        forms.append("mapping")
    form = draw(st.sampled_from(forms))
    if form == "mapping":
        return dict(pairs)
    if form == "lists":
        return [[n, v] for n, v in pairs]
    return pairs


@st.composite
def bad_headers(draw: st.DrawFn, *, protected: bool = True) -> Any:
    """Headers with exactly one problem, for the call and turn layers (or, without
    ``protected``, any layer)."""
    kinds = ["name", "name-not-str", "value", "value-not-str", "set-too-large", "malformed"]
    if protected:
        kinds.append("protected")
    kind = draw(st.sampled_from(kinds))
    if kind == "malformed":
        return draw(malformed)
    pairs: list[tuple[Any, Any]] = draw(
        st.lists(st.tuples(names, values), max_size=3, unique_by=lambda p: p[0])
    )
    if kind == "set-too-large":
        bad: list[tuple[Any, Any]] = [(f"x-big-{i}", MARK + "b" * 7990) for i in range(9)]
    elif kind == "name":
        bad = [(draw(bad_names), draw(values))]
    elif kind == "name-not-str":
        bad = [(draw(not_str), draw(values))]
    elif kind == "value":
        bad = [(draw(names), draw(bad_values))]
    elif kind == "value-not-str":
        bad = [(draw(names), draw(not_str))]
    else:
        bad = [(random_case(draw, draw(st.sampled_from(sorted(PROTECTED)))), draw(values))]
    at = draw(st.integers(0, len(pairs)))
    return in_form(draw, pairs[:at] + bad + pairs[at:])


#: Names the SMG policy forwards (to MCP or to the provider) that take a single value.
SINGLE_VALUED = [
    "authorization",
    "x-smg-oci-delegation-token",
    "x-smg-oci-compartment-id",
    "x-request-id",
    "x-correlation-id",
    "traceparent",
    "x-smg-routing-key",
    "x-request-id-upstream",
]


@st.composite
def bad_forwarded_header(draw: st.DrawFn) -> Any:
    """Headers with one problem in a header the SMG policy forwards, or malformed input.

    Only what the policy forwards may refuse a turn: an invalid header it forwards nowhere
    (e.g. a 9 KiB cookie) is not checked."""
    kind = draw(st.sampled_from(["name", "value", "value-not-str", "set-too-large", "malformed"]))
    if kind == "malformed":
        return draw(malformed)
    pairs: list[tuple[Any, Any]] = draw(
        st.lists(st.tuples(names, values), max_size=3, unique_by=lambda p: p[0])
    )
    if kind == "set-too-large":
        bad: list[tuple[Any, Any]] = [(f"x-request-id-big-{i}", MARK + "b" * 7990) for i in range(9)]
    elif kind == "name":  # under the forwarded prefix ``x-request-id-*``
        suffix = draw(st.sampled_from([" x", "a b", "x:", "x\r\ny", "\u00e9t\u00e9", "x/y", "(x)", "x\x00"]))
        bad = [(f"x-request-id-{suffix}", draw(values))]
    elif kind == "value":
        bad = [(random_case(draw, draw(st.sampled_from(SINGLE_VALUED))), draw(bad_values))]
    else:
        bad = [(random_case(draw, draw(st.sampled_from(SINGLE_VALUED))), draw(not_str))]
    at = draw(st.integers(0, len(pairs)))
    return in_form(draw, pairs[:at] + bad + pairs[at:])


@st.composite
def bad_forwarded(draw: st.DrawFn) -> Any:
    """Incoming request headers that `ForwardHeaders` (SMG policy) must refuse."""
    kind = draw(st.sampled_from(["any-layer", "duplicate-differs", "not-visible-ascii"]))
    if kind == "any-layer":
        return draw(bad_forwarded_header())
    pairs: list[tuple[str, str]] = draw(st.lists(st.tuples(names, values), max_size=3))
    name = draw(st.sampled_from(SINGLE_VALUED))
    if kind == "duplicate-differs":
        first, second = draw(st.lists(values, min_size=2, max_size=2, unique=True))
        bad = [(random_case(draw, name), first), (random_case(draw, name), second)]
    else:
        obs = chr(draw(st.integers(0x80, 0xFF)))
        bad = [(random_case(draw, name), draw(values) + obs + "x")]
    for item in bad:
        pairs.insert(draw(st.integers(0, len(pairs))), item)
    if kind == "not-visible-ascii":
        return pairs  # a `Headers` cannot hold such a value at all
    return draw(st.sampled_from([pairs, Headers(pairs)]))


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=10))
small_keys = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8)


@st.composite
def bad_metadata(draw: st.DrawFn) -> Any:
    """Turn metadata that `Session.turn` or `TurnHeaders` must refuse."""
    kind = draw(
        st.sampled_from(
            [
                "too-many",
                "reserved",
                "big-value",
                "long-key",
                "empty-key",
                "not-json",
                "key-not-str",
                "not-mapping",
            ]
        )
    )
    base: dict[Any, Any] = draw(st.dictionaries(small_keys, json_scalars, max_size=3))
    if kind == "too-many":
        return draw(st.dictionaries(small_keys, json_scalars, min_size=17, max_size=24))
    if kind == "reserved":
        base[draw(st.sampled_from(sorted(RESERVED_METADATA_KEYS)))] = draw(json_scalars)
    elif kind == "big-value":
        size = draw(st.integers(129, 400))
        base["big"] = draw(st.sampled_from(["x" * size, list(range(size)), {"nested": "\u00e9" * size}]))
    elif kind == "long-key":
        base[draw(st.sampled_from(["k" * 65, "\u00e9" * 33, "\u20ac" * 22]))] = 1
    elif kind == "empty-key":
        base[""] = 1
    elif kind == "not-json":
        value = draw(
            st.sampled_from([object(), {1, 2}, b"x", float("nan"), float("inf"), complex(1, 2), print])
        )
        base["bad"] = draw(st.sampled_from([value, {"nested": value}, [value]]))
    elif kind == "key-not-str":
        base[draw(st.one_of(st.integers(), st.none(), st.tuples(st.integers())))] = 1
    else:
        return draw(st.sampled_from([[("model", "x")], "model=x", 42, b"x", object()]))
    return base


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=5),
    st.lists(st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=3),
    st.dictionaries(
        st.one_of(st.text(max_size=5), st.integers()),
        st.one_of(st.text(max_size=5), st.integers()),
        max_size=3,
    ),
)
CONFIG_FIELDS = [field.name for field in attrs.fields(ServerConfig) if field.name != "name"]
config_kwargs = st.fixed_dictionaries(
    {"name": st.one_of(junk, st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True))},
    optional={
        **{name: junk for name in CONFIG_FIELDS},
        "url": st.one_of(
            junk, st.sampled_from(["http://127.0.0.1:9/mcp", "https://example.test/mcp", "ftp://x"])
        ),
        "command": st.one_of(junk, st.just("python")),
        "headers": st.one_of(junk, bad_headers()),
    },
)


# -- header names and values ----------------------------------------------------------------------


async def _call_with_headers(client: McpClient, headers: Any) -> None:
    await client.call_tool("echo", {"text": "never sent"}, headers=headers)


async def _call_in_block(client: McpClient, headers: Any) -> None:
    with request_headers(headers):
        await client.call_tool("echo", {"text": "never sent"})


async def _call_in_turn(client: McpClient, headers: Any) -> None:
    with bind_turn("kept-turn"):
        await client.call_tool("echo", {"text": "never sent"}, headers=headers)


@FUZZ
@given(headers=bad_headers(), how=st.sampled_from([_call_with_headers, _call_in_block, _call_in_turn]))
def test_bad_call_headers_are_refused(env: Env, headers: Any, how: Callable[..., Any]) -> None:
    error = env.rejects(HEADER_ERRORS, how, env.client, headers)
    assert MARK not in str(error)


@FUZZ
@given(headers=bad_headers(), turn_id=st.sampled_from(["kept-turn", "other-turn"]))
def test_bad_turn_headers_are_refused_and_leave_the_entry_alone(env: Env, headers: Any, turn_id: str) -> None:
    error = env.rejects(HEADER_ERRORS, env.client.set_turn_headers, turn_id, headers)
    assert MARK not in str(error)
    # What the kept entry sends is exactly what it sent before: nothing of the refused input.
    text = f"kept-{next(_checks)}"

    async def call() -> None:
        with bind_turn("kept-turn"):
            await env.client.call_tool("echo", {"text": text})

    env.portal.call(call)
    [record] = [r for r in env.server.requests("tools/call") if r.arguments.get("text") == text]
    assert record.meta["extra_headers"] == {"x-kept": "kept-value"}
    assert {k: v for k, v in record.header_pairs if k.startswith("x-")} == {"x-kept": "kept-value"}


_checks = itertools.count()


@FUZZ
@given(headers=bad_headers())
def test_bad_headers_on_a_turn_call_fail_that_turn_only(env: Env, headers: Any) -> None:
    seen: list[Turn] = []

    async def run() -> None:
        async with env.session.turn(metadata={"model": "m"}) as turn:
            seen.append(turn)
            await turn.call_tool("srv", "echo", {"text": "never sent"}, headers=headers)

    env.rejects(HEADER_ERRORS, run)
    [turn] = seen
    assert turn.state is TurnState.FAILED


@FUZZ
@given(
    meta=st.dictionaries(
        st.one_of(st.integers(), st.none(), st.just("")), st.integers(), min_size=1, max_size=3
    )
)
def test_bad_turn_meta_keys_are_refused(env: Env, meta: dict[Any, Any]) -> None:
    env.rejects((InvalidHeaderError, TypeError), lambda: env.client.set_turn_headers("kept-turn", meta=meta))


def test_a_refused_update_keeps_the_turn_entry_as_it_was(env: Env) -> None:
    for bad in ({"x-kept": "new\r\nvalue"}, {"host": "evil"}, [("x-kept", "new"), ("bad name", "v")]):
        env.rejects(HEADER_ERRORS, env.client.set_turn_headers, "kept-turn", bad)

    async def call() -> None:
        with bind_turn("kept-turn"):
            await env.client.call_tool("echo", {"text": "kept-check"})

    env.portal.call(call)
    [record] = [r for r in env.server.requests("tools/call") if r.arguments.get("text") == "kept-check"]
    assert record.header("x-kept") == "kept-value"
    assert record.meta["extra_headers"] == {"x-kept": "kept-value"}
    assert record.header("host") != "evil"


# -- turn metadata ----------------------------------------------------------------------------


@FUZZ
@given(metadata=bad_metadata())
def test_bad_turn_metadata_fails_the_turn_before_its_body(env: Env, metadata: Any) -> None:
    ran: list[str] = []

    async def run() -> None:
        async with env.session.turn(metadata=metadata) as turn:
            ran.append("body")
            await turn.call_tool("srv", "echo", {"text": "never sent"})

    env.rejects(METADATA_ERRORS, run)
    assert ran == []

    async def body(turn: Turn) -> None:
        ran.append("task body")

    async def start() -> None:
        handle = await env.session.start_turn(body, metadata=metadata)
        outcome = await handle.wait()
        assert outcome.state is TurnState.FAILED
        raise outcome.error if outcome.error is not None else AssertionError("no error")

    env.rejects(METADATA_ERRORS, start)
    assert ran == []


@FUZZ
@given(metadata=bad_metadata().filter(lambda m: isinstance(m, dict)), replace=st.booleans())
def test_metadata_made_bad_mid_turn_is_refused_at_the_next_call(
    env: Env, metadata: Any, replace: bool
) -> None:
    async def run() -> None:
        async with env.session.turn(metadata={"model": "m"}) as turn:
            if replace:
                turn.metadata = list(metadata.items())  # type: ignore[assignment]  # no longer a dict
            else:
                turn.metadata.update(metadata)
            await turn.call_tool("srv", "echo", {"text": "never sent"})

    env.rejects((InvalidMetadataError,), run)


# -- forwarded headers --------------------------------------------------------------------------


@FUZZ
@given(forwarded=bad_forwarded())
def test_bad_forwarded_headers_fail_the_turn_before_its_body(env: Env, forwarded: Any) -> None:
    ran: list[str] = []

    async def run() -> None:
        async with env.session.turn(forwarded_headers=forwarded) as turn:
            ran.append("body")
            await turn.call_tool("srv", "echo", {"text": "never sent"})

    error = env.rejects(HEADER_ERRORS, run)
    assert MARK not in str(error)

    async def body(turn: Turn) -> None:
        ran.append("task body")

    async def start() -> None:
        handle = await env.session.start_turn(body, forwarded_headers=forwarded)
        outcome = await handle.wait()
        assert outcome.state is TurnState.FAILED
        raise outcome.error if outcome.error is not None else AssertionError("no error")

    env.rejects(HEADER_ERRORS, start)
    assert ran == []


@FUZZ
@given(entries=st.lists(st.one_of(junk, bad_names, st.just("x-*-y"), st.just("*")), min_size=1, max_size=3))
def test_bad_policy_entries_are_refused(entries: list[Any]) -> None:
    for side in ("mcp_allow", "provider_allow", "deny"):
        try:
            HeaderPolicy(**{side: entries})
        except (InvalidHeaderError, TypeError):
            continue
        # Accepted: then every entry was a valid name or prefix.
        assert all(isinstance(e, str) for e in entries)


# -- server configurations ----------------------------------------------------------------------


@FUZZ
@given(kwargs=config_kwargs)
def test_server_config_raises_only_config_error(kwargs: dict[str, Any]) -> None:
    try:
        config = ServerConfig(**kwargs)
    except ConfigError as exc:
        for value in ("kept-value", MARK):
            assert value not in str(exc)
        return
    assert isinstance(config.name, str)
    assert (config.url is None) != (config.command is None)


json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
config_keys = st.sampled_from(
    "command args env cwd url headers http_headers apps forward required protocol header_delivery "
    "startup_timeout_sec startup_timeout_ms tool_timeout_sec enabled_tools disabled_tools "
    "bearer_token_env_var env_http_headers type disabled enabled".split()
)


@FUZZ
@given(
    document=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "mcpServers": st.dictionaries(
                    st.text(max_size=10),
                    st.one_of(json_values, st.dictionaries(config_keys, json_values)),
                    max_size=3,
                )
            }
        ),
    ),
    toml=st.text(max_size=200),
)
def test_config_files_raise_only_config_error(document: Any, toml: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as folder:
        for file, text in (("servers.json", json.dumps(document)), ("config.toml", toml)):
            path = Path(folder) / file
            path.write_text(text, encoding="utf-8")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    configs = load_config(path, environ={})
                except ConfigError:
                    continue
            assert all(isinstance(c, ServerConfig) for c in configs)


@FUZZ
@given(config=st.one_of(junk, st.just("srv")))
def test_add_server_refuses_what_is_not_a_new_server(env: Env, config: Any) -> None:
    if config == "srv":
        config = ServerConfig(name="srv", url=env.server.url)  # the name is taken
    env.rejects((TypeError, ValueError), env.session.add_server, config)


def test_add_server_that_cannot_connect_changes_nothing(env: Env) -> None:
    with socket.socket() as probe:  # a port nothing listens on any more
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ServerConfig(name="down", url=f"http://127.0.0.1:{port}/mcp", startup_timeout=0.5)
    env.rejects((ServerUnavailableError,), env.session.add_server, config)
    # The name is free again.
    env.rejects((ServerUnavailableError,), env.session.add_server, config)


# -- the other arguments of calls and sessions -----------------------------------------------------


@FUZZ
@given(
    name=st.one_of(st.just(""), not_str),
    arguments=st.one_of(
        st.just({"text": "ok"}), st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=2)
    ),
    timeout=st.one_of(
        st.none(), st.sampled_from([0, -1, float("nan"), float("-inf"), True, "5"]), st.floats(max_value=0)
    ),
    meta=st.one_of(
        st.none(), st.dictionaries(st.one_of(st.integers(), st.none()), st.integers(), min_size=1, max_size=2)
    ),
)
def test_bad_call_arguments_are_refused(env: Env, name: Any, arguments: Any, timeout: Any, meta: Any) -> None:
    async def call() -> None:
        await env.client.call_tool(name, arguments, timeout=timeout, meta=meta)

    env.rejects((TypeError, ValueError), call)

    async def good_name_bad_rest() -> None:
        await env.client.call_tool("echo", arguments, timeout=timeout, meta=meta)

    if arguments != {"text": "ok"} or timeout is not None or meta is not None:
        env.rejects((TypeError, ValueError), good_name_bad_rest)


@pytest.mark.parametrize("where", ["arguments", "meta"])
def test_arguments_that_are_not_json_are_a_type_error(env: Env, where: str) -> None:
    async def call() -> None:
        if where == "arguments":
            await env.client.call_tool("echo", {"text": object()})
        else:
            await env.client.call_tool("echo", {"text": "x"}, meta={"k": object()})

    env.rejects((TypeError,), call)


@FUZZ
@given(
    kwargs=st.fixed_dictionaries(
        {},
        optional={
            "servers": st.lists(junk, min_size=1, max_size=2),
            "clients": st.lists(junk, min_size=1, max_size=2),
            "session_id": st.one_of(st.just(""), not_str.filter(lambda v: v is not None)),
            "on_busy": st.one_of(junk.filter(lambda v: v not in ("replace", "reject"))),
            "end_hook_timeout": st.one_of(st.sampled_from([-1, float("nan"), float("inf"), True, "1"])),
            "abort_grace": st.one_of(st.sampled_from([-0.5, float("nan"), float("inf"), "0"])),
            "turn_timeout": st.one_of(st.sampled_from([0, -1, float("nan"), "1"])),
            "hooks": st.lists(junk, min_size=1, max_size=2),
        },
    ).filter(bool)
)
def test_bad_session_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        Session(**kwargs)


@FUZZ
@given(turn_id=st.one_of(st.just(""), not_str))
def test_bad_turn_ids_are_refused(env: Env, turn_id: Any) -> None:
    def bind() -> None:
        with bind_turn(turn_id):
            pass

    env.rejects((TypeError,), bind)
    env.rejects((TypeError,), env.client.set_turn_headers, turn_id, {"x-a": "b"})


def test_every_refusal_is_a_codex_runtime_error_or_a_documented_builtin() -> None:
    # The typed errors of this file, as a user catches them.
    for error in (InvalidHeaderError, InvalidMetadataError, ConfigError, ServerUnavailableError):
        assert issubclass(error, CodexRuntimeError)
    assert issubclass(InvalidHeaderError, ValueError)
    assert issubclass(ConfigError, ValueError)

"""Tests of `codex_runtime.headers`: validation, `Headers`, redaction, layering and forwarding policy."""

from __future__ import annotations

import copy
import functools
import pickle
import string
from collections.abc import Callable, Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codex_runtime.headers import (
    DEFAULT_LIMITS,
    LIST_HEADERS,
    MAX_TOTAL_BYTES,
    MAX_VALUE_BYTES,
    PROTECTED,
    REDACTED,
    CodexRuntimeError,
    HeaderLimits,
    HeaderPolicy,
    Headers,
    InvalidHeaderError,
    check_settable,
    is_secret,
    is_valid_name,
    is_valid_value,
    merge_layers,
    normalize_incoming,
    redact,
    validate_name,
    validate_value,
)

FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- reference grammar
# Written independently of the module: explicit sets and code-point comparisons instead of
# regular expressions.

TCHARS = frozenset("!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters)


def ref_is_token(text: object) -> bool:
    if not isinstance(text, str) or len(text) == 0:
        return False
    for char in text:
        if char not in TCHARS:
            return False
    return True


def ref_is_field_vchar(char: str) -> bool:
    # RFC 9110 field-vchar without obs-text: HTTP clients send header values as ASCII.
    code = ord(char)
    return 0x21 <= code <= 0x7E


def ref_is_field_value(text: object) -> bool:
    if not isinstance(text, str):
        return False
    if text == "":
        return True
    if not ref_is_field_vchar(text[0]) or not ref_is_field_vchar(text[-1]):
        return False
    for char in text:
        if not (ref_is_field_vchar(char) or char == " " or char == "\t"):
            return False
    return True


def ref_merge(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name.lower(), []).append(value)
    return {
        name: ", ".join(v for v in vs if v) if name in LIST_HEADERS else vs[0] for name, vs in values.items()
    }


# --------------------------------------------------------------------------- strategies

INTERESTING = (
    sorted(TCHARS)
    + list(" \t\r\n\x00\x01\x0b\x1f\x7f\x80\x9f\xa0\xe9\xff\u0100\u212a\u2028\U0001f600")
    + list('"(),/:;<=>?@[\\]{}')
)
any_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(max_codepoint=0x17F)),
    st.text(alphabet=st.sampled_from(INTERESTING)),
)
token = st.text(alphabet=sorted(TCHARS), min_size=1, max_size=20)
field_vchar = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
inner = st.one_of(st.sampled_from([" ", "\t"]), field_vchar)
field_content = st.one_of(
    field_vchar,
    st.builds(
        lambda first, mid, last: first + "".join(mid) + last,
        field_vchar,
        st.lists(inner, min_size=1),
        field_vchar,
    ),
)
field_value = st.lists(field_content, max_size=4).map("".join)
small_value = st.text(alphabet="abc=1, ", max_size=6).map(str.strip)

NAMES = ["tracestate", "baggage", "TraceState", "x-a", "X-A", "authorization", "traceparent", "x-b"]
pairs_strategy = st.lists(st.tuples(st.sampled_from(NAMES), small_value), max_size=6)


def random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


# --------------------------------------------------------------------------- constants & errors


def test_constants() -> None:
    assert PROTECTED == {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "traceparent",
        "tracestate",
    }
    assert isinstance(PROTECTED, frozenset)
    assert LIST_HEADERS == frozenset({"tracestate", "baggage"})
    assert REDACTED == "[REDACTED]"
    assert (MAX_VALUE_BYTES, MAX_TOTAL_BYTES) == (8192, 65536)
    assert DEFAULT_LIMITS == HeaderLimits() == HeaderLimits(8192, 65536)


def test_error_hierarchy_and_pickle() -> None:
    assert issubclass(InvalidHeaderError, CodexRuntimeError)
    assert issubclass(InvalidHeaderError, ValueError)
    with pytest.raises(InvalidHeaderError) as info:
        Headers({"X-A": "bad\nvalue"})
    err = info.value
    assert (err.name, err.rule) == ("x-a", "value-control-char")
    clone = pickle.loads(pickle.dumps(err))
    assert (type(clone), clone.name, clone.rule, str(clone)) == (
        InvalidHeaderError,
        "x-a",
        err.rule,
        str(err),
    )


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "8"])
def test_limits_reject_non_positive_ints(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        HeaderLimits(max_value_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        HeaderLimits(max_total_bytes=bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- name & value validation


def test_validate_name_lowercases() -> None:
    assert validate_name("X-Request-ID") == "x-request-id"
    assert validate_name("!#$%&'*+-.^_`|~09azAZ") == "!#$%&'*+-.^_`|~09azaz"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "name-not-token"),
        ("a b", "name-not-token"),
        ("a:b", "name-not-token"),
        ("x-a\r\n", "name-not-token"),
        ("caf\xe9", "name-not-token"),
        ("\u212a", "name-not-token"),  # Kelvin sign lower-cases to ASCII "k"
        (b"x-a", "name-not-str"),
        (None, "name-not-str"),
    ],
)
def test_validate_name_rejects(name: object, rule: str) -> None:
    with pytest.raises(InvalidHeaderError) as info:
        validate_name(name)
    assert info.value.rule == rule
    assert is_valid_name(name) is False
    if rule == "name-not-token":
        assert isinstance(name, str)
        assert info.value.name == name.lower()
    else:
        assert info.value.name is None


def test_invalid_name_shown_bounded_and_escaped() -> None:
    with pytest.raises(InvalidHeaderError) as info:
        validate_name("x" * 500 + "\n")
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 300


@pytest.mark.parametrize("value", ["", "a", "a b", "a\tb", "!~", "a  \t b"])
def test_validate_value_accepts(value: str) -> None:
    assert validate_value("X-A", value) == value
    assert is_valid_value(value)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("a\rb", "value-control-char"),
        ("a\nb", "value-control-char"),
        ("a\x00b", "value-control-char"),
        ("a\x7fb", "value-control-char"),
        ("\r\n", "value-control-char"),
        ("\u20ac", "value-not-latin1"),
        ("a\U0001f600", "value-not-latin1"),
        ("Jos\xe9", "value-not-ascii"),
        ("\x80", "value-not-ascii"),
        ("\xff", "value-not-ascii"),
        (" a", "value-whitespace"),
        ("a ", "value-whitespace"),
        ("\ta", "value-whitespace"),
        ("a\t", "value-whitespace"),
        (" ", "value-whitespace"),
        (1, "value-not-str"),
        (b"a", "value-not-str"),
        (None, "value-not-str"),
    ],
)
def test_validate_value_rejects(value: object, rule: str) -> None:
    with pytest.raises(InvalidHeaderError) as info:
        validate_value("X-A", value)
    assert (info.value.name, info.value.rule) == ("x-a", rule)
    assert "'x-a'" in str(info.value)
    assert is_valid_value(value) is False


def test_validate_value_size_limit() -> None:
    limits = HeaderLimits(max_value_bytes=4)
    assert validate_value("x", "abcd", limits) == "abcd"
    with pytest.raises(InvalidHeaderError) as info:
        validate_value("x", "abcde", limits)
    assert info.value.rule == "value-too-large"
    assert validate_value("x", "a" * MAX_VALUE_BYTES) == "a" * MAX_VALUE_BYTES
    with pytest.raises(InvalidHeaderError, match="8192"):
        validate_value("x", "a" * (MAX_VALUE_BYTES + 1))


@FAST
@given(any_text)
def test_name_validation_matches_reference(text: str) -> None:
    assert is_valid_name(text) == ref_is_token(text)
    if ref_is_token(text):
        assert validate_name(text) == text.lower()
    else:
        with pytest.raises(InvalidHeaderError):
            validate_name(text)


@FAST
@given(any_text)
def test_value_validation_matches_reference(text: str) -> None:
    assert is_valid_value(text) == ref_is_field_value(text)
    try:
        Headers({"x-a": text})
    except InvalidHeaderError as err:
        assert not ref_is_field_value(text)
        assert err.rule in {"value-control-char", "value-whitespace", "value-not-ascii", "value-not-latin1"}
    else:
        assert ref_is_field_value(text)


@FAST
@given(token, field_value)
def test_grammar_generated_headers_are_accepted(name: str, value: str) -> None:
    assert ref_is_token(name) and ref_is_field_value(value)
    assert is_valid_name(name) and is_valid_value(value)
    assert validate_name(name) == name.lower()
    assert validate_value(name, value) == value
    assert Headers([(name, value)]).get_all(name) == [value]


# --------------------------------------------------------------------------- Headers


def test_construction_forms_are_equivalent() -> None:
    pairs = [("X-A", "1"), ("x-b", "2")]
    expected = Headers(pairs)
    assert Headers(dict(pairs)) == expected
    assert Headers(tuple(pairs)) == expected
    assert Headers([list(p) for p in pairs]) == expected  # type: ignore[misc]
    assert Headers(iter(pairs)) == expected
    assert Headers(expected) == expected
    assert Headers.from_pairs(pairs) == expected
    assert expected.items() == [("x-a", "1"), ("x-b", "2")]
    assert Headers() == Headers(None) == Headers({}) == Headers([])
    assert not Headers() and len(Headers()) == 0


@pytest.mark.parametrize("bad", ["x-a: 1", b"x-a", 42])
def test_construction_rejects_unsupported_types(bad: object) -> None:
    with pytest.raises(TypeError):
        Headers(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("item", [("x-a",), ("x-a", "1", "2"), "ab", 7])
def test_construction_rejects_non_pairs(item: object) -> None:
    with pytest.raises(InvalidHeaderError) as info:
        Headers([item])  # type: ignore[list-item]
    assert info.value.rule == "item-not-pair"


def test_access_is_case_insensitive_and_ordered() -> None:
    h = Headers([("X-A", "1"), ("x-b", "2"), ("x-A", "3")])
    assert h.get("x-a") == h.get("X-A") == "1"
    assert h.get_all("X-a") == ["1", "3"]
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert h.get_all("missing") == []
    assert h.items() == [("x-a", "1"), ("x-b", "2"), ("x-a", "3")]
    assert h.keys() == ["x-a", "x-b"] == list(h)
    assert len(h) == 2 and bool(h)
    assert "X-B" in h and "x-c" not in h and 3 not in h
    assert h.to_dict() == {"x-a": "1", "x-b": "2"}


def test_merge_rule() -> None:
    h = Headers(
        [
            ("tracestate", "a=1"),
            ("Authorization", "Bearer one"),
            ("traceparent", "00-aa-01"),
            ("TraceState", "b=2"),
            ("authorization", "Bearer two"),
            ("traceparent", "00-bb-01"),
            ("baggage", "k=v"),
            ("baggage", ""),
            ("baggage", "k2=v2"),
        ]
    )
    assert h.get("tracestate") == "a=1, b=2"
    assert h.get("baggage") == "k=v, k2=v2"
    assert h.get("authorization") == "Bearer one"
    assert h.get("traceparent") == "00-aa-01"
    assert h.to_dict() == {
        "tracestate": "a=1, b=2",
        "authorization": "Bearer one",
        "traceparent": "00-aa-01",
        "baggage": "k=v, k2=v2",
    }
    assert Headers([("baggage", ""), ("baggage", "")]).get("baggage") == ""
    assert Headers([("baggage", ""), ("baggage", "x")]).get("baggage") == "x"


def test_or_left_operand_takes_precedence() -> None:
    a = Headers({"x-a": "left", "tracestate": "l=1"})
    b = Headers({"X-A": "right", "x-b": "b", "tracestate": "r=1"})
    merged = a | b
    assert merged.get("x-a") == "left"
    assert merged.get("x-b") == "b"
    assert merged.get("tracestate") == "l=1, r=1"
    assert merged.items() == a.items() + b.items()
    assert a | {"x-a": "right"} == a | Headers({"x-a": "right"})
    assert a | [("x-a", "right")] == a | Headers({"x-a": "right"})
    assert ({"x-a": "first"} | a).get("x-a") == "first"
    assert a | {} is a
    with pytest.raises(InvalidHeaderError):
        a | {"x-c": "bad\n"}


def test_without_and_only() -> None:
    h = Headers([("X-A", "1"), ("x-b", "2"), ("x-a", "3")])
    assert h.without("X-A").items() == [("x-b", "2")]
    assert h.without("x-missing") == h
    assert h.without("x-a", "x-b") == Headers()
    assert h.only(lambda name: name.startswith("x-a")).items() == [("x-a", "1"), ("x-a", "3")]
    assert h.only(lambda name: name == "X-A") == Headers()  # predicate sees lower-cased names
    assert h.only(lambda name: True) == h


def test_equality_and_hash() -> None:
    a = Headers([("X-A", "1"), ("x-b", "2")])
    assert a == Headers({"x-a": "1", "X-B": "2"})
    assert hash(a) == hash(Headers({"x-a": "1", "X-B": "2"}))
    assert a != Headers([("x-b", "2"), ("x-a", "1")])  # order matters
    assert a != {"x-a": "1", "x-b": "2"}
    assert a != [("x-a", "1"), ("x-b", "2")]
    assert len({a, Headers(a), Headers({"x-a": "1"})}) == 2


def test_immutable_copy_and_pickle() -> None:
    h = Headers({"x-a": "1"}, limits=HeaderLimits(max_value_bytes=10))
    with pytest.raises(AttributeError):
        h.extra = 1  # type: ignore[attr-defined]
    assert copy.copy(h) is h and copy.deepcopy(h) is h
    clone = pickle.loads(pickle.dumps(h))
    assert clone == h and clone.limits == h.limits


def test_repr_and_str_redact_secrets() -> None:
    h = Headers({"Authorization": "Bearer sk-1", "X-A": "1"})
    assert repr(h) == "Headers({'authorization': '[REDACTED]', 'x-a': '1'})"
    assert str(h) == repr(h)
    assert h.redacted() == {"authorization": REDACTED, "x-a": "1"}
    assert h.to_dict()["authorization"] == "Bearer sk-1"
    dup = Headers([("cookie", "c1"), ("x-a", "1"), ("cookie", "c2")])
    assert repr(dup) == "Headers([('cookie', '[REDACTED]'), ('x-a', '1'), ('cookie', '[REDACTED]')])"


def test_size_limits() -> None:
    limits = HeaderLimits(max_value_bytes=5, max_total_bytes=10)
    assert Headers({"ab": "cde"}, limits=limits)  # 2 + 3 bytes
    with pytest.raises(InvalidHeaderError) as info:
        Headers({"ab": "cdefgh"}, limits=limits)
    assert (info.value.rule, info.value.name) == ("value-too-large", "ab")
    with pytest.raises(InvalidHeaderError) as info:
        Headers([("ab", "cde"), ("fg", "hijk")], limits=limits)  # 11 bytes
    assert (info.value.rule, info.value.name) == ("set-too-large", None)
    exact = Headers([("ab", "cd"), ("ef", "gh"), ("i", "j")], limits=limits)  # exactly 10
    with pytest.raises(InvalidHeaderError, match="in total"):
        exact | {"k": ""}
    big = Headers({"x": "a" * 8})
    with pytest.raises(InvalidHeaderError) as info:
        Headers(big, limits=limits)
    assert info.value.rule == "value-too-large"
    with pytest.raises(InvalidHeaderError) as info:
        Headers({"a": "b"}, limits=limits) | big
    assert info.value.rule == "value-too-large"
    assert Headers(big).limits == DEFAULT_LIMITS


def test_obs_text_is_refused_without_showing_the_value() -> None:
    # httpx2 sends header values as ASCII only: what validation accepts must be sendable.
    with pytest.raises(InvalidHeaderError) as info:
        Headers({"x-user": "Jos\xe9-secret"})
    assert (info.value.name, info.value.rule) == ("x-user", "value-not-ascii")
    assert "Jos" not in str(info.value) and "secret" not in repr(info.value)


@FAST
@given(pairs_strategy, pairs_strategy, pairs_strategy)
def test_or_is_associative_and_follows_merge_rule(
    p1: list[tuple[str, str]], p2: list[tuple[str, str]], p3: list[tuple[str, str]]
) -> None:
    a, b, c = Headers(p1), Headers(p2), Headers(p3)
    left, right = (a | b) | c, a | (b | c)
    assert left == right
    assert hash(left) == hash(right)
    everything = p1 + p2 + p3
    assert left.items() == [(n.lower(), v) for n, v in everything]
    assert left.to_dict() == ref_merge(everything)
    assert merge_layers(a, b, c) == left.to_dict()
    assert (a | p2 | p3) == left
    for name in {n.lower() for n, _ in everything}:
        values = [v for n, v in everything if n.lower() == name]
        assert left.get_all(name) == values
        if name in LIST_HEADERS:
            assert left.get(name) == ", ".join(v for v in values if v)
        else:
            assert left.get(name) == values[0]


def test_merge_layers() -> None:
    call = Headers({"x-a": "call", "tracestate": "c=1"})
    turn = Headers({"x-a": "turn", "x-b": "turn"})
    session = Headers({"x-b": "session", "x-c": "session", "tracestate": "s=1"})
    assert merge_layers(call, turn, session) == {
        "x-a": "call",
        "tracestate": "c=1, s=1",
        "x-b": "turn",
        "x-c": "session",
    }
    assert merge_layers() == {}
    assert merge_layers(turn) == turn.to_dict()
    small = Headers({"a": "b"}, limits=HeaderLimits(max_total_bytes=4))
    with pytest.raises(InvalidHeaderError) as info:
        merge_layers(small, Headers({"c": "d"}), Headers({"e": "f"}))
    assert info.value.rule == "set-too-large"


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Proxy-Authorization",
        "COOKIE",
        "set-cookie",
        "x-api-key",
        "X-Auth-Token",
        "x-client-secret",
        "x-db-password",
        "x-aws-credentials",
        "x-smg-oci-delegation-token",
        # The usual credential patterns: x-auth*, *-auth, *cookie*, *passw*, signatures, JWTs.
        "x-custom-auth",
        "x-auth-user",
        "cookies-x",
        "x-db-passwd",
        "x-amz-signature",
        "x-jwt-assertion",
        "dpop",
    ],
)
def test_is_secret(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize(
    "name",
    ["x-a", "accept", "traceparent", "x-request-id", "content-type", "session_id", "x-codex-turn-metadata"],
)
def test_is_not_secret(name: str) -> None:
    assert not is_secret(name)


def test_redact_hides_names_secret_by_provenance() -> None:
    headers = [("X-Tenant", "t-from-env"), ("x-b", "1"), ("x-api-key", "k")]
    assert redact(headers, secret_names=["x-tenant"]) == {
        "x-tenant": REDACTED,
        "x-b": "1",
        "x-api-key": REDACTED,
    }
    assert redact(headers, secret_names="X-TENANT")["x-tenant"] == REDACTED


def test_redact_accepts_any_form_without_validating() -> None:
    raw = [("Authorization", "Bearer bad\r\n"), ("X-A", " spaced "), ("tracestate", "a"), ("TRACESTATE", "b")]
    assert redact(raw) == {"authorization": REDACTED, "x-a": " spaced ", "tracestate": "a, b"}
    assert redact({"Cookie": 12}) == {"cookie": REDACTED}  # type: ignore[arg-type]
    assert redact(Headers({"x-api-key": "k", "x-b": "1"})) == {"x-api-key": REDACTED, "x-b": "1"}
    assert redact([("x-a", "1"), ("x-a", "2")]) == {"x-a": "1"}


MARK = "Zq7MARKvQ3"
SECRET_NAMES = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-client-secret",
    "x-db-password",
    "x-credential",
    "x-smg-oci-delegation-token",
    "authorization ",
    "x-api key",
]


@st.composite
def secret_inputs(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]]]:
    name = random_case(draw, draw(st.sampled_from(SECRET_NAMES)))
    value = draw(st.builds(lambda a, b: a + MARK + b, any_text, any_text))
    others = draw(st.lists(st.tuples(st.sampled_from(NAMES), small_value), max_size=3))
    position = draw(st.integers(0, len(others)))
    pairs = [*others[:position], (name, value), *others[position:]]
    if draw(st.booleans()):
        pairs.append((name, draw(st.sampled_from([value, "other", value + "\n"]))))
    return name, value, pairs


def assert_hidden(text: str) -> None:
    assert MARK not in text


def assert_error_hidden(err: InvalidHeaderError) -> None:
    for text in (str(err), repr(err), *map(str, err.args), *map(repr, err.args), str(err.name), err.rule):
        assert_hidden(text)


def run_hidden(action: Callable[[], object]) -> object:
    try:
        return action()
    except InvalidHeaderError as err:
        assert_error_hidden(err)
        return None


@FAST
@given(secret_inputs())
def test_secret_values_never_shown(data: tuple[str, str, list[tuple[str, str]]]) -> None:
    name, value, pairs = data
    built = run_hidden(lambda: Headers(pairs))
    if isinstance(built, Headers):
        assert_hidden(repr(built))
        assert_hidden(str(built))
        assert_hidden(repr(built.redacted()))
        assert_hidden(repr(built | {"x-z": "1"}))
        assert any(MARK in v for v in built.get_all(name))  # the value itself is kept
    assert_hidden(repr(redact(pairs)))
    run_hidden(lambda: validate_value(name, value))
    run_hidden(lambda: validate_value(name, value, HeaderLimits(max_value_bytes=1)))
    run_hidden(lambda: Headers(pairs, limits=HeaderLimits(max_total_bytes=8)))
    run_hidden(lambda: normalize_incoming(pairs))
    run_hidden(lambda: check_settable(pairs, layer="turn"))
    policy = HeaderPolicy(provider_allow=(name.strip().replace(" ", "-"), "x-*"), mcp_allow=("cookie",))
    for action in (policy.for_provider, policy.for_mcp, policy.check, HeaderPolicy.smg().for_provider):
        result = run_hidden(functools.partial(action, pairs))
        if result is not None:
            assert_hidden(repr(result))


# --------------------------------------------------------------------------- check_settable


@pytest.mark.parametrize("name", sorted(PROTECTED))
def test_check_settable_rejects_protected(name: str) -> None:
    with pytest.raises(InvalidHeaderError) as info:
        check_settable({"x-a": "1", name.upper(): "secret-value"}, layer="call")
    assert (info.value.rule, info.value.name) == ("protected", name)
    message = str(info.value)
    assert repr(name) in message and "call" in message and "transport/trace" in message
    assert "secret-value" not in message


def test_check_settable_names_first_protected_and_passes_others() -> None:
    with pytest.raises(InvalidHeaderError) as info:
        check_settable([("x-a", "1"), ("Host", "h"), ("traceparent", "t")], layer="turn")
    assert info.value.name == "host" and "turn" in str(info.value)
    check_settable({"x-a": "1", "authorization": "Bearer x"}, layer="turn")
    check_settable(Headers({"x-tracestate": "1"}), layer="call")
    check_settable([], layer="call")


# --------------------------------------------------------------------------- HeaderPolicy


def test_policy_defaults_and_normalisation() -> None:
    policy = HeaderPolicy()
    assert policy.mcp_allow == ()
    assert policy.provider_allow == ("x-request-id", "x-correlation-id", "x-request-id-*")
    assert policy.deny == ()
    custom = HeaderPolicy(mcp_allow=["X-Tenant"], provider_allow=("X-Req-*",), deny=("X-BAD",))
    assert (custom.mcp_allow, custom.provider_allow, custom.deny) == (("x-tenant",), ("x-req-*",), ("x-bad",))
    assert (
        repr(custom) == "HeaderPolicy(mcp_allow=('x-tenant',), provider_allow=('x-req-*',), deny=('x-bad',))"
    )
    assert custom == HeaderPolicy(mcp_allow=("x-tenant",), provider_allow=("x-req-*",), deny=("x-bad",))
    assert hash(custom) == hash(
        HeaderPolicy(mcp_allow=("x-tenant",), provider_allow=("x-req-*",), deny=("x-bad",))
    )


@pytest.mark.parametrize("entry", ["", "*", "a b", "x*y", "x-**", "x:y", "caf\xe9", 3])
def test_policy_rejects_bad_entries(entry: object) -> None:
    with pytest.raises(InvalidHeaderError) as info:
        HeaderPolicy(deny=(entry,))  # type: ignore[arg-type]
    assert info.value.rule == "pattern-invalid"
    assert isinstance(info.value, ValueError)


def test_policy_rejects_bare_string() -> None:
    with pytest.raises(TypeError):
        HeaderPolicy(mcp_allow="x-a")


def test_smg_preset() -> None:
    policy = HeaderPolicy.smg()
    assert set(policy.provider_allow) == {
        "authorization",
        "x-request-id",
        "x-correlation-id",
        "traceparent",
        "tracestate",
        "x-smg-routing-key",
        "x-request-id-*",
    }
    assert set(policy.mcp_allow) == {"x-smg-oci-delegation-token", "x-smg-oci-compartment-id"}
    incoming = [
        ("Authorization", "Bearer t"),
        ("X-SMG-OCI-Delegation-Token", "dt"),
        ("x-smg-oci-compartment-id", "ocid1"),
        ("X-Request-Id-Extra", "r"),
        ("tracestate", "a=1"),
        ("tracestate", "b=2"),
        ("x-unrelated", "u"),
        ("x-bad-but-ignored", "\x00\xff"),
        ("bad name", "ignored"),
    ]
    assert policy.for_provider(incoming).to_dict() == {
        "authorization": "Bearer t",
        "x-request-id-extra": "r",
        "tracestate": "a=1, b=2",
    }
    assert policy.for_mcp(incoming).to_dict() == {
        "x-smg-oci-delegation-token": "dt",
        "x-smg-oci-compartment-id": "ocid1",
    }
    policy.check(incoming)


def test_policy_deny_wins_and_mcp_side_excluded_from_provider() -> None:
    policy = HeaderPolicy(mcp_allow=("x-a*",), provider_allow=("x-*",), deny=("x-ab",))
    incoming = {"X-A": "1", "x-ab": "2", "x-abc": "3", "x-b": "4", "y": "5"}
    assert policy.for_mcp(incoming).to_dict() == {"x-a": "1", "x-abc": "3"}
    assert policy.for_provider(incoming).to_dict() == {"x-b": "4"}
    assert not policy.allows_mcp("X-AB") and not policy.allows_provider("x-ab")
    assert policy.allows_mcp("X-ABC") and not policy.allows_provider("x-abc")


def test_policy_prefix_match_is_case_insensitive() -> None:
    policy = HeaderPolicy(provider_allow=("X-Request-ID-*",))
    assert policy.allows_provider("x-request-id-foo")
    assert policy.allows_provider("X-REQUEST-ID-FOO")
    assert policy.allows_provider("x-request-id-")
    assert not policy.allows_provider("x-request-id")
    assert not policy.allows_provider("x-request-idfoo")
    assert policy.for_provider({"X-Request-Id-Foo": "1"}).items() == [("x-request-id-foo", "1")]


def test_policy_duplicates() -> None:
    policy = HeaderPolicy.smg()
    same = [("authorization", "Bearer a"), ("Authorization", "Bearer a")]
    assert policy.for_provider(same).items() == [("authorization", "Bearer a")]
    for name in ("authorization", "traceparent", "x-request-id"):
        with pytest.raises(InvalidHeaderError) as info:
            policy.for_provider([(name, "v1"), (name.upper(), "v2")])
        assert (info.value.rule, info.value.name) == ("duplicate-differs", name)
        assert "v1" not in str(info.value) and "v2" not in str(info.value)
        with pytest.raises(InvalidHeaderError):
            policy.check([(name, "v1"), (name, "v2")])
    joined = policy.for_provider([("tracestate", "a=1"), ("TraceState", "b=2"), ("tracestate", "a=1")])
    assert joined.items() == [("tracestate", "a=1, b=2, a=1")]
    # Differing repeats of a name no side allows are ignored.
    policy.check([("x-other", "1"), ("x-other", "2")])


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("caf\xe9", "value-not-visible-ascii"),
        ("\x80", "value-not-visible-ascii"),
        ("a\nb", "value-not-visible-ascii"),
        ("a\x00", "value-not-visible-ascii"),
        ("\u20ac", "value-not-visible-ascii"),
        (" a", "value-whitespace"),
        ("a\t", "value-whitespace"),
        (5, "value-not-str"),
    ],
)
def test_policy_rejects_bad_allowed_values(value: object, rule: str) -> None:
    policy = HeaderPolicy.smg()
    for action in (policy.for_provider, policy.check):
        with pytest.raises(InvalidHeaderError) as info:
            action([("x-request-id", value)])  # type: ignore[list-item]
        assert (info.value.rule, info.value.name) == (rule, "x-request-id")
    # The MCP side does not forward x-request-id, so it does not check it.
    assert policy.for_mcp([("x-request-id", value)]) == Headers()  # type: ignore[list-item]
    assert normalize_incoming([("x-request-id", value)], lambda name: False) == Headers()  # type: ignore[list-item]


def test_policy_accepts_inner_whitespace_and_empty() -> None:
    policy = HeaderPolicy(provider_allow=("x-a", "x-b"))
    assert policy.for_provider({"x-a": "a \t b", "x-b": ""}).items() == [("x-a", "a \t b"), ("x-b", "")]


def test_policy_allowed_invalid_name_raises() -> None:
    policy = HeaderPolicy(provider_allow=("x-request-id-*",))
    with pytest.raises(InvalidHeaderError) as info:
        policy.for_provider([("x-request-id-a b", "1")])
    assert info.value.rule == "name-not-token"
    assert policy.for_provider([(1, "1"), ("a b", "1")]) == Headers()  # type: ignore[list-item]


def test_normalize_incoming() -> None:
    incoming = [("X-A", "1"), ("x-a", "1"), ("baggage", "k=v"), ("Baggage", "")]
    assert normalize_incoming(incoming).items() == [("x-a", "1"), ("baggage", "k=v")]
    with pytest.raises(InvalidHeaderError) as info:
        normalize_incoming([("bad name", "1")])
    assert info.value.rule == "name-not-token"
    with pytest.raises(InvalidHeaderError) as info:
        normalize_incoming([(1, "1")])  # type: ignore[list-item]
    assert info.value.rule == "name-not-str"
    assert normalize_incoming([(1, "1")], lambda name: True) == Headers()  # type: ignore[list-item]
    with pytest.raises(InvalidHeaderError) as info:
        normalize_incoming({"x-a": "abcdef"}, limits=HeaderLimits(max_value_bytes=3))
    assert info.value.rule == "value-too-large"
    with pytest.raises(InvalidHeaderError) as info:
        normalize_incoming({"x-a": "a", "x-b": "b"}, limits=HeaderLimits(max_total_bytes=5))
    assert info.value.rule == "set-too-large"


POLICY_NAMES = ["x-a", "x-ab", "x-abc", "x-b", "authorization", "tracestate", "baggage", "y"]
POLICY_PATTERNS = [*POLICY_NAMES, "x-*", "x-a*", "x-ab*", "trace*", "a*"]


def ref_matches(patterns: tuple[str, ...], name: str) -> bool:
    for pattern in patterns:
        if pattern.endswith("*"):
            if name[: len(pattern) - 1] == pattern[:-1]:
                return True
        elif name == pattern:
            return True
    return False


@st.composite
def policies(draw: st.DrawFn) -> HeaderPolicy:
    def entries() -> tuple[str, ...]:
        chosen = draw(st.lists(st.sampled_from(POLICY_PATTERNS), max_size=4))
        return tuple(random_case(draw, entry) for entry in chosen)

    return HeaderPolicy(mcp_allow=entries(), provider_allow=entries(), deny=entries())


@st.composite
def incoming_pairs(draw: st.DrawFn) -> list[tuple[str, str]]:
    items = draw(
        st.lists(st.tuples(st.sampled_from(POLICY_NAMES), st.sampled_from(["1", "2", ""])), max_size=8)
    )
    return [(random_case(draw, name), value) for name, value in items]


def ref_forward(pairs: list[tuple[str, str]], allowed: Callable[[str], bool]) -> dict[str, str] | str:
    """Expected output of a forwarding side, or the rule of the expected error."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        if allowed(name.lower()):
            values.setdefault(name.lower(), []).append(value)
    result: dict[str, str] = {}
    for name, vs in values.items():
        if name in LIST_HEADERS:
            result[name] = ", ".join(v for v in vs if v)
        elif len(set(vs)) > 1:
            return "duplicate-differs"
        else:
            result[name] = vs[0]
    return result


@FAST
@given(policies(), incoming_pairs())
def test_policy_properties(policy: HeaderPolicy, pairs: list[tuple[str, str]]) -> None:
    def mcp(name: str) -> bool:
        return ref_matches(policy.mcp_allow, name) and not ref_matches(policy.deny, name)

    def provider(name: str) -> bool:
        return (
            ref_matches(policy.provider_allow, name)
            and not ref_matches(policy.mcp_allow, name)
            and not ref_matches(policy.deny, name)
        )

    for name in POLICY_NAMES:
        for variant in (name, name.upper()):
            assert policy.allows_mcp(variant) == mcp(name)
            assert policy.allows_provider(variant) == provider(name)
            assert not (policy.allows_mcp(variant) and policy.allows_provider(variant))

    for side, allowed in ((policy.for_mcp, mcp), (policy.for_provider, provider)):
        expected = ref_forward(pairs, allowed)
        if isinstance(expected, str):
            with pytest.raises(InvalidHeaderError) as info:
                side(pairs)
            assert info.value.rule == expected
        else:
            out = side(pairs)
            assert out.to_dict() == expected
            assert all(not ref_matches(policy.deny, name) for name in out)

    provider_expected = ref_forward(pairs, provider)
    if not isinstance(provider_expected, str):
        assert not any(ref_matches(policy.mcp_allow, name) for name in provider_expected)

    either = ref_forward(pairs, lambda name: mcp(name) or provider(name))
    if isinstance(either, str):
        with pytest.raises(InvalidHeaderError):
            policy.check(pairs)
    else:
        policy.check(pairs)

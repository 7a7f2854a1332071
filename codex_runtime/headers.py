"""HTTP header values for MCP requests: validation, layering, redaction and forwarding policy.

Everything here is pure (no I/O) and validates eagerly, so that an invalid header is
reported where it is configured rather than when a request is sent.

Grammar (RFC 9110, sections 5.1, 5.5 and 5.6.2):

    field-name    = token
    token         = 1*tchar
    tchar         = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
                    "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    field-value   = *field-content
    field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
    field-vchar   = VCHAR / obs-text          ; %x21-7E / %x80-FF

Names are compared case-insensitively and stored lower-cased. Values are `str` of visible
ASCII, spaces and tabs: the ``obs-text`` of the grammar (U+0080 to U+00FF) is refused,
because the HTTP client sends header values as ASCII only, and what validation accepts
must be sendable. A value's size in bytes is its length.

Merge rule: a name may occur several times in a `Headers`. Names in `LIST_HEADERS`
resolve to their non-empty values joined with ``", "`` in order; every other name is
single-valued and resolves to its *first* value (values are never comma-joined, so two
``authorization`` or ``traceparent`` values can never be fused into one).

Error messages name the header and the broken rule, and never contain a header value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeAlias, final, overload

import attrs

__all__ = [
    "DEFAULT_LIMITS",
    "LIST_HEADERS",
    "MAX_TOTAL_BYTES",
    "MAX_VALUE_BYTES",
    "PROTECTED",
    "REDACTED",
    "CodexRuntimeError",
    "HeaderLimits",
    "HeaderPolicy",
    "Headers",
    "HeadersInput",
    "InvalidHeaderError",
    "check_settable",
    "is_protected",
    "is_secret",
    "is_valid_name",
    "is_valid_value",
    "merge_layers",
    "normalize_incoming",
    "redact",
    "validate_name",
    "validate_value",
]


# --------------------------------------------------------------------------- errors


class CodexRuntimeError(Exception):
    """Base class of every public error raised by `codex_runtime`."""


class InvalidHeaderError(CodexRuntimeError, ValueError):
    """A header name, value or set of headers breaks a rule.

    The message says which header and which rule, and how to fix it. It never contains a
    header value, so it is safe to log even when the header carries a credential.

    Attributes:
        name: The offending header name, lower-cased, or ``None`` when the problem is not
            tied to one name (e.g. the whole set is too large, or the name is not a `str`).
        rule: Short identifier of the broken rule: ``"name-not-str"``, ``"name-not-token"``,
            ``"item-not-pair"``, ``"value-not-str"``, ``"value-control-char"``,
            ``"value-whitespace"``, ``"value-not-ascii"``, ``"value-not-latin1"``,
            ``"value-not-visible-ascii"``,
            ``"value-too-large"``, ``"set-too-large"``, ``"protected"``,
            ``"duplicate-differs"``, ``"pattern-invalid"`` or ``"meta-not-mapping"`` (a
            ``_meta`` or ``_meta.extra_headers`` that is not a mapping).
    """

    name: str | None
    rule: str

    def __init__(self, message: str, *, name: str | None = None, rule: str = "invalid") -> None:
        super().__init__(message)
        self.name = name
        self.rule = rule

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args, {"name": self.name, "rule": self.rule})


# --------------------------------------------------------------------------- constants

PROTECTED: Final[frozenset[str]] = frozenset(
    {
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
)
"""Names managed by the transport or the trace layer; see `check_settable`.

Every other ``mcp-*`` name is protected too (see `is_protected`).
"""


def is_protected(name: str) -> bool:
    """Whether header ``name`` is managed by the transport or the trace layer.

    That is every name in `PROTECTED` and every ``mcp-*`` name: the MCP SDK derives
    those from the request body (``Mcp-Method``, ``Mcp-Name``, SEP-2243's
    ``Mcp-Param-*`` mirrors of tool arguments), so a layer overriding one would make
    header and body disagree.
    """
    lname = name.lower()
    return lname in PROTECTED or lname.startswith("mcp-")

LIST_HEADERS: Final[frozenset[str]] = frozenset({"tracestate", "baggage"})
"""Names whose repeated values are joined with ``", "`` by the merge rule."""

REDACTED: Final = "[REDACTED]"
"""Placeholder shown instead of the value of a secret header."""

MAX_VALUE_BYTES: Final = 8192
"""Default maximum size of one header value, in bytes."""

MAX_TOTAL_BYTES: Final = 65536
"""Default maximum size of a set of headers (sum of name and value sizes), in bytes."""

_SECRET_NAMES: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "dpop"})
# Parts of the usual credential header names: ``*-token``, ``*-key``, ``*secret*``,
# ``x-auth*`` / ``*-auth``, ``*cookie*``, ``*password*``, signatures and JWTs. A session
# id (Codex's ``session_id``) names a conversation, not a credential, and stays visible.
_SECRET_WORDS: Final = (
    "token",
    "secret",
    "key",
    "passw",
    "passphrase",
    "credential",
    "auth",
    "cookie",
    "signature",
    "jwt",
    "bearer",
)

# Character classes of RFC 9110. `re` treats these ranges as code points, and names
# are matched against ASCII only.
_TOKEN_RE: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE_CHARS_RE: Final = re.compile(r"[\t\x20-\x7e]*")
_LATIN1_RE: Final = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_VISIBLE_ASCII_RE: Final = re.compile(r"[\t\x20-\x7e]*")
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_EDGE_WS: Final = " \t"
# Valid names seen so far, mapped to their lower-cased form: names repeat across requests,
# values do not. Bounded; once full, further names are simply checked every time.
_NAME_CACHE: Final[dict[str, str]] = {}
_NAME_CACHE_SIZE: Final = 1024
_NAME_SHOWN: Final = 64


# --------------------------------------------------------------------------- limits


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"HeaderLimits.{attribute.name} must be an int")
    if value <= 0:
        raise ValueError(f"HeaderLimits.{attribute.name} must be positive")


@attrs.frozen
class HeaderLimits:
    """Size limits applied when a `Headers` is built.

    Sizes are in bytes of the ASCII wire encoding, which for a valid header is the
    number of characters.

    Attributes:
        max_value_bytes: Largest accepted value, in bytes.
        max_total_bytes: Largest accepted set: the sum over every stored pair of the name
            size plus the value size.

    Raises:
        TypeError: A limit is not an `int`.
        ValueError: A limit is not positive.
    """

    max_value_bytes: int = attrs.field(default=MAX_VALUE_BYTES, validator=_positive_int)
    max_total_bytes: int = attrs.field(default=MAX_TOTAL_BYTES, validator=_positive_int)


DEFAULT_LIMITS: Final = HeaderLimits()
"""The default `HeaderLimits` (8 KiB per value, 64 KiB per set)."""


# --------------------------------------------------------------------------- validation


def _shown_name(name: str) -> str:
    """Return a printable, bounded rendering of a (possibly invalid) header name."""
    if len(name) > _NAME_SHOWN:
        return repr(name[:_NAME_SHOWN]) + "..."
    return repr(name)


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidHeaderError(
            f"header name must be a str, not {type(name).__name__}; pass names as text",
            name=None,
            rule="name-not-str",
        )
    if _TOKEN_RE.fullmatch(name) is None:
        shown = "empty" if not name else _shown_name(name)
        raise InvalidHeaderError(
            f"header name {shown} is not a valid token (RFC 9110 section 5.6.2); use only "
            "ASCII letters, digits and !#$%&'*+-.^_`|~",
            name=name.lower(),
            rule="name-not-token",
        )
    return name.lower()


def _value_error(name: str, value: str) -> InvalidHeaderError:
    """Return the error describing why `value` (already known to be invalid) is rejected."""
    if _CONTROL_RE.search(value) is not None:
        return InvalidHeaderError(
            f"header {name!r}: the value contains a control character (such as CR, LF or NUL); "
            "remove it (only horizontal tab is allowed, and only between other characters)",
            name=name,
            rule="value-control-char",
        )
    if _LATIN1_RE.fullmatch(value) is not None and _VALUE_CHARS_RE.fullmatch(value) is None:
        return InvalidHeaderError(
            f"header {name!r}: the value contains a character beyond ASCII (U+0080 to U+00FF), "
            "which HTTP clients cannot send; encode it (for example percent-encode its UTF-8 "
            "bytes) before using it in a header",
            name=name,
            rule="value-not-ascii",
        )
    if _VALUE_CHARS_RE.fullmatch(value) is None:
        return InvalidHeaderError(
            f"header {name!r}: the value contains a character above U+00FF; encode it "
            "(for example percent-encode its UTF-8 bytes) before using it in a header",
            name=name,
            rule="value-not-latin1",
        )
    return InvalidHeaderError(
        f"header {name!r}: the value starts or ends with a space or tab; strip it",
        name=name,
        rule="value-whitespace",
    )


def _check_value(name: str, value: object, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise InvalidHeaderError(
            f"header {name!r}: the value must be a str, not {type(value).__name__}; convert it to text first",
            name=name,
            rule="value-not-str",
        )
    if _VALUE_CHARS_RE.fullmatch(value) is None or (
        value and (value[0] in _EDGE_WS or value[-1] in _EDGE_WS)
    ):
        raise _value_error(name, value)
    if len(value) > max_bytes:
        raise _too_large(name, max_bytes)
    return value


def _too_large(name: str, max_bytes: int) -> InvalidHeaderError:
    return InvalidHeaderError(
        f"header {name!r}: the value is larger than {max_bytes} bytes; shorten it or raise "
        "HeaderLimits.max_value_bytes",
        name=name,
        rule="value-too-large",
    )


def _set_too_large(max_bytes: int) -> InvalidHeaderError:
    return InvalidHeaderError(
        f"the headers are larger than {max_bytes} bytes in total (names plus values); send "
        "fewer or smaller headers, or raise HeaderLimits.max_total_bytes",
        name=None,
        rule="set-too-large",
    )


def validate_name(name: object) -> str:
    """Check that `name` is a valid header name and return it lower-cased.

    A valid name is a non-empty RFC 9110 ``token``: ASCII letters, digits and any of
    ``!#$%&'*+-.^_`|~``.

    Raises:
        InvalidHeaderError: ``rule="name-not-str"`` if `name` is not a `str`,
            ``rule="name-not-token"`` if it is empty or holds any other character.
    """
    return _check_name(name)


def validate_value(name: str, value: object, limits: HeaderLimits = DEFAULT_LIMITS) -> str:
    """Check that `value` is a valid value for header `name` and return it unchanged.

    A valid value matches RFC 9110 ``field-value`` without ``obs-text``: visible ASCII,
    spaces and tabs, with no space or tab first or last (what an HTTP client can send).
    The empty value is valid. `name` is only used (lower-cased) in the error; it is not validated.

    Raises:
        InvalidHeaderError: With ``rule`` one of ``"value-not-str"``,
            ``"value-control-char"`` (CR, LF, NUL or any other control character except
            an inner tab), ``"value-not-ascii"`` (a character from U+0080 to U+00FF),
            ``"value-not-latin1"`` (a character above U+00FF),
            ``"value-whitespace"`` (leading or trailing space or tab) or
            ``"value-too-large"`` (longer than ``limits.max_value_bytes``).
    """
    return _check_value(name.lower(), value, limits.max_value_bytes)


def is_valid_name(name: object) -> bool:
    """Return whether `name` is a `str` matching RFC 9110 ``token``."""
    return isinstance(name, str) and _TOKEN_RE.fullmatch(name) is not None


def is_valid_value(value: object) -> bool:
    """Return whether `value` is a `str` matching RFC 9110 ``field-value`` without ``obs-text``.

    Only the grammar is checked, not the size limits.
    """
    return (
        isinstance(value, str)
        and _VALUE_CHARS_RE.fullmatch(value) is not None
        and not (value and (value[0] in _EDGE_WS or value[-1] in _EDGE_WS))
    )


# --------------------------------------------------------------------------- input forms

HeadersInput: TypeAlias = "Headers | Mapping[str, str] | Iterable[tuple[str, str]]"
"""Every form accepted where headers are expected: a `Headers`, a mapping of names to
values, or an iterable of ``(name, value)`` pairs (which may repeat a name)."""


def _raw_pairs(data: HeadersInput) -> Iterator[tuple[object, object]]:
    """Yield the ``(name, value)`` pairs of any accepted input form, unvalidated."""
    if isinstance(data, Headers):
        yield from data._pairs
    elif type(data) is dict or isinstance(data, Mapping):
        yield from data.items()
    elif isinstance(data, str | bytes | bytearray):
        raise TypeError(
            "headers must be a Headers, a mapping or an iterable of (name, value) pairs, not text"
        )
    elif isinstance(data, Iterable):
        for item in data:
            if type(item) is tuple and len(item) == 2:
                yield item
                continue
            if not isinstance(item, tuple | list) or len(item) != 2:
                got = f"{len(item)} items" if isinstance(item, tuple | list) else type(item).__name__
                raise InvalidHeaderError(
                    f"each header must be a (name, value) pair (a tuple or list of two items), got {got}",
                    name=None,
                    rule="item-not-pair",
                )
            yield item[0], item[1]
    else:
        raise TypeError(
            "headers must be a Headers, a mapping or an iterable of (name, value) pairs, "
            f"not {type(data).__name__}"
        )


def _merge_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Resolve lower-cased pairs to one value per name under the merge rule."""
    merged: dict[str, str] = {}
    for name, value in pairs:
        if name not in merged:
            merged[name] = value
        elif name in LIST_HEADERS and value:
            merged[name] = f"{merged[name]}, {value}" if merged[name] else value
    return merged


# --------------------------------------------------------------------------- Headers


def _restore_headers(pairs: tuple[tuple[str, str], ...], limits: HeaderLimits) -> Headers:
    return Headers(pairs, limits=limits)


@final
class Headers:
    """An immutable, ordered, case-insensitive, multi-valued set of HTTP headers.

    Every name and value is validated at construction (see `validate_name` and
    `validate_value`), and so is the total size against `limits`; an invalid input
    raises `InvalidHeaderError` and nothing is built. Names are stored lower-cased.

    A name may occur several times. `get_all` and `items` expose every value; `get`,
    `to_dict` and `redacted` resolve one value per name with the merge rule: names in
    `LIST_HEADERS` join their non-empty values with ``", "`` in order, any other name
    takes its *first* value.

    ``a | b`` appends the pairs of ``b`` after those of ``a``, so ``a`` takes precedence
    for single-valued names, and list headers hold ``a``'s entries first.

    `repr` and `str` show secret values (see `is_secret`) as ``"[REDACTED]"``.

    Instances are immutable: no method changes them, every derivation (``|``, `without`,
    `only`) returns a new `Headers`, and they are hashable.

    Args:
        data: ``None``, a `Headers`, a mapping of names to values, or an iterable of
            ``(name, value)`` pairs.
        limits: Size limits; `DEFAULT_LIMITS` when ``None``.

    Raises:
        InvalidHeaderError: A name, a value or the total size is invalid.
        TypeError: `data` is not one of the accepted forms.
    """

    __slots__ = ("_hash", "_index", "_limits", "_merged", "_pairs", "_size")

    _pairs: tuple[tuple[str, str], ...]
    _index: dict[str, list[str]]
    _limits: HeaderLimits
    _size: int
    _merged: dict[str, str] | None
    _hash: int | None

    def __init__(self, data: HeadersInput | None = None, *, limits: HeaderLimits | None = None) -> None:
        limits = DEFAULT_LIMITS if limits is None else limits
        if data is None:
            self._init((), limits, 0)
        elif isinstance(data, Headers):
            if limits.max_value_bytes < data._limits.max_value_bytes:
                data._check_values(limits.max_value_bytes)
            if data._size > limits.max_total_bytes:
                raise _set_too_large(limits.max_total_bytes)
            self._init(data._pairs, limits, data._size)
        else:
            raw = data.items() if type(data) is dict else _raw_pairs(data)
            pairs, size = _validate_pairs(raw, limits)
            self._init(pairs, limits, size)

    def _init(self, pairs: tuple[tuple[str, str], ...], limits: HeaderLimits, size: int) -> None:
        index: dict[str, list[str]] = {}
        for name, value in pairs:
            if name in index:
                index[name].append(value)
            else:
                index[name] = [value]
        self._pairs = pairs
        self._index = index
        self._limits = limits
        self._size = size
        self._merged = None
        self._hash = None

    @classmethod
    def _trusted(cls, pairs: tuple[tuple[str, str], ...], limits: HeaderLimits, size: int) -> Headers:
        """Build from pairs that are already lower-cased and validated against `limits`."""
        self = cls.__new__(cls)
        self._init(pairs, limits, size)
        return self

    def _check_values(self, max_bytes: int) -> None:
        for name, value in self._pairs:
            if len(value) > max_bytes:
                raise _too_large(name, max_bytes)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], *, limits: HeaderLimits | None = None) -> Headers:
        """Build a `Headers` from ``(name, value)`` pairs, keeping repeated names in order.

        Raises:
            InvalidHeaderError: A name, a value or the total size is invalid.
        """
        return cls(pairs, limits=limits)

    # -- read access -------------------------------------------------------------------

    @property
    def limits(self) -> HeaderLimits:
        """The limits this set was validated against (and that ``|`` applies)."""
        return self._limits

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    @overload
    def get(self, name: str, default: str | None) -> str | None: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the resolved value of `name` (case-insensitive), or `default` if absent.

        Names in `LIST_HEADERS` resolve to their non-empty values joined with ``", "``;
        any other name resolves to its first value.
        """
        values = self._index.get(name.lower())
        if values is None:
            return default
        if len(values) == 1:
            return values[0]
        return self._merged_dict()[name.lower()]

    def get_all(self, name: str) -> list[str]:
        """Return every value of `name` (case-insensitive) in order; ``[]`` if absent."""
        return list(self._index.get(name.lower(), ()))

    def items(self) -> list[tuple[str, str]]:
        """Return every ``(name, value)`` pair in order, with lower-cased names."""
        return list(self._pairs)

    def keys(self) -> list[str]:
        """Return the distinct lower-cased names in first-seen order."""
        return list(self._index)

    def to_dict(self) -> dict[str, str]:
        """Return a new dict with one resolved value per name, in first-seen order."""
        return dict(self._merged_dict())

    def redacted(self) -> dict[str, str]:
        """Return `to_dict` with the value of every secret name replaced by ``"[REDACTED]"``."""
        return {name: REDACTED if is_secret(name) else value for name, value in self._merged_dict().items()}

    def _merged_dict(self) -> dict[str, str]:
        merged = self._merged
        if merged is None:
            merged = _merge_pairs(self._pairs)
            self._merged = merged
        return merged

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __bool__(self) -> bool:
        return bool(self._pairs)

    # -- derived sets ------------------------------------------------------------------

    def __or__(self, other: HeadersInput) -> Headers:
        """Return a new `Headers` with the pairs of `self` followed by those of `other`.

        `self` takes precedence: a single-valued name present in both resolves to the
        value of `self`. The result keeps the limits of `self`; `other` is validated
        against them (a `Headers` is not re-parsed, only its sizes are checked).

        Raises:
            InvalidHeaderError: `other` is invalid or the result is too large.
        """
        limits = self._limits
        if isinstance(other, Headers):
            if limits.max_value_bytes < other._limits.max_value_bytes:
                other._check_values(limits.max_value_bytes)
            pairs, size = other._pairs, other._size
        else:
            raw = other.items() if type(other) is dict else _raw_pairs(other)
            pairs, size = _validate_pairs(raw, limits)
        if not pairs:
            return self
        total = self._size + size
        if total > limits.max_total_bytes:
            raise _set_too_large(limits.max_total_bytes)
        return Headers._trusted(self._pairs + pairs, limits, total)

    def __ror__(self, other: Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
        """Return ``Headers(other) | self``: `other` takes precedence."""
        return Headers(other, limits=self._limits) | self

    def without(self, *names: str) -> Headers:
        """Return a new `Headers` without any pair whose name is one of `names` (case-insensitive)."""
        drop = {name.lower() for name in names}
        if not drop.intersection(self._index):
            return self
        return self.only(lambda name: name not in drop)

    def only(self, predicate: Callable[[str], bool]) -> Headers:
        """Return a new `Headers` with the pairs whose lower-cased name satisfies `predicate`."""
        keep = {name for name in self._index if predicate(name)}
        if len(keep) == len(self._index):
            return self
        pairs = tuple(pair for pair in self._pairs if pair[0] in keep)
        size = sum(len(name) + len(value) for name, value in pairs)
        return Headers._trusted(pairs, self._limits, size)

    # -- object protocol ---------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Equal to another `Headers` with the same lower-cased pairs in the same order."""
        if isinstance(other, Headers):
            return self._pairs == other._pairs
        return NotImplemented

    def __hash__(self) -> int:
        cached = self._hash
        if cached is None:
            cached = hash(self._pairs)
            self._hash = cached
        return cached

    def __repr__(self) -> str:
        shown = [(name, REDACTED if is_secret(name) else value) for name, value in self._pairs]
        if len(self._index) == len(self._pairs):
            return f"Headers({dict(shown)!r})"
        return f"Headers({shown!r})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_headers, (self._pairs, self._limits))

    def __copy__(self) -> Headers:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Headers:
        return self


def _validate_pairs(
    raw: Iterable[tuple[object, object]], limits: HeaderLimits
) -> tuple[tuple[tuple[str, str], ...], int]:
    """Validate raw pairs against `limits`; return them lower-cased, with their total size."""
    max_value = limits.max_value_bytes
    known_name = _NAME_CACHE.get
    pairs: list[tuple[str, str]] = []
    size = 0
    for name, value in raw:
        lname = known_name(name) if type(name) is str else None
        if lname is None:
            lname = _check_name(name)
            if type(name) is str and len(_NAME_CACHE) < _NAME_CACHE_SIZE:
                _NAME_CACHE[name] = lname
        # Fast path: printable ASCII (no tab, no obs-text) that does not start or end with
        # a space is valid; anything else goes through the full check.
        checked: str
        if (
            type(value) is str
            and value.isascii()
            and value.isprintable()
            and len(value) <= max_value
            and (not value or (value[0] != " " and value[-1] != " "))
        ):
            checked = value
        else:
            checked = _check_value(lname, value, max_value)
        pairs.append((lname, checked))
        size += len(lname) + len(checked)
    if size > limits.max_total_bytes:
        raise _set_too_large(limits.max_total_bytes)
    return tuple(pairs), size


# --------------------------------------------------------------------------- secrets & layers


def is_secret(name: str) -> bool:
    """Return whether the value of header `name` must never be shown.

    True for ``authorization``, ``proxy-authorization``, ``cookie``, ``set-cookie`` and
    ``dpop``, and for any name containing ``token``, ``secret``, ``key``, ``passw``
    (``password``, ``passwd``), ``passphrase``, ``credential``, ``auth`` (``x-auth-*``,
    ``x-custom-auth``), ``cookie``, ``signature``, ``jwt`` or ``bearer``; case-insensitive,
    and ignoring surrounding whitespace (so that a malformed name such as
    ``"Authorization "`` passed to `redact` is still hidden).

    A name alone cannot tell every secret: values that came from the environment, from
    auth or from a caller's credential are secret whatever their name. Such names are
    passed to `redact` as ``secret_names`` (see ``ServerConfig.secret_headers``).
    """
    lname = name.strip().lower()
    return lname in _SECRET_NAMES or any(word in lname for word in _SECRET_WORDS)


def redact(headers: HeadersInput, *, secret_names: Iterable[str] = ()) -> dict[str, str]:
    """Return one value per lower-cased name (merge rule), secret values replaced by ``"[REDACTED]"``.

    A value is secret when `is_secret` says so of its name, or when its name is one of
    ``secret_names`` (case-insensitive): names whose values are secret by where they
    came from, such as ``ServerConfig.secret_headers``.

    Accepts every input form and does not validate names or values, so it can be used to
    log headers that were rejected. Names and values that are not `str` are shown through
    `str` (a value of a secret name is never shown).

    Raises:
        InvalidHeaderError: ``rule="item-not-pair"`` if an item of an iterable is not a
            ``(name, value)`` pair.
        TypeError: `headers` is not one of the accepted forms.
    """
    names = (secret_names,) if isinstance(secret_names, str) else secret_names
    hidden = {n.strip().lower() for n in names if isinstance(n, str)}
    pairs = []
    for name, value in _raw_pairs(headers):
        lname = (name if isinstance(name, str) else str(name)).lower()
        secret = lname.strip() in hidden or is_secret(lname)
        shown = REDACTED if secret else (value if isinstance(value, str) else str(value))
        pairs.append((lname, shown))
    return _merge_pairs(pairs)


def check_settable(headers: HeadersInput, *, layer: str) -> None:
    """Reject headers that the caller may not set at `layer` (e.g. ``"turn"`` or ``"call"``).

    Protected names (`is_protected`: `PROTECTED` and every ``mcp-*`` name) are managed
    by the transport or the trace layer. Only names are
    inspected; names that are not `str` are ignored here (constructing a `Headers` rejects
    them).

    Raises:
        InvalidHeaderError: ``rule="protected"``, naming the first protected header.
    """
    for name, _ in _raw_pairs(headers):
        if isinstance(name, str) and is_protected(lname := name.lower()):
            raise InvalidHeaderError(
                f"header {lname!r} cannot be set in {layer} headers: it is managed by the "
                f"transport/trace layer; remove it from the {layer} headers",
                name=lname,
                rule="protected",
            )


def merge_layers(*layers: Headers) -> dict[str, str]:
    """Resolve layers of headers, highest precedence first, into one value per name.

    Equivalent to ``(layers[0] | layers[1] | ...).to_dict()`` (so the limits of
    ``layers[0]`` apply to the concatenation), without re-validating the layers.
    Returns ``{}`` when no layer is given.

    Raises:
        InvalidHeaderError: The concatenated layers exceed the limits of ``layers[0]``.
    """
    if not layers:
        return {}
    first = layers[0]
    if len(layers) == 1:
        return first.to_dict()
    limits = first._limits
    total = 0
    for layer in layers:
        if layer._limits.max_value_bytes > limits.max_value_bytes:
            layer._check_values(limits.max_value_bytes)
        total += layer._size
    if total > limits.max_total_bytes:
        raise _set_too_large(limits.max_total_bytes)
    return _merge_pairs(pair for layer in layers for pair in layer._pairs)


# --------------------------------------------------------------------------- forwarding policy


def normalize_incoming(
    incoming: HeadersInput,
    names_predicate: Callable[[str], object] | None = None,
    *,
    limits: HeaderLimits | None = None,
) -> Headers:
    """Validate incoming request headers and resolve them to one value per name.

    Only names for which `names_predicate` (called with the lower-cased name) returns a
    true value are considered; every name when it is ``None``. Other pairs are ignored without any
    check. For each considered name:

    * the name must be a token and the value a `str` of visible ASCII, spaces and tabs,
      with no space or tab first or last;
    * values of `LIST_HEADERS` are joined with ``", "`` in order (empty values dropped);
    * identical repeats of any other name collapse into one value; differing repeats
      are rejected, never joined.

    Raises:
        InvalidHeaderError: With ``rule`` one of ``"name-not-str"`` (only without a
            predicate), ``"name-not-token"``, ``"value-not-str"``,
            ``"value-not-visible-ascii"`` (obs-text, control characters, anything beyond
            ASCII), ``"value-whitespace"``, ``"duplicate-differs"``, ``"value-too-large"``
            or ``"set-too-large"``.
        TypeError: `incoming` is not one of the accepted forms.
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    max_value = limits.max_value_bytes
    merged: dict[str, str] = {}
    known_name = _NAME_CACHE.get
    for name, value in _raw_pairs(incoming):
        if names_predicate is not None:
            if not isinstance(name, str) or not names_predicate(name.lower()):
                continue
        lname = known_name(name) if type(name) is str else None
        if lname is None:
            lname = _check_name(name)
        if not isinstance(value, str):
            raise InvalidHeaderError(
                f"header {lname!r}: the value must be a str, not {type(value).__name__}",
                name=lname,
                rule="value-not-str",
            )
        if not (value.isascii() and value.isprintable()) and _VISIBLE_ASCII_RE.fullmatch(value) is None:
            raise InvalidHeaderError(
                f"header {lname!r}: the value must be visible ASCII (spaces and tabs allowed "
                "inside); remove control characters and encode non-ASCII text before sending it",
                name=lname,
                rule="value-not-visible-ascii",
            )
        if value and (value[0] in _EDGE_WS or value[-1] in _EDGE_WS):
            raise InvalidHeaderError(
                f"header {lname!r}: the value starts or ends with a space or tab; strip it",
                name=lname,
                rule="value-whitespace",
            )
        previous = merged.get(lname)
        if previous is None:
            merged[lname] = value
        elif lname in LIST_HEADERS:
            if value:
                merged[lname] = f"{previous}, {value}" if previous else value
        elif value != previous:
            raise InvalidHeaderError(
                f"header {lname!r} was received several times with different values; send it "
                "once (it is single-valued, so its values are never joined)",
                name=lname,
                rule="duplicate-differs",
            )
        if len(merged[lname]) > max_value:
            raise _too_large(lname, max_value)
    pairs = tuple(merged.items())
    size = sum(len(name) + len(value) for name, value in pairs)
    if size > limits.max_total_bytes:
        raise _set_too_large(limits.max_total_bytes)
    return Headers._trusted(pairs, limits, size)


def _to_patterns(entries: Iterable[str]) -> tuple[str, ...]:
    """Validate and lower-case forwarding-policy entries."""
    if isinstance(entries, str):
        raise TypeError("HeaderPolicy entries must be a sequence of names, not a single str")
    patterns: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidHeaderError(
                f"HeaderPolicy entry must be a str, not {type(entry).__name__}",
                name=None,
                rule="pattern-invalid",
            )
        stem = entry[:-1] if entry.endswith("*") else entry
        if _TOKEN_RE.fullmatch(stem) is None or "*" in stem:
            raise InvalidHeaderError(
                f"HeaderPolicy entry {_shown_name(entry)} is invalid: use a header name, or a "
                "header-name prefix followed by a single trailing '*'",
                name=entry.lower(),
                rule="pattern-invalid",
            )
        patterns.append(entry.lower())
    return tuple(patterns)


def _alternation(patterns: tuple[str, ...]) -> str:
    """Return a regex alternation matching exactly the names that `patterns` select."""
    if not patterns:
        return "(?!)"
    return "|".join(re.escape(p[:-1]) + ".*" if p.endswith("*") else re.escape(p) for p in patterns)


def _selector(allow: tuple[str, ...], refuse: tuple[str, ...]) -> Callable[[str], object]:
    """Return a predicate true for lower-cased names matched by `allow` and not by `refuse`."""
    pattern = f"(?!(?:{_alternation(refuse)})\\Z)(?:{_alternation(allow)})"
    return re.compile(pattern, re.DOTALL).fullmatch


@attrs.frozen
class HeaderPolicy:
    """Which incoming request headers are forwarded to MCP servers and to the model provider.

    Each entry is an exact header name or a prefix ending in ``"*"`` (``"x-request-id-*"``
    matches ``"x-request-id-foo"``). Entries are validated and lower-cased at
    construction, and matching is case-insensitive.

    * `deny` always wins: a denied name is forwarded nowhere.
    * A name matched by `mcp_allow` is never forwarded to the provider, even when a
      `provider_allow` entry also matches it.

    Attributes:
        mcp_allow: Names forwarded to MCP servers.
        provider_allow: Names forwarded to the model provider.
        deny: Names never forwarded.

    Raises:
        InvalidHeaderError: ``rule="pattern-invalid"`` for an entry that is not a token
            optionally followed by one ``"*"``.
        TypeError: An entry list is a single `str`.
    """

    mcp_allow: tuple[str, ...] = attrs.field(default=(), converter=_to_patterns)
    provider_allow: tuple[str, ...] = attrs.field(
        default=("x-request-id", "x-correlation-id", "x-request-id-*"), converter=_to_patterns
    )
    deny: tuple[str, ...] = attrs.field(default=(), converter=_to_patterns)
    _mcp_ok: Callable[[str], object] = attrs.field(init=False, repr=False, eq=False, hash=False)
    _provider_ok: Callable[[str], object] = attrs.field(init=False, repr=False, eq=False, hash=False)
    _either_ok: Callable[[str], object] = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        # Each side is one compiled regex: deny (and, for the provider, the MCP side) is a
        # negative lookahead in front of the allowed alternatives.
        object.__setattr__(self, "_mcp_ok", _selector(self.mcp_allow, self.deny))
        object.__setattr__(self, "_provider_ok", _selector(self.provider_allow, self.deny + self.mcp_allow))
        object.__setattr__(self, "_either_ok", _selector(self.mcp_allow + self.provider_allow, self.deny))

    @classmethod
    def smg(cls) -> HeaderPolicy:
        """Return the preset for deployments behind the SMG model gateway.

        The provider receives ``authorization``, ``x-request-id``, ``x-correlation-id``,
        ``traceparent``, ``tracestate``, ``x-smg-routing-key`` and ``x-request-id-*``;
        MCP servers receive ``x-smg-oci-delegation-token`` and ``x-smg-oci-compartment-id``.
        """
        return cls(
            mcp_allow=("x-smg-oci-delegation-token", "x-smg-oci-compartment-id"),
            provider_allow=(
                "authorization",
                "x-request-id",
                "x-correlation-id",
                "traceparent",
                "tracestate",
                "x-smg-routing-key",
                "x-request-id-*",
            ),
        )

    def allows_mcp(self, name: str) -> bool:
        """Return whether header `name` (case-insensitive) is forwarded to MCP servers."""
        return bool(self._mcp_ok(name.lower()))

    def allows_provider(self, name: str) -> bool:
        """Return whether header `name` (case-insensitive) is forwarded to the provider."""
        return bool(self._provider_ok(name.lower()))

    def for_mcp(self, incoming: HeadersInput) -> Headers:
        """Return the incoming headers forwarded to MCP servers, normalized.

        Only names allowed for MCP are checked (see `normalize_incoming`).

        Raises:
            InvalidHeaderError: An allowed header is invalid or differs between repeats.
        """
        return normalize_incoming(incoming, self._mcp_ok)

    def for_provider(self, incoming: HeadersInput) -> Headers:
        """Return the incoming headers forwarded to the model provider, normalized.

        Only names allowed for the provider are checked (see `normalize_incoming`).

        Raises:
            InvalidHeaderError: An allowed header is invalid or differs between repeats.
        """
        return normalize_incoming(incoming, self._provider_ok)

    def check(self, incoming: HeadersInput) -> None:
        """Check every incoming header that either side forwards, as `normalize_incoming` does.

        Raises:
            InvalidHeaderError: An allowed header is invalid or differs between repeats.
        """
        normalize_incoming(incoming, self._either_ok)

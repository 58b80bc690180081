"""Remove a top-level member from a JSON object's bytes, leaving every other byte as is.

Parley stores each webhook body byte-exact, minus secrets (Natterly puts its
account-wide ``auth_token`` inside the body). Re-encoding the body would change
number formatting, escapes and key order, so instead we cut the member's exact
byte span out of the original text, together with one adjacent comma and the
whitespace next to it, so the result is still valid JSON.

How members are found: msgspec decodes the document first, which validates it
and yields the member's value bytes exactly as written (``msgspec.Raw``). When
the member is written last (Natterly's own example puts ``auth_token`` last) it
is recognised by reading backwards from the closing brace. Otherwise a short
walk over the top level steps over each value by its length, checking the bytes
match, so the cost is per top-level member rather than per byte; if that check
fails (duplicate keys, whose decoded entry holds the last value) a general
scanner that skips strings and counts brackets takes over.

The receiver's common case needs no decode before the cut: a last member that is a
plain string is cut by text (:func:`cut_trailing_string`), and decoding what is left,
which the receiver does anyway, proves the cut right.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Protocol, cast

import msgspec

from contracts.decoding import check_utf8, decode
from contracts.errors import ContractError

__all__ = [
    "Member",
    "cut_member",
    "cut_trailing_string",
    "decode_members",
    "member_spans",
    "strip_member",
    "without_members",
]

# A JSON string token; the "unrolled loop" form keeps long strings at C speed.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# One match per step of the walk keeps the per-member cost to a few C calls.
_OPEN = re.compile(rb"[ \t\n\r]*\{[ \t\n\r]*(\})?")
_HEAD = re.compile(rb'[ \t\n\r]*("[^"\\]*(?:\\.[^"\\]*)*")[ \t\n\r]*:[ \t\n\r]*', re.DOTALL)
_AFTER = re.compile(rb"[ \t\n\r]*([,}])")
# Strings are matched whole so brackets inside them are never counted.
_NESTING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
# A number or literal (true/false/null) ends at the next delimiter or whitespace.
_SCALAR_END = re.compile(rb"[,\]} \t\n\r]")

_LBRACE, _LBRACKET, _QUOTE, _COLON, _COMMA = b'{[":,'
_WS = b" \t\n\r"
_WS_BYTES = frozenset(_WS)

_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_KEY = msgspec.json.Decoder(str)


class Member(NamedTuple):
    """Byte span of one top-level member: ``body[start:value_end]`` is ``"key": value``."""

    key: str
    start: int
    value_start: int
    value_end: int


def decode_members(body: bytes) -> dict[str, msgspec.Raw]:
    """Decode the top-level object into raw member values (last duplicate wins).

    Raises ContractError unless ``body`` is one well-formed JSON object.
    """
    return decode(_MEMBERS, body)


def member_spans(body: bytes, members: dict[str, msgspec.Raw]) -> list[Member]:
    """All top-level members of ``body`` in document order, duplicates included.

    ``members`` must be ``decode_members(body)``; it lets the walk step over
    values by length instead of scanning them.
    """
    spans = _walk(body, members)
    if spans is None:
        spans = _walk(body, None)
    if spans is None:  # pragma: no cover - msgspec validated the document
        raise ContractError("could not locate the top-level members")
    return spans


def without_members(body: bytes, spans: list[Member], name: str) -> bytes:
    """``body`` minus every top-level member called ``name``, other bytes untouched.

    A removed member takes one adjacent comma with it: the one after it when a
    kept member follows, else the one before it; whitespace between the cut and
    the neighbouring member goes too, so pretty-printed bodies stay tidy.
    """
    cuts: list[tuple[int, int]] = []
    count = len(spans)
    i = 0
    while i < count:
        if spans[i].key != name:
            i += 1
            continue
        j = i  # extend to the maximal run of consecutive members to remove
        while j + 1 < count and spans[j + 1].key == name:
            j += 1
        if j + 1 < count:
            cuts.append((spans[i].start, spans[j + 1].start))
        elif i > 0:
            cuts.append((spans[i - 1].value_end, spans[j].value_end))
        else:
            cuts.append((spans[i].start, spans[j].value_end))
        i = j + 1
    if not cuts:
        return body
    pieces: list[bytes] = []
    kept_from = 0
    for cut_start, cut_end in cuts:
        pieces.append(body[kept_from:cut_start])
        kept_from = cut_end
    pieces.append(body[kept_from:])
    return b"".join(pieces)


def strip_member(body: bytes, name: str) -> bytes:
    """Validate ``body`` as a JSON object and remove its top-level ``name`` members."""
    check_utf8(body)
    members = decode_members(body)
    raw = members.get(name)
    if raw is None:
        return body
    return cut_member(body, name, raw, members)


def cut_member(
    body: bytes, name: str, value: msgspec.Raw, members: dict[str, msgspec.Raw] | None = None
) -> bytes:
    """``body`` (valid JSON, already decoded) minus every top-level ``name`` member.

    ``value`` is the member's raw value as msgspec decoded it (the last one, if
    the key repeats). The common case, the member written last, is cut without
    a walk (:func:`_cut_last`), and accepted once the result decodes without
    the member (so an earlier duplicate, however its key is spelled, sends us
    down the general path); otherwise the members are walked, for which
    ``members`` (``decode_members(body)``) is used if given.
    """
    cut = _cut_last(body, msgspec.json.encode(name), bytes(value))
    if cut is not None and not _still_has(cut, name):
        return cut
    if members is None:
        members = decode_members(body)
    return without_members(body, member_spans(body, members), name)


class _Probe(Protocol):
    value: msgspec.Raw


@functools.cache
def _probe(name: str) -> msgspec.json.Decoder[_Probe]:
    """A decoder that reads only the top-level member ``name``, as raw bytes."""
    probe = msgspec.defstruct(
        "Probe", [("value", msgspec.Raw, msgspec.field(default=msgspec.Raw(), name=name))]
    )
    return cast("msgspec.json.Decoder[_Probe]", msgspec.json.Decoder(probe))


@functools.cache
def _trailing_string(name: str) -> tuple[bytes, re.Pattern[bytes]]:
    """The key token of ``name`` and a pattern for ``"name": "plain string" }`` at the end."""
    key = msgspec.json.encode(name)
    # A plain string: no escapes, no control characters, so its text is its value.
    pattern = re.compile(
        re.escape(key) + rb'[ \t\n\r]*:[ \t\n\r]*"[^"\\\x00-\x1f]*"(?=[ \t\n\r]*\}[ \t\n\r]*\Z)'
    )
    return key, pattern


#: How far from the end a trailing member's key is looked for (a token is short), and
#: how much whitespace around the comma before it is looked through.
_TAIL_WINDOW = 1024
_GAP_WINDOW = 64


def cut_trailing_string(body: bytes, name: str) -> bytes | None:
    """``body`` minus a last member ``"name": "<plain string>"``, found by text alone; else None.

    Nothing is decoded, so the result is only a candidate: if it is a JSON object
    with no top-level ``name`` (the caller decodes it anyway), then ``body`` is that
    object with one more member, a plain string, inserted before the closing brace,
    hence valid JSON too, and the cut is exactly what :func:`cut_member` makes. Any
    other shape (token not last, not a plain string, first member, key escaped)
    gives None, and the caller takes the general path.
    """
    key, pattern = _trailing_string(name)
    key_start = body.rfind(key, max(0, len(body) - _TAIL_WINDOW))
    if key_start <= 0:
        return None
    member = pattern.match(body, key_start)
    if member is None:
        return None
    # Before the key: whitespace, the comma, whitespace, then the previous value's last byte.
    window = max(0, key_start - _GAP_WINDOW)
    before = body[window:key_start].rstrip(_WS)
    if before[-1:] != b",":
        return None
    before = before[:-1].rstrip(_WS)
    if not before or before[-1] in (_LBRACE, _COMMA):  # "{, …" and ",, …" are not JSON
        return None
    return body[: window + len(before)] + body[member.end() :]


def _still_has(body: bytes, name: str) -> bool:
    """Whether ``body`` still has a top-level ``name`` (or is no longer valid JSON)."""
    try:
        return bool(_probe(name).decode(body).value)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return True


def _cut_last(body: bytes, key: bytes, value: bytes) -> bytes | None:
    """Cut ``key: value`` when it is the last member of the object; else None.

    ``body`` must be valid JSON. Reading backwards from the closing brace, the
    text must be ``, "key" : value }`` (or ``{ "key" : value }``). That is then
    the real last member: the quote after the key's last letter is unescaped,
    so no string can span it, hence ``value`` starts outside any string and, being
    a balanced JSON value ending at the last value's end, *is* the last value;
    the quote before the key follows a comma (or the top-level brace), so it
    opens the key. (Earlier duplicates would survive the cut: the caller
    checks for them.)
    """
    end = len(body)
    while end and body[end - 1] in _WS_BYTES:
        end -= 1
    value_end = end - 1  # the closing brace
    while value_end > 0 and body[value_end - 1] in _WS_BYTES:
        value_end -= 1
    value_start = value_end - len(value)
    if value_start <= 0 or not body.startswith(value, value_start):
        return None
    colon = value_start
    while colon and body[colon - 1] in _WS_BYTES:
        colon -= 1
    if not colon or body[colon - 1] != _COLON:
        return None
    key_end = colon - 1
    while key_end and body[key_end - 1] in _WS_BYTES:
        key_end -= 1
    key_start = key_end - len(key)
    if key_start <= 0 or not body.startswith(key, key_start):
        return None
    before = key_start
    while before and body[before - 1] in _WS_BYTES:
        before -= 1
    if before and body[before - 1] == _COMMA:
        cut_start = before - 1
        while cut_start and body[cut_start - 1] in _WS_BYTES:
            cut_start -= 1
    else:
        opening = _OPEN.match(body)
        if opening is None or opening.end() != key_start:
            return None
        cut_start = key_start
    return body[:cut_start] + body[value_end:]


def _key(token: bytes) -> str:
    # Keys are compared decoded: "auth\u005ftoken" is auth_token to every parser.
    if b"\\" in token:
        return decode(_KEY, token)
    return token[1:-1].decode("utf-8")


def _walk(body: bytes, members: dict[str, msgspec.Raw] | None) -> list[Member] | None:
    """Walk the top-level object; None if the fast path's assumptions fail."""
    opening = _OPEN.match(body)
    if opening is None:
        return None
    spans: list[Member] = []
    pos = opening.end()
    if opening.group(1):  # "{}"
        return spans
    while True:
        head = _HEAD.match(body, pos)  # ws "key" ws : ws
        if head is None:
            return None
        key = _key(head.group(1))
        value_start = head.end()
        if members is None:
            value_end = _skip_value(body, value_start)
        else:
            raw = members.get(key)
            if raw is None:
                return None
            value = bytes(raw)
            # Equal bytes at this offset mean this *is* the value (JSON values are
            # self-delimiting; a number prefix is caught by the delimiter check).
            if not body.startswith(value, value_start):
                return None
            value_end = value_start + len(value)
        spans.append(Member(key, head.start(1), value_start, value_end))
        after = _AFTER.match(body, value_end)  # ws , or ws }
        if after is None:
            return None
        if after.group(1) == b"}":
            return spans
        pos = after.end()


def _skip_value(body: bytes, pos: int) -> int:
    """End offset of the JSON value starting at ``pos`` (body is known valid)."""
    if pos >= len(body):
        return pos
    first = body[pos]
    if first == _QUOTE:
        token = _STRING.match(body, pos)
        return pos if token is None else token.end()
    if first in (_LBRACE, _LBRACKET):
        depth = 0
        for token in _NESTING.finditer(body, pos):
            char = body[token.start()]
            if char == _QUOTE:
                continue
            depth += 1 if char in (_LBRACE, _LBRACKET) else -1
            if depth == 0:
                return token.end()
        return len(body)
    end = _SCALAR_END.search(body, pos)
    return len(body) if end is None else end.start()

"""Cutting a top-level member out of JSON text without touching other bytes."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import ContractError
from contracts.member_cut import (
    Member,
    cut_member,
    cut_trailing_string,
    decode_members,
    member_spans,
    strip_member,
    without_members,
)

TOKEN = "auth_token"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a":1,"auth_token":"x"}', b'{"a":1}'),
        (b'{"auth_token":"x","a":1}', b'{"a":1}'),
        (b'{"a":1,"auth_token":"x","b":2}', b'{"a":1,"b":2}'),
        (b'{"auth_token":"x"}', b"{}"),
        (b'{ "auth_token" : "x" }', b"{  }"),
        (b'{\n  "a": 1,\n  "auth_token": "x"\n}', b'{\n  "a": 1\n}'),
        (b'{\n  "auth_token": "x",\n  "a": 1\n}', b'{\n  "a": 1\n}'),
        (b'{"a":"\\"auth_token\\":1","auth_token":null}', b'{"a":"\\"auth_token\\":1"}'),
        (b'{"auth\\u005ftoken":"x","b":[1,{"c":"}"}]}', b'{"b":[1,{"c":"}"}]}'),
        (b'{"t":1,"auth_token":"a","auth_token":"b"}', b'{"t":1}'),
        (b'{"auth_token":"a","t":1,"auth_token":"b"}', b'{"t":1}'),
        (b'{"a":[1, 2],"auth_token":"x","a":[1]}', b'{"a":[1, 2],"a":[1]}'),
        (b'{"a":12,"auth_token":"x","a":1}', b'{"a":12,"a":1}'),
        (b'{"a":{"auth_token":"nested stays"}}', b'{"a":{"auth_token":"nested stays"}}'),
    ],
)
def test_examples(body: bytes, expected: bytes) -> None:
    assert strip_member(body, TOKEN) == expected


def test_absent_member_returns_the_same_object() -> None:
    body = b'{"a": 1}'
    assert strip_member(body, TOKEN) is body


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"{", b'{"a":1}}', b"\xff", b""])
def test_non_objects_are_contract_errors(body: bytes) -> None:
    with pytest.raises(ContractError):
        strip_member(body, TOKEN)


def test_spans_cover_key_and_value() -> None:
    body = b'{ "a" : [1] ,"b":"x"}'
    spans = member_spans(body, decode_members(body))
    assert spans == [Member("a", 2, 8, 11), Member("b", 13, 17, 20)]
    assert body[spans[0].start : spans[0].value_end] == b'"a" : [1]'


def test_without_members_is_a_no_op_for_other_names() -> None:
    body = b'{"a":1}'
    assert without_members(body, member_spans(body, decode_members(body)), TOKEN) is body


# --- properties ---------------------------------------------------------------

# Text that stresses a scanner: quotes, backslashes, brackets, braces, commas, colons.
TRICKY = st.text(alphabet=st.sampled_from([*'abc"\\{}[],: \n\t', "é", "😀", "\u2028", "\x00"]), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=12,
)
WHITESPACE = st.sampled_from(["", " ", "\n", "\t", "\r\n  ", "  "])


def dump(value: Any, ws: Iterator[str], *, ensure_ascii: bool) -> str:
    """JSON text of ``value`` with whitespace from ``ws`` between tokens."""

    def w() -> str:
        return next(ws)

    if isinstance(value, dict):
        members = [
            f"{w()}{json.dumps(k, ensure_ascii=ensure_ascii)}{w()}:"
            f"{w()}{dump(v, ws, ensure_ascii=ensure_ascii)}{w()}"
            for k, v in value.items()
        ]
        return "{" + ",".join(members) + w() + "}"
    if isinstance(value, list):
        items = [f"{w()}{dump(v, ws, ensure_ascii=ensure_ascii)}{w()}" for v in value]
        return "[" + ",".join(items) + w() + "]"
    return json.dumps(value, ensure_ascii=ensure_ascii)


@st.composite
def bodies_with_token(draw: st.DrawFn) -> tuple[bytes, dict[str, Any], str]:
    """A JSON object body with one auth_token member somewhere among the others."""
    others = draw(st.dictionaries(TRICKY.filter(lambda k: k != TOKEN), VALUES, max_size=5))
    token_value = draw(SCALARS | st.dictionaries(TRICKY, SCALARS, max_size=2))
    position = draw(st.integers(0, len(others)))
    items = list(others.items())
    items.insert(position, (TOKEN, token_value))
    ensure_ascii = draw(st.booleans())
    ws = itertools.cycle(draw(st.lists(WHITESPACE, min_size=1, max_size=7)))
    text = dump(dict(items), ws, ensure_ascii=ensure_ascii)
    if draw(st.booleans()):
        text = text.replace('"auth_token"', '"auth\\u005ftoken"', 1)  # same key, escaped
    return text.encode("utf-8", "surrogatepass"), others, json.dumps(token_value)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(bodies_with_token())
def test_strip_removes_exactly_the_member(case: tuple[bytes, dict[str, Any], str]) -> None:
    body, others, _ = case
    stripped = strip_member(body, TOKEN)
    # It parses to the original object minus that key ...
    assert json.loads(stripped) == others
    # ... and every other byte is unchanged: one contiguous cut, which holds
    # exactly the member plus commas and whitespace.
    cut = len(body) - len(stripped)
    prefix = common_prefix(body, stripped)
    suffix = common_prefix(body[::-1], stripped[::-1])
    assert prefix + suffix >= len(stripped)
    assert any(
        is_token_member(body[start : start + cut])
        for start in range(max(0, len(stripped) - suffix), prefix + 1)
    )


def common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    size = min(len(a), len(b))
    index = 0
    while index < size and a[index] == b[index]:
        index += 1
    return index


def is_token_member(removed: bytes) -> bool:
    """Whether ``removed`` is one ``"auth_token": value`` member with separators."""
    inner = removed.strip(b" \t\r\n,")
    try:
        parsed = json.loads(b"{" + inner + b"}")
    except ValueError:
        return False
    return list(parsed) == [TOKEN] and removed.count(b",") - inner.count(b",") <= 1


@settings(max_examples=300)
@given(bodies_with_token())
def test_fast_walk_agrees_with_the_general_scanner(case: tuple[bytes, dict[str, Any], str]) -> None:
    from contracts import member_cut

    body, _, _ = case
    fast = member_cut._walk(body, decode_members(body))
    general = member_cut._walk(body, None)
    assert general is not None
    assert fast is None or fast == general


@settings(max_examples=200)
@given(
    st.dictionaries(TRICKY, VALUES, max_size=4),
    st.lists(st.tuples(st.sampled_from([TOKEN, "a", "b"]), SCALARS), min_size=1, max_size=6),
)
def test_duplicates_are_all_removed(base: dict[str, Any], extra: list[tuple[str, Any]]) -> None:
    members = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in [*base.items(), *extra]]
    body = ("{" + ",".join(members) + "}").encode("utf-8", "surrogatepass")
    stripped = strip_member(body, TOKEN)
    pairs = json.loads(stripped, object_pairs_hook=lambda kv: kv)
    expected = [(k, v) for k, v in json.loads(body, object_pairs_hook=lambda kv: kv) if k != TOKEN]
    assert pairs == expected


@settings(max_examples=300)
@given(bodies_with_token())
def test_last_member_shortcut_agrees_with_the_walk(case: tuple[bytes, dict[str, Any], str]) -> None:
    from contracts import member_cut

    body, _, _ = case
    members = decode_members(body)
    shortcut = member_cut._cut_last(body, b'"auth_token"', bytes(members[TOKEN]))
    walked = without_members(body, member_spans(body, members), TOKEN)
    assert shortcut is None or shortcut == walked


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"auth_token":"t"}',
        b'{\n  "a": [1, {"b": "}"}],\n  "auth_token": "t"\n}\n',
        b'{ "auth_token" : "t" }',
        b'{"a":1,"auth_token":{"k":[1,2]}}',
    ],
)
def test_last_member_shortcut_applies(body: bytes) -> None:
    from contracts import member_cut

    raw = decode_members(body)[TOKEN]
    assert member_cut._cut_last(body, b'"auth_token"', bytes(raw)) == strip_member(body, TOKEN)


@pytest.mark.parametrize(
    "body",
    [
        # Same value nested in the last member, real token earlier.
        b'{"auth_token":"t","k":{"auth_token":"t"}}',
        b'{"k":0,"auth_token":{"z":1},"k":{"auth_token":{"z":1}}}',
        # A key that merely ends with the token's text.
        b'{"auth_token":"t","x\\"auth_token":"t"}',
        # A number whose tail equals the token's value.
        b'{"auth_token":2,"n":12}',
    ],
)
def test_last_member_shortcut_declines_lookalikes(body: bytes) -> None:
    from contracts import member_cut

    raw = decode_members(body)[TOKEN]
    assert member_cut._cut_last(body, b'"auth_token"', bytes(raw)) is None
    assert TOKEN not in json.loads(strip_member(body, TOKEN))


@pytest.mark.parametrize(
    "body",
    [
        # An earlier duplicate must go too: the shortcut's result still has one.
        b'{"auth_token":"t","a":1,"auth_token":"t"}',
        b'{"auth_token":"x","auth_token":"t"}',
        # The key spelled with an escape earlier on.
        b'{"auth\\u005ftoken":"t","auth_token":"t"}',
    ],
)
def test_earlier_duplicates_are_removed_too(body: bytes) -> None:
    members = decode_members(body)
    expected = without_members(body, member_spans(body, members), TOKEN)
    assert cut_member(body, TOKEN, members[TOKEN]) == expected
    assert TOKEN not in json.loads(expected)


# --- the receiver's textual cut of a trailing plain-string member ------------------


def is_object_without_token(text: bytes) -> bool:
    """What the receiver checks of a candidate: one JSON object, no top-level token."""
    try:
        return TOKEN not in decode_members(text)
    except ContractError:
        return False


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(bodies_with_token())
def test_trailing_cut_agrees_with_the_general_cut(case: tuple[bytes, dict[str, Any], str]) -> None:
    body, _, _ = case
    candidate = cut_trailing_string(body, TOKEN)
    if candidate is not None and is_object_without_token(candidate):
        assert candidate == strip_member(body, TOKEN)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a":1,"auth_token":"t"}', b'{"a":1}'),
        (b'{\n  "a": [1, {"b": "}"}],\n  "auth_token" : "t"\n}', b'{\n  "a": [1, {"b": "}"}]\n}'),
        (b'{"a":"x" , "auth_token":""}', b'{"a":"x"}'),
    ],
)
def test_trailing_cut_applies(body: bytes, expected: bytes) -> None:
    assert cut_trailing_string(body, TOKEN) == expected == strip_member(body, TOKEN)


@pytest.mark.parametrize(
    "body",
    [
        b'{"auth_token":"t"}',  # the only member: no comma to take
        b'{"a":1,"auth_token":"t\\u0041"}',  # not a plain string
        b'{"a":1,"auth_token":null}',
        b'{"a":1,"auth_token":"t","b":2}',  # not last
        b'{"a":1,"auth\\u005ftoken":"t"}',  # key spelled with an escape
        b'{,"auth_token":"t"}',  # what is left would be valid, the body is not
        b'{"a":1,,"auth_token":"t"}',
    ],
)
def test_trailing_cut_declines(body: bytes) -> None:
    assert cut_trailing_string(body, TOKEN) is None


@st.composite
def bodies_before_a_token(draw: st.DrawFn) -> bytes:
    """An object's text up to a trailing ``, "auth_token": "t"}``, maybe broken on the way."""
    others = draw(st.dictionaries(TRICKY, VALUES, max_size=4))
    ws = itertools.cycle(draw(st.lists(WHITESPACE, min_size=1, max_size=5)))
    text = dump(others, ws, ensure_ascii=draw(st.booleans())).rstrip(" \t\r\n")[:-1]  # drop "}"
    for _ in range(draw(st.integers(0, 2))):  # insert or delete a structural character
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(st.sampled_from(list('{}[]",:\\'))) + text[at:]
        else:
            text = text[:at] + text[at + 1 :]
    tail = draw(st.sampled_from([',"auth_token":"t"}', ' ,\n  "auth_token" : "" }', ',"auth_token":"t"}\n']))
    return (text + tail).encode("utf-8", "surrogatepass")


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(bodies_before_a_token())
def test_a_trailing_cut_accepted_by_decoding_means_a_valid_body(body: bytes) -> None:
    candidate = cut_trailing_string(body, TOKEN)
    if candidate is not None and is_object_without_token(candidate):
        # The body itself is valid JSON and the general cut agrees byte for byte.
        assert strip_member(body, TOKEN) == candidate

"""Bad input never crashes and never passes silently (issue 3, point 8).

Golden bodies are mutated (truncation, byte flips, invalid UTF-8, type swaps,
missing keys, deep nesting, huge numbers, duplicate keys) and fed to every
decoding entry point. Each must either succeed or raise ContractError with a
JSON path; nothing else. Whatever parse_webhook accepts must normalise without
raising and survive the envelope round trip.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.chatshipper import decode_chatshipper
from contracts.envelope import decode_envelope, encode_envelope
from contracts.errors import ContractError
from contracts.ingest import natterly_auth_token, parse_webhook
from contracts.member_cut import strip_member
from contracts.natterly import decode_natterly
from contracts.normalise import normalise
from tests.kit.goldens import (
    RECEIVED_AT,
    PathPart,
    all_goldens,
    get_at,
    json_paths,
    replace_at,
)

PLACEHOLDER = "\x00placeholder\x00"
GOLDENS = [
    (provider, path.name, path.read_bytes(), json.loads(path.read_bytes()))
    for provider, path in all_goldens()
]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def outcome(call: Callable[[], Any]) -> Any:
    """Run ``call``: its result, or None after a well-formed ContractError."""
    try:
        return call()
    except ContractError as error:
        assert error.path.startswith("$"), error.path
        assert error.detail
        return None


def check(provider: str, body: bytes) -> None:
    env = outcome(lambda: parse_webhook(provider, "fuzz", body, received_at=RECEIVED_AT))
    decoder = decode_natterly if provider == "natterly" else decode_chatshipper
    outcome(lambda: decoder(body))
    outcome(lambda: natterly_auth_token(body))
    outcome(lambda: strip_member(body, "auth_token"))
    outcome(lambda: parse_webhook("standard", "fuzz", body, received_at=RECEIVED_AT, webhook_id="w"))
    if env is not None:
        normalise(env)  # never raises on an accepted body
        assert decode_envelope(encode_envelope(env)) == env
        if provider == "natterly":
            assert natterly_auth_token(bytes(env.body)) is None


def with_raw(tree: Any, path: tuple[PathPart, ...], raw: str) -> bytes:
    """JSON text of ``tree`` with the value at ``path`` replaced by raw JSON text."""
    text = json.dumps(replace_at(tree, path, PLACEHOLDER), ensure_ascii=False)
    return text.replace(json.dumps(PLACEHOLDER, ensure_ascii=False), raw, 1).encode("utf-8", "surrogatepass")


GOLDEN = st.sampled_from(GOLDENS)
NEW_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)
HUGE_NUMBERS = st.sampled_from(
    [
        "1e999",
        "-1e999",
        "1e-999",
        "123456789012345678901234567890123456789",
        "-9223372036854775809",
        "18446744073709551616",
        "1" + "0" * 5000,
        "0." + "0" * 400 + "1",
        "1.7976931348623157e309",
    ]
)
BAD_UTF8 = st.sampled_from(
    [b"\xff", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe2\x82"]
)


@FUZZ
@given(GOLDEN, st.data())
def test_truncation(golden: tuple[str, str, bytes, Any], data: st.DataObject) -> None:
    provider, _, body, _ = golden
    check(provider, body[: data.draw(st.integers(0, len(body) - 1))])


@FUZZ
@given(GOLDEN, st.data())
def test_byte_flips(golden: tuple[str, str, bytes, Any], data: st.DataObject) -> None:
    provider, _, body, _ = golden
    mutated = bytearray(body)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    check(provider, bytes(mutated))


@FUZZ
@given(GOLDEN, st.data(), BAD_UTF8)
def test_invalid_utf8(golden: tuple[str, str, bytes, Any], data: st.DataObject, bad: bytes) -> None:
    provider, _, body, _ = golden
    at = data.draw(st.integers(0, len(body)))
    # Inside a string is the interesting place: nothing else would notice there.
    strings = [i + 1 for i, byte in enumerate(body) if byte == 0x22]
    if strings and data.draw(st.booleans()):
        at = data.draw(st.sampled_from(strings))
    check(provider, body[:at] + bad + body[at:])


@FUZZ
@given(GOLDEN, st.data(), NEW_VALUES)
def test_type_swaps(golden: tuple[str, str, bytes, Any], data: st.DataObject, new: Any) -> None:
    provider, _, _, tree = golden
    path = data.draw(st.sampled_from(list(json_paths(tree))))
    check(provider, json.dumps(replace_at(tree, path, new)).encode())


@FUZZ
@given(GOLDEN, st.data())
def test_missing_keys(golden: tuple[str, str, bytes, Any], data: st.DataObject) -> None:
    provider, _, _, tree = golden
    members = [path for path in json_paths(tree) if path and isinstance(path[-1], str)]
    path = data.draw(st.sampled_from(members))
    copy = json.loads(json.dumps(tree))
    del get_at(copy, path[:-1])[path[-1]]
    check(provider, json.dumps(copy).encode())


@FUZZ
@given(GOLDEN, st.data(), st.integers(1, 30_000), st.sampled_from(["[]", "{}", '{"a":}']))
def test_deep_nesting(
    golden: tuple[str, str, bytes, Any], data: st.DataObject, depth: int, kind: str
) -> None:
    provider, _, _, tree = golden
    path = data.draw(st.sampled_from(list(json_paths(tree))))
    raw = "[" * depth + "]" * depth if kind == "[]" else '{"a":' * depth + "null" + "}" * depth
    check(provider, with_raw(tree, path, raw))


@FUZZ
@given(GOLDEN, st.data(), HUGE_NUMBERS)
def test_huge_numbers(golden: tuple[str, str, bytes, Any], data: st.DataObject, number: str) -> None:
    provider, _, _, tree = golden
    path = data.draw(st.sampled_from(list(json_paths(tree))))
    check(provider, with_raw(tree, path, number))


@FUZZ
@given(GOLDEN, st.data(), NEW_VALUES, st.booleans())
def test_duplicate_keys(
    golden: tuple[str, str, bytes, Any], data: st.DataObject, value: Any, before: bool
) -> None:
    provider, _, _, tree = golden
    objects = [
        path for path in json_paths(tree) if isinstance(get_at(tree, path), dict) and get_at(tree, path)
    ]
    path = data.draw(st.sampled_from(objects))
    target = get_at(tree, path)
    key = data.draw(st.sampled_from(sorted(target)))
    rest = json.dumps(target)[1:-1]
    duplicate = f"{json.dumps(key)}: {json.dumps(value)}"
    raw = "{" + (f"{duplicate}, {rest}" if before else f"{rest}, {duplicate}") + "}"
    check(provider, with_raw(tree, path, raw))


@FUZZ
@given(GOLDEN, st.binary(max_size=64), st.data())
def test_garbage_splices(golden: tuple[str, str, bytes, Any], junk: bytes, data: st.DataObject) -> None:
    provider, _, body, _ = golden
    start = data.draw(st.integers(0, len(body)))
    end = data.draw(st.integers(start, min(len(body), start + 64)))
    check(provider, body[:start] + junk + body[end:])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(body: bytes) -> None:
    check("natterly", body)
    check("chatshipper", body)
    outcome(lambda: decode_envelope(body))

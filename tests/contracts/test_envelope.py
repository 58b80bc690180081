"""The canonical envelope: encoding, decoding, upcasting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from contracts.envelope import SCHEMA_VERSION, Envelope, decode_envelope, encode_envelope
from contracts.errors import ContractError
from contracts.upcast import ENVELOPE_UPCASTERS, Members, rename, upcast
from tests.kit.goldens import RECEIVED_AT

BODY = b'{ "event" : "ChatClosed",\n  "n": 1.50, "s": "\\u00e9" }'


def make(**changes: object) -> Envelope:
    env = Envelope(
        event_id="e-1",
        provider="natterly",
        source="acme",
        event_type="ChatClosed",
        aggregate="chat",
        key="chat-1",
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
        received_at=RECEIVED_AT,
        body=msgspec.Raw(BODY),
    )
    return msgspec.structs.replace(env, **changes)


def test_round_trip_keeps_body_bytes() -> None:
    env = make()
    data = encode_envelope(env)
    assert BODY in data  # written verbatim, not re-encoded
    back = decode_envelope(data)
    assert back == env
    assert bytes(back.body) == BODY


def test_schema_version_is_written_first() -> None:
    assert encode_envelope(make()).startswith(b'{"schema_version":1,')
    assert SCHEMA_VERSION == 1


def test_record_key() -> None:
    assert make(key="chät").record_key == "chät".encode()


def test_times_must_carry_a_zone() -> None:
    data = encode_envelope(make()).replace(b"2024-01-01T00:00:00Z", b"2024-01-01T00:00:00")
    with pytest.raises(ContractError) as caught:
        decode_envelope(data)
    assert caught.value.path == "$.occurred_at"


def test_other_offsets_decode_to_the_same_instant() -> None:
    env = make(occurred_at=datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    assert decode_envelope(encode_envelope(env)).occurred_at == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (b"[]", "$"),
        (b"{}", "$"),
        (b'{"schema_version": "1"}', "$.schema_version"),
        (b"\xff", "$"),
    ],
)
def test_bad_records(data: bytes, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_envelope(data)
    assert caught.value.path == path


def test_bad_aggregate() -> None:
    data = encode_envelope(make()).replace(b'"aggregate":"chat"', b'"aggregate":"room"')
    with pytest.raises(ContractError) as caught:
        decode_envelope(data)
    assert caught.value.path == "$.aggregate"


def test_invalid_utf8_inside_the_body_is_refused() -> None:
    data = encode_envelope(make()).replace(b"ChatClosed", b"Chat\xffClosed")
    with pytest.raises(ContractError, match="UTF-8"):
        decode_envelope(data)


def test_newer_versions_ask_for_an_upgrade() -> None:
    data = encode_envelope(make(schema_version=2))
    with pytest.raises(ContractError, match="upgrade Parley") as caught:
        decode_envelope(data)
    assert caught.value.path == "$.schema_version"


V0_RECORD = (
    b'{"schema_version":0,"event_id":"e-0","provider":"natterly","source":"acme",'
    b'"event_type":"ChatClosed","kind":"chat","key":"chat-1",'
    b'"occurred_at":"2024-01-01T00:00:00Z","received_at":"2024-01-01T00:00:01Z",'
    b'"payload":' + BODY + b"}"
)


def test_v0_records_are_upcast_with_the_body_intact() -> None:
    env = decode_envelope(V0_RECORD)
    assert env.schema_version == 1
    assert env.aggregate == "chat"
    assert bytes(env.body) == BODY


def test_upcast_steps_one_version_at_a_time() -> None:
    calls: list[int] = []

    def step(version: int) -> object:
        def lift(members: Members) -> Members:
            calls.append(version)
            return rename(members, f"f{version}", f"f{version + 1}")

        return lift

    upcasters = {v: step(v) for v in range(3)}
    members = {"schema_version": msgspec.Raw(b"0"), "f0": msgspec.Raw(b"true")}
    lifted = upcast(members, 0, target=3, upcasters=upcasters)  # type: ignore[arg-type]
    assert calls == [0, 1, 2]
    assert set(lifted) == {"schema_version", "f3"}
    assert bytes(lifted["schema_version"]) == b"3"


def test_missing_upcaster_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="no upcaster"):
        upcast({}, -1)


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        ENVELOPE_UPCASTERS[5] = rename  # type: ignore[index]


def test_rename_keeps_order_and_ignores_absent_keys() -> None:
    members = {"a": msgspec.Raw(b"1"), "b": msgspec.Raw(b"2")}
    assert list(rename(members, "a", "z")) == ["z", "b"]
    assert rename(members, "q", "r") is members

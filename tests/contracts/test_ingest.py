"""parse_webhook and natterly_auth_token: the receiver's hot path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ContractError
from contracts.ingest import (
    NATTERLY_EVENT_ID_PREFIX,
    PROVIDERS,
    derive_event_id,
    natterly_auth_token,
    parse_webhook,
)
from contracts.member_cut import strip_member
from tests.kit.goldens import RECEIVED_AT, golden_paths, load

SEED = load("natterly", "chat_initiated_seed.json")
CS_SEED = load("chatshipper", "message_create_contact_chat_seed.json")


def natterly(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def parse(provider: str, body: bytes, **kwargs: object) -> object:
    return parse_webhook(provider, "acme", body, received_at=RECEIVED_AT, **kwargs)  # type: ignore[arg-type]


def test_providers() -> None:
    assert PROVIDERS == ("natterly", "chatshipper", "standard")


def test_unknown_provider() -> None:
    with pytest.raises(ContractError, match="unknown provider") as caught:
        parse("zendesk", b"{}")
    assert caught.value.path == "$"


# --- Natterly ---------------------------------------------------------------------


def test_natterly_seed() -> None:
    env = parse_webhook("natterly", "acme", SEED, received_at=RECEIVED_AT)
    assert env.provider == "natterly"
    assert env.source == "acme"
    assert env.event_type == "ChatInitiated"
    assert (env.aggregate, env.key) == ("chat", "287146e8-68fd-43c5-b79a-911058bc1c9c")
    assert env.occurred_at == datetime(2018, 1, 29, 12, 28, 16, tzinfo=UTC)
    assert env.received_at == RECEIVED_AT
    assert env.event_id.startswith(NATTERLY_EVENT_ID_PREFIX)
    body = bytes(env.body)
    assert b"auth_token" not in body and b"DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4" not in body
    original = json.loads(SEED)
    del original["auth_token"]
    assert json.loads(body) == original
    # Only the member (and the comma before it) went; the rest is byte-identical.
    cut = SEED.index(b',\n    "auth_token"')
    assert body == SEED[:cut] + b"\n}"


def test_auth_token_reader() -> None:
    assert natterly_auth_token(SEED) == "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"
    assert natterly_auth_token(b'{"event":"X"}') is None
    assert natterly_auth_token(b'{"auth_token":null}') is None
    assert natterly_auth_token(b'{"auth\\u005ftoken":"t"}') == "t"
    assert natterly_auth_token(b'{"auth_token":"a","auth_token":"b"}') == "b"  # last wins


@pytest.mark.parametrize(("body", "path"), [(b"[]", "$"), (b"{", "$"), (b'{"auth_token":1}', "$.auth_token")])
def test_auth_token_reader_refuses_bad_bodies(body: bytes, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        natterly_auth_token(body)
    assert caught.value.path == path


def test_event_id_ignores_the_token() -> None:
    one = natterly({"event": "ChatIdle", "timestamp": 5, "payload": {}, "auth_token": "one"})
    two = natterly({"auth_token": "two", "event": "ChatIdle", "timestamp": 5, "payload": {}})
    three = natterly({"event": "ChatIdle", "timestamp": 5, "payload": {}})
    ids = {
        parse_webhook("natterly", "s", body, received_at=RECEIVED_AT).event_id for body in (one, two, three)
    }
    assert len(ids) == 1


@settings(max_examples=100)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_event_id_is_stable_across_tokens(token_a: str, token_b: str) -> None:
    base = SEED.replace(b"DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4", b"%s")
    a = base.replace(b"%s", json.dumps(token_a)[1:-1].encode())
    b = base.replace(b"%s", json.dumps(token_b)[1:-1].encode())
    env_a = parse_webhook("natterly", "s", a, received_at=RECEIVED_AT)
    env_b = parse_webhook("natterly", "s", b, received_at=RECEIVED_AT + timedelta(hours=1))
    assert env_a.event_id == env_b.event_id
    assert bytes(env_a.body) == bytes(env_b.body)


@settings(max_examples=100)
@given(st.integers(1, 2**31), st.integers(1, 2**31))
def test_different_bodies_get_different_ids(ts_a: int, ts_b: int) -> None:
    a = natterly({"event": "ChatIdle", "timestamp": ts_a, "auth_token": "t"})
    b = natterly({"event": "ChatIdle", "timestamp": ts_b, "auth_token": "t"})
    ids = {parse("natterly", body).event_id for body in (a, b)}  # type: ignore[attr-defined]
    assert len(ids) == (1 if ts_a == ts_b else 2)


def test_derived_id_is_a_version_8_uuid() -> None:
    import uuid

    event_id = derive_event_id(b"{}")
    parsed = uuid.UUID(event_id.removeprefix(NATTERLY_EVENT_ID_PREFIX))
    assert parsed.version == 8
    assert parsed.variant == uuid.RFC_4122
    assert derive_event_id(b"{}") == event_id != derive_event_id(b"{ }")


@pytest.mark.parametrize(
    ("payload", "event", "aggregate", "key"),
    [
        ({"chat": {"uuid": "c1"}}, "ChatClosed", "chat", "c1"),
        ({"messages": [{"chat": None}, {"chat": "c2"}]}, "ChatAccepted", "chat", "c2"),
        ({"chat": {"uuid": ""}, "messages": [{"chat": "c3"}]}, "ChatIdle", "chat", "c3"),
        ({"visitor": {"uuid": "v1"}}, "VisitorCreated", "visitor", "v1"),
        ({"session": {"uuid": "s1", "visitor": {"uuid": "v2"}}}, "SessionRegistration", "visitor", "v2"),
        ({"session": {"uuid": "s1"}}, "SessionRegistration", "visitor", "session:s1"),
        ({"session_id": "s2"}, "VisitorCreated", "visitor", "session:s2"),
        ({"chat": {"visitor": {"uuid": "v3"}}}, "VisitorCreated", "visitor", "v3"),
        ({"chat": {"session_id": "s3"}}, "VisitorCreated", "visitor", "session:s3"),
        ({"user": {"uuid": "u1"}, "status": "Visible"}, "UserStatusChanged", "agent", "u1"),
        ({"chat": {"uuid": "c4"}, "user": {"uuid": "u1"}}, "ChatTransferred", "chat", "c4"),
        ({"visitor": {"uuid": "v4"}, "user": {"uuid": "u1"}}, "VisitorBanned", "visitor", "v4"),
        ({"user": {"uuid": "u2"}}, "UserDeleted", "agent", "u2"),
        # A known event without its aggregate's id is kept, under "other".
        ({"visitor": {"uuid": "v5"}}, "ChatClosed", "other", None),
        ({"chat": {"uuid": "c5"}}, "UserStatusChanged", "other", None),
        ({}, "VisitorCreated", "other", None),
        (None, "ChatClosed", "other", None),
        ({"account": {"id": 1}}, "AccountUpdated", "other", None),
    ],
)
def test_natterly_aggregate_rules(
    payload: dict[str, object] | None, event: str, aggregate: str, key: str | None
) -> None:
    body = natterly({"event": event, "timestamp": 1700000000, "payload": payload, "auth_token": "t"})
    env = parse_webhook("natterly", "acme", body, received_at=RECEIVED_AT)
    assert env.aggregate == aggregate
    assert env.key == (key if key is not None else env.event_id)


@pytest.mark.parametrize("timestamp", [None, 0])
def test_natterly_time_falls_back_to_received_at(timestamp: int | None) -> None:
    body = natterly({"event": "ChatIdle", "timestamp": timestamp})
    assert parse_webhook("natterly", "a", body, received_at=RECEIVED_AT).occurred_at == RECEIVED_AT


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"timestamp": 1}', "$"),
        (b'{"event": 1}', "$.event"),
        (b'{"event": ""}', "$.event"),
        (b'{"event": "ChatIdle", "timestamp": "1"}', "$.timestamp"),
        (b'{"event": "ChatIdle", "timestamp": -1}', "$.timestamp"),
        (b'{"event": "ChatIdle", "timestamp": 1e300}', "$.timestamp"),
        (b'{"event": "ChatIdle", "timestamp": 99999999999999999999}', "$.timestamp"),
        (b'{"event": "ChatIdle", "payload": []}', "$.payload"),
        (b'{"event": "ChatIdle", "payload": {"chat": {"uuid": 7}}}', "$.payload.chat.uuid"),
        (b'{"event": "ChatIdle", "payload": {"messages": [{"chat": 1}]}}', "$.payload.messages[0].chat"),
        (b'{"event": "ChatIdle", "auth_token": 12345}', "$.auth_token"),
        # The token last, a plain string (the receiver's textual cut), the rest bad.
        (b'{"event": "ChatIdle", "timestamp": "1", "auth_token": "t"}', "$.timestamp"),
        (b'{"event": "ChatIdle", "payload": [], "auth_token": "t"}', "$.payload"),
        (b'{, "auth_token": "t"}', "$"),
        (b'{"event": "ChatIdle",, "auth_token": "t"}', "$"),
        (b'{"event": "ChatIdle", "x": "\xff", "auth_token": "t"}', "$"),
        (b'{"event": "ChatIdle", "x": "\xff"}', "$"),
        (b'["ChatIdle"]', "$"),
        (b"", "$"),
    ],
)
def test_natterly_bad_bodies(body: bytes, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_webhook("natterly", "a", body, received_at=RECEIVED_AT)
    assert caught.value.path == path


@pytest.mark.parametrize("path", golden_paths("natterly"), ids=lambda path: path.name)
def test_stored_body_is_the_general_cut(path: Path) -> None:
    # Whichever way the receiver cuts the token, the stored bytes (and so the event id)
    # are those of the general member cut.
    body = path.read_bytes().strip()
    env = parse_webhook("natterly", "a", body, received_at=RECEIVED_AT)
    assert bytes(env.body) == strip_member(body, "auth_token")
    assert "auth_token" not in json.loads(bytes(env.body))


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        # An earlier duplicate (plain or escaped key) survives the textual cut: both go.
        (b'{"auth_token":"x","event":"ChatIdle","auth_token":"t"}', b'{"event":"ChatIdle"}'),
        (b'{"auth\\u005ftoken":"x","event":"ChatIdle","auth_token":"t"}', b'{"event":"ChatIdle"}'),
        (b'{"event":"ChatIdle","auth_token":"t\\u0041"}', b'{"event":"ChatIdle"}'),
    ],
)
def test_natterly_token_cut_edge_cases(body: bytes, stored: bytes) -> None:
    env = parse_webhook("natterly", "a", body, received_at=RECEIVED_AT)
    assert bytes(env.body) == stored


def test_surrounding_whitespace_is_dropped() -> None:
    env = parse_webhook("natterly", "a", b'\n {"event":"ChatIdle"} \r\n', received_at=RECEIVED_AT)
    assert bytes(env.body) == b'{"event":"ChatIdle"}'


def test_received_at_is_normalised_to_utc() -> None:
    naive = datetime(2025, 1, 1, 12)
    plus_two = datetime(2025, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    for received in (naive, plus_two):
        env = parse_webhook("natterly", "a", b'{"event":"ChatIdle"}', received_at=received)
        assert env.received_at == datetime(2025, 1, 1, 12, tzinfo=UTC)
        assert env.received_at.tzinfo is UTC


# --- ChatShipper ------------------------------------------------------------------


def test_chatshipper_seed() -> None:
    env = parse_webhook("chatshipper", "shop", CS_SEED, received_at=RECEIVED_AT)
    assert env.event_id == "774ae370-02cc-11e7-ac41-c38ce8763025"
    assert env.event_type == "message.create.contact.chat"
    assert (env.aggregate, env.key) == ("chat", "5c1a96f7abcdb128d0e90e8f")
    assert env.occurred_at == datetime(2018, 12, 19, 19, 9, 1, tzinfo=UTC)
    assert bytes(env.body) == CS_SEED.strip()


def cs(event: str, data: object = None, **extra: object) -> bytes:
    body: dict[str, object] = {"id": "w-1", "event": event, "timestamp": "2024-01-01T00:00:00.5Z", **extra}
    if data is not None:
        body["data"] = data
    return json.dumps(body).encode()


API = "https://api.web1on1.chat/v2"
OLD_API = "https://api.chatshipper.com/v2"


@pytest.mark.parametrize(
    ("body", "aggregate", "key"),
    [
        (cs("message.create.contact.chat", {"conversation": {"id": "c1"}}), "chat", "c1"),
        (cs("message.update", {"message": {"conversation": "c2"}}), "chat", "c2"),
        (cs("message.delete", {"message": {"conversation": {"id": "c3"}}}), "chat", "c3"),
        (cs("message.error", {}), "other", "w-1"),
        (cs("conversation.update", {"conversation": {"id": "c4"}}), "chat", "c4"),
        (cs("conversation.update", activity={"object": {"id": f"{API}/conversations/c5"}}), "chat", "c5"),
        (cs("conversation.update", activity={"object": {"id": f"{OLD_API}/conversations/c6"}}), "chat", "c6"),
        (
            cs("conversation.update", activity={"object": {"id": "https://evil.example/v2/conversations/x"}}),
            "other",
            "w-1",
        ),
        (cs("contact.create", {"contact": {"id": "k1"}}), "visitor", "k1"),
        (cs("contact.update", activity={"object": {"id": f"{API}/contacts/k2"}}), "visitor", "k2"),
        (cs("user.update", {"user": {"id": "u1"}}), "agent", "u1"),
        (cs("user.login", activity={"object": {"id": f"{OLD_API}/users/u2"}}), "agent", "u2"),
        (cs("form.create", {"form": {"id": "f"}, "conversation": {"id": "c7"}}), "chat", "c7"),
        (cs("rating.create", {"contact": {"id": "k3"}}), "visitor", "k3"),
        (cs("service.create", {"service": {"id": "s"}}), "other", "w-1"),
        (cs("widget.snapshot.export"), "other", "w-1"),
    ],
)
def test_chatshipper_aggregate_rules(body: bytes, aggregate: str, key: str) -> None:
    env = parse_webhook("chatshipper", "shop", body, received_at=RECEIVED_AT)
    assert (env.aggregate, env.key) == (aggregate, key)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2018-12-19T19:09:01Z", datetime(2018, 12, 19, 19, 9, 1, tzinfo=UTC)),
        ("2018-12-20T01:46:56.003Z", datetime(2018, 12, 20, 1, 46, 56, 3000, tzinfo=UTC)),
        ("2018-12-20T02:46:56.003+01:00", datetime(2018, 12, 20, 1, 46, 56, 3000, tzinfo=UTC)),
        ("2018-12-20T01:46:56", datetime(2018, 12, 20, 1, 46, 56, tzinfo=UTC)),
    ],
)
def test_chatshipper_timestamps(timestamp: str, expected: datetime) -> None:
    body = json.dumps({"id": "w", "event": "user.login", "timestamp": timestamp}).encode()
    occurred = parse_webhook("chatshipper", "s", body, received_at=RECEIVED_AT).occurred_at
    assert occurred == expected
    assert occurred.tzinfo is UTC


def test_chatshipper_time_falls_back_to_published_then_received() -> None:
    published = json.dumps(
        {"id": "w", "event": "user.login", "activity": {"published": "2020-01-01T00:00:00Z"}}
    ).encode()
    assert parse("chatshipper", published).occurred_at == datetime(2020, 1, 1, tzinfo=UTC)  # type: ignore[attr-defined]
    assert parse("chatshipper", b'{"id":"w","event":"user.login"}').occurred_at == RECEIVED_AT  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"event": "user.login"}', "$"),
        (b'{"id": "", "event": "user.login"}', "$.id"),
        (b'{"id": "w"}', "$"),
        (b'{"id": 5, "event": "user.login"}', "$.id"),
        (b'{"id": "w", "event": "user.login", "timestamp": "yesterday"}', "$.timestamp"),
        (b'{"id": "w", "event": "user.login", "timestamp": 1545246541}', "$.timestamp"),
        (b'{"id": "w", "event": "x", "data": {"conversation": {"id": 1}}}', "$.data.conversation.id"),
        (
            b'{"id": "w", "event": "x", "data": {"message": {"conversation": 1}}}',
            "$.data.message.conversation",
        ),
        (b'{"id": "w", "event": "x", "data": []}', "$.data"),
    ],
)
def test_chatshipper_bad_bodies(body: bytes, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_webhook("chatshipper", "s", body, received_at=RECEIVED_AT)
    assert caught.value.path == path


# --- Standard Webhooks -------------------------------------------------------------


def test_standard_needs_a_webhook_id() -> None:
    with pytest.raises(ContractError, match="webhook-id"):
        parse_webhook("standard", "s", b'{"type": "x"}', received_at=RECEIVED_AT)


@pytest.mark.parametrize(
    ("body", "event_type", "aggregate", "key", "occurred"),
    [
        (b"{}", "unknown", "other", "msg_1", RECEIVED_AT),
        (
            b'{"type": "contact.created", "timestamp": "2022-11-03T20:26:10.344522Z", "data": {"id": 1}}',
            "contact.created",
            "other",
            "msg_1",
            datetime(2022, 11, 3, 20, 26, 10, 344522, tzinfo=UTC),
        ),
        (
            b'{"type": "t", "timestamp": 1700000000, "data": {"chat_id": "c1"}}',
            "t",
            "chat",
            "c1",
            datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        ),
        (b'{"type": "t", "data": {"conversation_id": 42}}', "t", "chat", "42", RECEIVED_AT),
        (b'{"type": "t", "data": {"chat_id": "", "conversation_id": "c2"}}', "t", "chat", "c2", RECEIVED_AT),
    ],
)
def test_standard_bodies(body: bytes, event_type: str, aggregate: str, key: str, occurred: datetime) -> None:
    env = parse_webhook("standard", "s", body, received_at=RECEIVED_AT, webhook_id="msg_1")
    assert env.event_id == "msg_1"
    assert (env.event_type, env.aggregate, env.key, env.occurred_at) == (event_type, aggregate, key, occurred)
    assert bytes(env.body) == body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b"[]", "$"),
        (b'{"type": 1}', "$.type"),
        (b'{"data": []}', "$.data"),
        (b'{"timestamp": true}', "$.timestamp"),
    ],
)
def test_standard_bad_bodies(body: bytes, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_webhook("standard", "s", body, received_at=RECEIVED_AT, webhook_id="m")
    assert caught.value.path == path


def test_envelope_body_is_raw() -> None:
    env = parse_webhook("chatshipper", "s", CS_SEED, received_at=RECEIVED_AT)
    assert isinstance(env.body, msgspec.Raw)

"""Typed Natterly bodies."""

from __future__ import annotations

import json

import pytest

from contracts import natterly as n
from contracts.errors import ContractError
from contracts.natterly_ids import (
    chat_id_of,
    is_session_visitor,
    session_visitor_id_of,
    status_is,
    visitor_id_of,
)
from contracts.timestamps import from_unix_or_none
from tests.kit.goldens import golden_paths, load


def test_seed_decodes_fully() -> None:
    webhook = n.decode_natterly(load("natterly", "chat_initiated_seed.json"))
    assert isinstance(webhook, n.ChatInitiatedWebhook)
    assert webhook.event == "ChatInitiated"
    assert webhook.timestamp == 1517228896
    assert webhook.payload is not None and webhook.payload.chat is not None
    chat = webhook.payload.chat
    assert chat.uuid == "287146e8-68fd-43c5-b79a-911058bc1c9c"
    assert chat.closed_at == 0 and from_unix_or_none(chat.closed_at) is None
    assert chat.ip_address == "2a02:8010:6006:0:9854:480a:c38d:dcd8"
    assert chat.department == n.Department(uuid="3adf89d1-2c22-4c4d-b72f-c274a08ba3cf", name="Sales")
    assert chat.visitor == n.Visitor(name="Anonymous Chicken", avatar_url="", anonymous=True)
    assert chat.site is not None and chat.site.initials == "MS"
    assert chat.visitor_custom_data == {}
    [message] = webhook.payload.messages or []
    assert message.author is not None and message.author.details is not None
    assert message.author.details.anonymous is True
    assert message.posted_by_visitor is True
    assert webhook.chat_id == chat.uuid


EVENT_CLASSES = {
    "ChatInitiated": n.ChatInitiatedWebhook,
    "ChatAccepted": n.ChatAcceptedWebhook,
    "ChatAssigned": n.ChatAssignedWebhook,
    "ChatCompleted": n.ChatCompletedWebhook,
    "ChatClosed": n.ChatClosedWebhook,
    "ChatIgnored": n.ChatIgnoredWebhook,
    "ChatIdle": n.ChatIdleWebhook,
    "ChatTranscriptSent": n.ChatTranscriptSentWebhook,
    "ChatRated": n.ChatRatedWebhook,
    "VisitorCreated": n.VisitorCreatedWebhook,
    "SessionRegistration": n.SessionRegistrationWebhook,
    "UserStatusChanged": n.UserStatusChangedWebhook,
}


def test_twelve_events() -> None:
    assert set(n.NATTERLY_EVENTS) == set(EVENT_CLASSES)
    assert len(n.NATTERLY_EVENTS) == 12


@pytest.mark.parametrize("event", n.NATTERLY_EVENTS)
def test_each_event_decodes_to_its_struct(event: str) -> None:
    webhook = n.decode_natterly(json.dumps({"event": event, "timestamp": 1}).encode())
    assert type(webhook) is EVENT_CLASSES[event]
    assert webhook.event == event


@pytest.mark.parametrize("event", n.NATTERLY_EVENTS)
def test_every_event_has_a_golden(event: str) -> None:
    events = {json.loads(path.read_bytes())["event"] for path in golden_paths("natterly")}
    assert event in events


def test_unknown_events_are_kept() -> None:
    webhook = n.decode_natterly(b'{"event":"ChatTransferred","timestamp":3,"payload":{"x":[1]}}')
    assert webhook == n.UnknownNatterlyWebhook(event="ChatTransferred", timestamp=3, payload={"x": [1]})


def test_documented_decoder_refuses_what_decode_natterly_keeps() -> None:
    documented = 0
    for path in golden_paths("natterly"):
        body = path.read_bytes()
        kept = n.decode_natterly(body)
        if isinstance(kept, n.UnknownNatterlyWebhook):
            with pytest.raises(ContractError, match=r"\$\.event"):
                n.decode_documented_natterly(body)
        else:
            assert n.decode_documented_natterly(body) == kept
            documented += 1
    assert documented >= len(n.NATTERLY_EVENTS)
    with pytest.raises(ContractError, match=r"\$\.event"):
        n.decode_documented_natterly(b'{"event":"ChatTransferred","timestamp":3}')


def test_unassignment_has_no_user() -> None:
    webhook = n.decode_natterly(load("natterly", "chat_assigned_unassigned.json"))
    assert isinstance(webhook, n.ChatAssignedWebhook)
    assert webhook.payload is not None and webhook.payload.chat is not None
    assert webhook.payload.chat.user is None


def test_the_token_is_not_part_of_event_structs() -> None:
    webhook = n.decode_natterly(load("natterly", "chat_initiated_seed.json"))
    assert "DZBHWMV3" not in repr(webhook)


def test_lenient_types() -> None:
    body = {
        "event": "ChatRated",
        "timestamp": 1700000000.5,
        "payload": {
            "chat": {"uuid": "c", "rating": True, "visitor_custom_data": [], "stale": None},
            "unknown": {"deep": [1, 2, 3]},
        },
        "extra": 1,
    }
    webhook = n.decode_natterly(json.dumps(body).encode())
    assert isinstance(webhook, n.ChatRatedWebhook)
    assert webhook.timestamp == 1700000000.5
    assert webhook.payload is not None and webhook.payload.chat is not None
    assert webhook.payload.chat.rating is True
    assert webhook.payload.chat.visitor_custom_data == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"timestamp": 1}', "$"),
        (b'{"event": 3}', "$.event"),
        (b'{"event": ""}', "$.event"),
        (b'{"event": "ChatClosed", "payload": {"chat": {"subject": 5}}}', "$.payload.chat.subject"),
        (b'{"event": "ChatClosed", "payload": {"chat": {"closed_at": -5}}}', "$.payload.chat.closed_at"),
        (b'{"event": "UserStatusChanged", "payload": {"user": []}}', "$.payload.user"),
        (b'{"event": "Unknown", "payload": []}', "$.payload"),
        (b'{"event": "Unknown", "payload": {"n": 1e999}}', "$.payload"),
        (b'{"event": "ChatClosed", "x": "\xc3("}', "$"),
    ],
)
def test_bad_bodies(body: bytes, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        n.decode_natterly(body)
    assert caught.value.path.startswith(path)


@pytest.mark.parametrize(
    ("value", "expected", "result"),
    [
        ("Closed", ("closed",), True),
        ("CLOSED", ("Closed", "Ended"), True),
        (None, ("x",), False),
        ("Idle", ("closed",), False),
    ],
)
def test_status_is(value: str | None, expected: tuple[str, ...], result: bool) -> None:
    assert status_is(value, *expected) is result


def test_user_display_name() -> None:
    assert n.User(name="A B").display_name == "A B"
    assert n.User(first_name="A", last_name="B").display_name == "A B"
    assert n.User(first_name="A").display_name == "A"
    assert n.User().display_name is None


def test_visitor_id_rule() -> None:
    visitor = n.Visitor(uuid="v")
    session = n.Session(uuid="s", visitor=n.Visitor(uuid="sv"))
    chat = n.Chat(visitor=n.Visitor(uuid="cv"), session=n.Session(uuid="cs"), session_id="csid")
    assert visitor_id_of(visitor=visitor, session=session, chat=chat) == "v"
    assert visitor_id_of(session=session, chat=chat) == "sv"
    assert visitor_id_of(session=n.Session(uuid="s"), chat=chat) == "cv"
    assert visitor_id_of(chat=n.Chat(session=n.Session(visitor=n.Visitor(uuid="csv")))) == "csv"
    assert visitor_id_of(session=n.Session(uuid="s"), session_id="x") == "session:s"
    assert visitor_id_of(session_id="x", chat=n.Chat(session_id="y")) == "session:x"
    assert visitor_id_of(chat=n.Chat(session=n.Session(uuid="z"), session_id="y")) == "session:z"
    assert visitor_id_of(chat=n.Chat(session_id="y")) == "session:y"
    assert visitor_id_of(visitor=n.Visitor(uuid=""), session_id="") is None
    assert visitor_id_of() is None


def test_session_visitor_id_rule() -> None:
    """The session id a payload holds, whether or not it also names the visitor's uuid (the
    normaliser then links the two: ``VisitorSeen.alias``)."""
    chat = n.Chat(visitor=n.Visitor(uuid="cv"), session=n.Session(uuid="cs"), session_id="csid")
    assert session_visitor_id_of(chat=chat) == "session:cs"
    assert session_visitor_id_of(session=n.Session(uuid="s", visitor=n.Visitor(uuid="v"))) == "session:s"
    assert session_visitor_id_of(session_id="x", chat=chat) == "session:x"
    assert session_visitor_id_of(chat=n.Chat(visitor=n.Visitor(uuid="cv"))) is None
    assert is_session_visitor("session:s") and not is_session_visitor("cv")


def test_chat_id_rule() -> None:
    assert chat_id_of(n.Chat(uuid="c"), [n.Message(chat="m")]) == "c"
    assert chat_id_of(n.Chat(uuid=""), [n.Message(), n.Message(chat="m")]) == "m"
    assert chat_id_of(None, None) is None

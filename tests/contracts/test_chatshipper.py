"""Typed ChatShipper bodies and the event-name grammar."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import chatshipper as c
from contracts.chatshipper_events import (
    CONVERSATION_TYPES,
    MESSAGE_TYPES,
    MessageChanged,
    MessageCreated,
    ResourceEvent,
    UnrecognisedEvent,
    parse_event_name,
)
from contracts.errors import ContractError
from contracts.ingest import parse_webhook
from contracts.normalise import normalise
from tests.kit.goldens import RECEIVED_AT, golden_paths, load


def test_seed_decodes_fully() -> None:
    webhook = c.decode_chatshipper(load("chatshipper", "message_create_contact_chat_seed.json"))
    assert webhook.id == "774ae370-02cc-11e7-ac41-c38ce8763025"
    assert webhook.timestamp == datetime(2018, 12, 19, 19, 9, 1, tzinfo=UTC)
    assert webhook.organization == "5c138790ec944f05ff5f6d77"
    assert webhook.name == MessageCreated(conversation_type="contact", message_type="chat")
    activity = webhook.activity
    assert activity is not None and activity.context == "https://www.w3.org/ns/activitystreams"
    assert activity.actor is not None and activity.actor.ref == c.ResourceRef(
        collection="users", id="5c1a99e410419f5fb88cb5f2"
    )
    assert activity.target is not None and activity.target.ref == c.ResourceRef(
        collection="messages", id="5c1a974dabcdb128d0e90e93"
    )
    data = webhook.data
    assert data is not None and data.conversation is not None and data.message is not None
    assert data.conversation.created_at == datetime(2018, 12, 19, 19, 5, 27, 114000, tzinfo=UTC)
    assert data.message.conversation_id == "5c1a96f7abcdb128d0e90e8f"
    assert data.message.content_type == "text/plain"
    [participant] = data.conversation.participants or []
    assert participant.accepted is True and participant.user_id == "5c1a99e410419f5fb88cb5f2"
    assert data.links is not None and data.links["contact"].endswith("5c1a96f7abcdb128d0e90e8e")  # type: ignore[union-attr]


def test_populated_references() -> None:
    webhook = c.decode_chatshipper(load("chatshipper", "edge_populated_refs.json"))
    assert webhook.data is not None and webhook.data.message is not None
    message = webhook.data.message
    assert isinstance(message.conversation, c.Conversation)
    assert message.conversation_id == message.conversation.id
    assert isinstance(message.user, c.User) and message.user.display_name == "Jenny"
    assert webhook.data.conversation is not None
    assert isinstance(webhook.data.conversation.contact, c.Contact)
    assert c.ref_id(webhook.data.conversation.contact) == "5d0e1f2a3b4c5d6e7f809a1b"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.chatshipper.com/v2/users/5c1a", c.ResourceRef(collection="users", id="5c1a")),
        ("https://api.web1on1.chat/v2/messages/abc", c.ResourceRef(collection="messages", id="abc")),
        ("https://API.Web1on1.chat/v2/Contacts/k1?x=1", c.ResourceRef(collection="contacts", id="k1")),
        ("https://api.web1on1.chat/conversations/c1", c.ResourceRef(collection="conversations", id="c1")),
        ("http://api.chatshipper.com/v2/users/u/", c.ResourceRef(collection="users", id="u")),
        ("https://api.example.com/v2/users/u", None),
        ("https://api.chatshipper.com.evil.example/v2/users/u", None),
        ("not a url", None),
        ("", None),
        (None, None),
    ],
)
def test_resource_urls(url: str | None, expected: c.ResourceRef | None) -> None:
    assert c.parse_resource_url(url) == expected


def test_both_hosts() -> None:
    assert c.API_HOSTS == ("api.chatshipper.com", "api.web1on1.chat")


ALL_MESSAGE_CREATES = [
    f"message.create.{ct}.{mt}" for ct, mt in itertools.product(CONVERSATION_TYPES, MESSAGE_TYPES)
]


def test_grammar_sizes() -> None:
    assert len(CONVERSATION_TYPES) == 4
    assert len(MESSAGE_TYPES) == 12
    assert len(ALL_MESSAGE_CREATES) == 48


@pytest.mark.parametrize("event", ALL_MESSAGE_CREATES)
def test_every_message_create_parses_and_normalises(event: str) -> None:
    _, _, conversation_type, message_type = event.split(".")
    name = parse_event_name(event)
    assert name == MessageCreated(conversation_type=conversation_type, message_type=message_type)
    assert isinstance(name, MessageCreated) and name.documented
    body = json.dumps(
        {
            "id": f"w-{event}",
            "event": event,
            "timestamp": "2024-01-01T00:00:00Z",
            "data": {
                "conversation": {"id": "c1", "type": conversation_type, "status": "active"},
                "message": {"id": "m1", "conversation": "c1", "type": message_type, "text": "hi"},
            },
        }
    ).encode()
    env = parse_webhook("chatshipper", "s", body, received_at=RECEIVED_AT)
    assert (env.aggregate, env.key) == ("chat", "c1")
    kinds = [type(event).__name__ for event in normalise(env)]
    assert kinds[:2] == ["MessagePosted", "ChatUpdated"]


@pytest.mark.parametrize("message_type", MESSAGE_TYPES)
def test_every_message_type_has_a_golden(message_type: str) -> None:
    events = {json.loads(path.read_bytes())["event"] for path in golden_paths("chatshipper")}
    assert any(event.startswith("message.create.") and event.endswith(f".{message_type}") for event in events)


@pytest.mark.parametrize("conversation_type", CONVERSATION_TYPES)
def test_every_conversation_type_has_a_golden(conversation_type: str) -> None:
    events = {json.loads(path.read_bytes())["event"] for path in golden_paths("chatshipper")}
    assert any(event.startswith(f"message.create.{conversation_type}.") for event in events)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("message.update", MessageChanged(action="update")),
        ("message.delete", MessageChanged(action="delete")),
        ("message.error", MessageChanged(action="error")),
        ("message.create", MessageCreated()),
        ("message.create.contact", MessageCreated(conversation_type="contact")),
        (
            "message.create.contact.chat.contact",
            MessageCreated(conversation_type="contact", message_type="chat", role="contact"),
        ),
        ("message.create.new.kind", MessageCreated(conversation_type="new", message_type="kind")),
        ("conversation.message", MessageCreated()),
        ("conversation.create", ResourceEvent(resource="conversation", action="create")),
        ("conversation.update", ResourceEvent(resource="conversation", action="update")),
        ("contact.delete", ResourceEvent(resource="contact", action="delete")),
        ("user.login", ResourceEvent(resource="user", action="login")),
        ("service.error", ResourceEvent(resource="service", action="error")),
        ("message.archive", UnrecognisedEvent(name="message.archive")),
        ("message.create.a.b.c.d", UnrecognisedEvent(name="message.create.a.b.c.d")),
        ("message", UnrecognisedEvent(name="message")),
        ("widget.snapshot.export", UnrecognisedEvent(name="widget.snapshot.export")),
        ("user..login", UnrecognisedEvent(name="user..login")),
        ("ping", UnrecognisedEvent(name="ping")),
        ("", UnrecognisedEvent(name="")),
    ],
)
def test_grammar(event: str, expected: object) -> None:
    assert parse_event_name(event) == expected


def test_undocumented_types_are_flagged() -> None:
    name = parse_event_name("message.create.new.kind")
    assert isinstance(name, MessageCreated) and not name.documented


@given(st.text(max_size=60))
def test_grammar_never_raises(event: str) -> None:
    parse_event_name(event)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"event": "x"}', "$"),
        (b'{"id": "w", "event": ""}', "$.event"),
        (b'{"id": "w", "event": "x", "activity": {"@context": 1}}', "$.activity.@context"),
        (
            b'{"id": "w", "event": "x", "data": {"message": {"createdAt": "nope"}}}',
            "$.data.message.createdAt",
        ),
        (
            b'{"id": "w", "event": "x", "data": {"conversation": {"participants": {}}}}',
            "$.data.conversation.participants",
        ),
        (b'{"id": "w", "event": "x", "data": {"links": {"a": 1}}}', "$.data.links"),
    ],
)
def test_bad_bodies(body: bytes, path: str) -> None:
    with pytest.raises(ContractError) as caught:
        c.decode_chatshipper(body)
    assert caught.value.path.startswith(path)

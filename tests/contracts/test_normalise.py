"""normalise: envelope → domain events, for every golden and then some."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from contracts import domain as d
from contracts.envelope import Envelope
from contracts.ingest import parse_webhook
from contracts.normalise import normalise, normalise_decoded
from contracts.origin import MAX_CLOCK_SKEW
from tests.kit.goldens import RECEIVED_AT, all_goldens, golden_id, load

# Per golden: the (kind, event-id suffix) of each event, in order.
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "natterly/chat_accepted.json": [
        ("ChatAccepted", ""),
        ("ChatUpdated", "#chat"),
        ("MessagePosted", "#msg:a1b2c3d4-0003-4e5f-8a9b-0c1d2e3f4a5b"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/chat_assigned.json": [
        ("ChatAssigned", ""),
        ("ChatUpdated", "#chat"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/chat_assigned_unassigned.json": [
        ("ChatAssigned", ""),
        ("ChatUpdated", "#chat"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/chat_closed.json": [("ChatClosed", ""), ("ChatUpdated", "#chat"), ("VisitorSeen", "#visitor")],
    "natterly/chat_completed.json": [
        ("ChatCompleted", ""),
        ("ChatUpdated", "#chat"),
        ("MessagePosted", "#msg:a1b2c3d4-0004-4e5f-8a9b-0c1d2e3f4a5b"),
        ("MessagePosted", "#msg:a1b2c3d4-0005-4e5f-8a9b-0c1d2e3f4a5b"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/chat_idle.json": [("ChatIdle", ""), ("ChatUpdated", "#chat"), ("VisitorSeen", "#visitor")],
    "natterly/chat_ignored.json": [("ChatIgnored", ""), ("ChatUpdated", "#chat")],
    "natterly/chat_initiated_identified_visitor.json": [
        ("ChatStarted", ""),
        ("ChatUpdated", "#chat"),
        ("MessagePosted", "#msg:a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b"),
        ("MessagePosted", "#msg:a1b2c3d4-0002-4e5f-8a9b-0c1d2e3f4a5b"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/chat_initiated_seed.json": [
        ("ChatStarted", ""),
        ("ChatUpdated", "#chat"),
        ("MessagePosted", "#msg:26d070d6-97e6-4c2c-afea-e44092bf9dbf"),
    ],
    "natterly/chat_rated.json": [("ChatRated", ""), ("ChatUpdated", "#chat"), ("VisitorSeen", "#visitor")],
    "natterly/chat_rated_numeric.json": [
        ("ChatRated", ""),
        ("ChatUpdated", "#chat"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/chat_transcript_sent.json": [
        ("TranscriptSent", ""),
        ("ChatUpdated", "#chat"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/edge_escaped_token_key.json": [("ChatIdle", ""), ("ChatUpdated", "#chat")],
    "natterly/edge_float_timestamp.json": [("ChatClosed", ""), ("ChatUpdated", "#chat")],
    "natterly/edge_ipv6_mapped.json": [
        ("ChatAccepted", ""),
        ("ChatUpdated", "#chat"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/edge_large_message.json": [
        ("ChatCompleted", ""),
        ("ChatUpdated", "#chat"),
        ("MessagePosted", "#msg:c3d4e5f6-0001-4a7b-8c9d-0e1f2a3b4c5d"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/edge_missing_optional_objects.json": [("ChatClosed", ""), ("ChatUpdated", "#chat")],
    "natterly/edge_no_payload.json": [],
    "natterly/edge_no_timestamp.json": [("ChatIdle", ""), ("ChatUpdated", "#chat")],
    "natterly/edge_nulls_everywhere.json": [("ChatStarted", ""), ("ChatUpdated", "#chat")],
    "natterly/edge_unicode_emoji.json": [
        ("ChatStarted", ""),
        ("ChatUpdated", "#chat"),
        ("MessagePosted", "#msg:b2c3d4e5-0001-4f6a-8b7c-9d0e1f2a3b4c"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/edge_unknown_event_chat.json": [],
    "natterly/edge_unknown_event_no_ids.json": [],
    "natterly/edge_unknown_keys.json": [
        ("TranscriptSent", ""),
        ("ChatUpdated", "#chat"),
        ("MessagePosted", "#msg:d4e5f6a7-0001-4b8c-9d0e-1f2a3b4c5d6e"),
        ("VisitorSeen", "#visitor"),
    ],
    "natterly/session_registration.json": [("VisitorSeen", "")],
    "natterly/session_registration_anonymous.json": [("VisitorSeen", "")],
    "natterly/user_status_changed_invisible.json": [("AgentStatusChanged", "")],
    "natterly/user_status_changed_offline.json": [("AgentStatusChanged", "")],
    "natterly/user_status_changed_visible.json": [("AgentStatusChanged", "")],
    "natterly/visitor_created.json": [("VisitorSeen", "")],
    "chatshipper/botinstance_update.json": [],
    "chatshipper/contact_create.json": [("VisitorSeen", "")],
    "chatshipper/contact_update.json": [("VisitorSeen", "")],
    "chatshipper/conversation_create.json": [
        ("ChatStarted", ""),
        ("ChatUpdated", "#chat"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/conversation_delete.json": [],
    "chatshipper/conversation_message_legacy.json": [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatStarted", "#started"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/conversation_update_active.json": [
        ("ChatUpdated", ""),
        ("ChatAccepted", "#accepted"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/conversation_update_closed.json": [
        ("ChatUpdated", ""),
        ("ChatClosed", "#closed"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/edge_large_message.json": [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
    ],
    "chatshipper/edge_missing_data.json": [],
    "chatshipper/edge_nulls.json": [("MessagePosted", ""), ("ChatUpdated", "#chat")],
    "chatshipper/edge_populated_refs.json": [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/edge_timestamp_variants.json": [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/edge_unicode_emoji.json": [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/edge_unknown_event.json": [],
    "chatshipper/edge_unknown_keys.json": [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/form_create_in_conversation.json": [],
    "chatshipper/message_create_contact_chat_seed.json": [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
        ("VisitorSeen", "#visitor"),
    ],
    "chatshipper/message_delete.json": [("MessageDeleted", "")],
    "chatshipper/message_error.json": [],
    "chatshipper/message_update.json": [("MessageEdited", "")],
    "chatshipper/service_create.json": [],
    "chatshipper/user_create.json": [],
    "chatshipper/user_login.json": [],
    "chatshipper/user_update_offline.json": [("AgentStatusChanged", "")],
    "chatshipper/user_update_status.json": [("AgentStatusChanged", "")],
}
for _name in (
    "contact_card",
    "contact_postback",
    "contact_form",
    "contact_field",
):
    EXPECTED[f"chatshipper/message_create_{_name}.json"] = [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
        ("VisitorSeen", "#visitor"),
    ]
for _name in (
    "bot_command",
    "bot_results",
    "agent_mention",
    "agent_tag",
    "agent_search",
    "system_report",
    "system_status",
):
    EXPECTED[f"chatshipper/message_create_{_name}.json"] = [
        ("MessagePosted", ""),
        ("ChatUpdated", "#chat"),
        ("ChatAccepted", "#accepted"),
    ]

DOMAIN_EVENTS = msgspec.json.Decoder(list[d.DomainEvent])
ENCODER = msgspec.json.Encoder()


def envelope(provider: str, name: str) -> Envelope:
    return parse_webhook(provider, "acme", load(provider, name), received_at=RECEIVED_AT)


def test_every_golden_has_an_expectation() -> None:
    assert {golden_id(item) for item in all_goldens()} == set(EXPECTED)


@pytest.mark.parametrize("item", all_goldens(), ids=golden_id)
def test_golden_events(item: tuple[str, Path]) -> None:
    provider, path = item
    env = parse_webhook(provider, "acme", path.read_bytes(), received_at=RECEIVED_AT)
    events = normalise(env)
    got = [(type(event).__name__, event.event_id.removeprefix(env.event_id)) for event in events]
    assert got == EXPECTED[golden_id(item)]
    for event in events:
        assert event.event_id.startswith(env.event_id)
        assert (event.provider, event.source, event.received_at) == (provider, "acme", env.received_at)
        # ChatShipper's events are timed by their resource (updatedAt, createdAt), which is
        # never later than the receipt plus the clock skew allowed; Natterly's by the webhook.
        if provider == "natterly":
            assert event.occurred_at == env.occurred_at
        else:
            assert event.occurred_at <= env.received_at + MAX_CLOCK_SKEW
    assert len({event.event_id for event in events}) == len(events)
    # Same envelope, same events: normalising is deterministic.
    assert normalise(env) == events
    # The events survive the JSON round trip as the tagged union.
    assert DOMAIN_EVENTS.decode(ENCODER.encode(events)) == events


@pytest.mark.parametrize("item", all_goldens(), ids=golden_id)
def test_events_agree_with_the_record_key(item: tuple[str, Path]) -> None:
    provider, path = item
    env = parse_webhook(provider, "acme", path.read_bytes(), received_at=RECEIVED_AT)
    events = normalise(env)
    if not events:
        return
    primary = events[0]
    if env.aggregate == "chat":
        assert all(
            getattr(event, "chat_id", env.key) == env.key
            for event in events
            if not isinstance(event, d.VisitorSeen)
        )
    elif env.aggregate == "visitor":
        assert isinstance(primary, d.VisitorSeen) and primary.visitor_id == env.key
    elif env.aggregate == "agent":
        assert isinstance(primary, d.AgentStatusChanged) and primary.agent_id == env.key


def test_seed_details() -> None:
    started, snapshot, message = normalise(envelope("natterly", "chat_initiated_seed.json"))
    assert isinstance(started, d.ChatStarted)
    assert started.initiated_at == datetime(2018, 1, 29, 12, 28, 16, tzinfo=UTC)
    assert isinstance(snapshot, d.ChatUpdated)
    assert snapshot.subject == "test"
    assert snapshot.department == d.DepartmentRef(id="3adf89d1-2c22-4c4d-b72f-c274a08ba3cf", name="Sales")
    assert snapshot.site == d.SiteRef(id="91d068f1-7452-4391-9e06-32e151f76f4f", name="My Site")
    assert snapshot.visitor == d.VisitorRef(id=None, name="Anonymous Chicken", anonymous=True)
    assert snapshot.location == d.Location(country="United Kingdom", country_code="GB", city=None)
    assert (snapshot.browser, snapshot.platform, snapshot.provider_status) == (
        "Chrome",
        "Macintosh",
        "Initiated",
    )
    assert isinstance(message, d.MessagePosted)
    assert message.text == "test"
    assert message.author == d.Author(role="visitor", name="Anonymous Chicken")
    assert message.internal is False


def test_natterly_agents_and_statuses() -> None:
    accepted = normalise(envelope("natterly", "chat_accepted.json"))[0]
    assert isinstance(accepted, d.ChatAccepted)
    assert accepted.agent == d.AgentRef(id="6f3b1c2d-8e4a-4b7f-a9d0-1c2e3f4a5b6c", name="Alice Baker")
    unassigned = normalise(envelope("natterly", "chat_assigned_unassigned.json"))[0]
    assert isinstance(unassigned, d.ChatAssigned) and unassigned.agent is None
    system_line = normalise(envelope("natterly", "chat_accepted.json"))[2]
    assert isinstance(system_line, d.MessagePosted) and system_line.author.role == "system"
    statuses = {
        name: normalise(envelope("natterly", name))[0]
        for name in (
            "user_status_changed_visible.json",
            "user_status_changed_offline.json",
            "user_status_changed_invisible.json",
        )
    }
    assert [getattr(event, "status", None) for event in statuses.values()] == [
        "online",
        "offline",
        "invisible",
    ]


def test_natterly_closed_rated_visitor() -> None:
    closed = normalise(envelope("natterly", "chat_closed.json"))[0]
    assert isinstance(closed, d.ChatClosed)
    assert closed.closed_at == datetime(2023, 11, 14, 22, 29, 20, tzinfo=UTC)
    rated = normalise(envelope("natterly", "chat_rated.json"))[0]
    assert isinstance(rated, d.ChatRated) and rated.rating == "Good"
    numeric = normalise(envelope("natterly", "chat_rated_numeric.json"))[0]
    assert isinstance(numeric, d.ChatRated) and numeric.rating == 5
    [seen] = normalise(envelope("natterly", "session_registration_anonymous.json"))
    assert isinstance(seen, d.VisitorSeen)
    assert seen.visitor_id == "session:1b2c3d4e-5f60-4718-89ab-cdef01234567"
    assert (seen.name, seen.anonymous) == ("Anonymous Otter", True)


def test_chatshipper_details() -> None:
    message, snapshot, accepted, seen = normalise(
        envelope("chatshipper", "message_create_contact_chat_seed.json")
    )
    assert isinstance(message, d.MessagePosted)
    assert (message.chat_id, message.message_id) == ("5c1a96f7abcdb128d0e90e8f", "5c1a974dabcdb128d0e90e93")
    # The seed names its author by id only (message.user): the fold may know the name.
    assert message.author == d.Author(role="agent", name=None, id="5c1a99e410419f5fb88cb5f2")
    assert message.message_type == "chat" and message.internal is False
    assert isinstance(snapshot, d.ChatUpdated)
    assert snapshot.site == d.SiteRef(id="5c138790ec944f05ff5f6d77")
    assert snapshot.visitor == d.VisitorRef(id="5c1a96f7abcdb128d0e90e8e")
    assert isinstance(accepted, d.ChatAccepted)
    assert accepted.agent == d.AgentRef(id="5c1a99e410419f5fb88cb5f2")
    assert isinstance(seen, d.VisitorSeen) and seen.chat_id == "5c1a96f7abcdb128d0e90e8f"

    backchannel = normalise(envelope("chatshipper", "edge_populated_refs.json"))[0]
    assert isinstance(backchannel, d.MessagePosted) and backchannel.internal is True
    assert backchannel.author.role == "agent" and backchannel.author.name == "Jenny"
    command = normalise(envelope("chatshipper", "message_create_bot_command.json"))[0]
    assert isinstance(command, d.MessagePosted) and command.internal and command.author.role == "bot"

    edited = normalise(envelope("chatshipper", "message_update.json"))[0]
    assert isinstance(edited, d.MessageEdited)
    assert edited.edited_at == datetime(2024, 3, 11, 9, 20, 11, 500000, tzinfo=UTC)
    [agent] = normalise(envelope("chatshipper", "user_update_offline.json"))
    assert isinstance(agent, d.AgentStatusChanged) and agent.status == "offline"
    accepted = normalise(envelope("chatshipper", "conversation_update_active.json"))[1]
    assert isinstance(accepted, d.ChatAccepted)
    assert accepted.agent == d.AgentRef(id="5c1a99e410419f5fb88cb5f2", name="Jenny")
    [contact] = normalise(envelope("chatshipper", "contact_update.json"))
    assert isinstance(contact, d.VisitorSeen)
    assert (contact.name, contact.email) == ("Maarten de Vries", "m.devries@example.nl")


def test_snapshots_name_the_chats_agent() -> None:
    # Natterly: chat.user, in every chat webhook's snapshot (here a ChatClosed, which names
    # no agent in its own event).
    closed, snapshot, *_ = normalise(envelope("natterly", "chat_closed.json"))
    assert isinstance(closed, d.ChatClosed) and isinstance(snapshot, d.ChatUpdated)
    assert snapshot.agent == d.AgentRef(id="6f3b1c2d-8e4a-4b7f-a9d0-1c2e3f4a5b6c", name="Alice Baker")
    # An unassigned chat's snapshot names nobody: "not said", the ChatAssigned clears.
    assigned, snapshot, *_ = normalise(envelope("natterly", "chat_assigned_unassigned.json"))
    assert isinstance(assigned, d.ChatAssigned) and assigned.agent is None
    assert isinstance(snapshot, d.ChatUpdated) and snapshot.agent is None
    # ChatShipper: the accepted agent participant, as in the ChatAccepted beside it.
    snapshot, accepted = normalise(envelope("chatshipper", "conversation_update_active.json"))[:2]
    assert isinstance(snapshot, d.ChatUpdated) and isinstance(accepted, d.ChatAccepted)
    assert snapshot.agent == accepted.agent == d.AgentRef(id="5c1a99e410419f5fb88cb5f2", name="Jenny")
    # A closed conversation has no accepted agent: its snapshot names nobody.
    snapshot = normalise(envelope("chatshipper", "conversation_update_closed.json"))[0]
    assert isinstance(snapshot, d.ChatUpdated) and snapshot.agent is None


def test_standard_bodies_have_no_domain_meaning() -> None:
    env = parse_webhook("standard", "s", b'{"type": "chat.started"}', received_at=RECEIVED_AT, webhook_id="m")
    assert normalise(env) == []


def test_bodies_that_fail_full_decoding_yield_what_the_rest_means() -> None:
    # The receiver reads only ids; a subject of the wrong type surfaces here: it is dropped
    # (and reported), the rest of the body still closes the chat.
    body = json.dumps({"event": "ChatClosed", "payload": {"chat": {"uuid": "c", "subject": 5}}}).encode()
    env = parse_webhook("natterly", "s", body, received_at=RECEIVED_AT)
    assert env.aggregate == "chat"
    dropped: list[str] = []
    events = normalise_decoded(env, None, dropped)
    assert [type(e).__name__ for e in events] == ["ChatClosed", "ChatUpdated"]
    assert dropped == ["payload.chat.subject"]


def test_unknown_provider_envelopes_yield_nothing() -> None:
    env = msgspec.structs.replace(envelope("natterly", "chat_closed.json"), provider="livechat")
    assert normalise(env) == []


def test_duplicate_message_ids_yield_one_event() -> None:
    message = {"uuid": "m1", "chat": "c", "text": "hi", "created_at": 5}
    body = json.dumps(
        {
            "event": "ChatInitiated",
            "payload": {"chat": {"uuid": "c"}, "messages": [message, message, {"text": "no id"}]},
        }
    ).encode()
    kinds = [
        type(e).__name__ for e in normalise(parse_webhook("natterly", "s", body, received_at=RECEIVED_AT))
    ]
    assert kinds == ["ChatStarted", "ChatUpdated", "MessagePosted"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Online", "online"),
        ("VISIBLE", "online"),
        ("visible ", "online"),
        ("Offline", "offline"),
        ("invisible", "invisible"),
        ("Invisible", "invisible"),
        ("away", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_agent_status(value: str | None, expected: str | None) -> None:
    assert d.parse_agent_status(value) == expected

"""Conversation truth (issue 15): provider bodies written from the providers' documents,
through the receiver's parser, the normaliser and the fold, in every delivery order that
Kafka could hand them over, each webhook stamped with when it was received and its offset.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import domain as d
from contracts.envelope import Envelope
from contracts.ingest import parse_webhook
from contracts.normalise import normalise_decoded
from contracts.state import ChatState, MessageState, VisitorState
from projector.states import AggregateRef, FoldState, message_ref
from projector.views import to_view
from tests.kit.fold_events import fold

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CHAT = "5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"
CONV = "65f0c0ffee0000000000c0de"


def received(provider: str, body: dict[str, Any], seconds: float) -> Envelope:
    return parse_webhook(provider, "acme", json.dumps(body).encode(),
                         received_at=T0 + timedelta(seconds=seconds))


def events_of(log: list[Envelope]) -> list[d.DomainEvent]:
    """The log's events, each stamped with its record's offset (its place in ``log``)."""
    return [event for offset, env in enumerate(log) for event in normalise_decoded(env, offset)]


def every_fold(log: list[Envelope]) -> list[dict[AggregateRef, FoldState]]:
    """The fold of the log's events in every order of its webhooks (and each reversed)."""
    per_webhook = [normalise_decoded(env, offset) for offset, env in enumerate(log)]
    return [fold([e for group in order for e in group]) for order in itertools.permutations(per_webhook)]


def chat(states: dict[AggregateRef, FoldState], chat_id: str) -> ChatState:
    view = to_view(AggregateRef("chat", chat_id), states[AggregateRef("chat", chat_id)])
    assert isinstance(view, ChatState)
    return view


# ---------------------------------------------------------------------------- Natterly

def natterly(event: str, timestamp: int, **chat: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"chat": {"uuid": CHAT, "status": "Accepted", "closed_at": 0, **chat}}
    if "user" in chat:
        payload["user"] = chat["user"]
    return {"event": event, "timestamp": timestamp, "payload": payload}


def test_natterly_unassign_then_assign_in_one_second_ends_assigned_in_every_order() -> None:
    """Whole-second times tie; the assignment received later wins, however the events are
    folded (before: a hash of the event id decided, and half the chats ended unassigned)."""
    ann = {"uuid": "u-ann", "name": "Ann"}
    bob = {"uuid": "u-bob", "name": "Bob"}
    log = [
        received("natterly", natterly("ChatAccepted", 1700000100, user=ann), 1),
        received("natterly", natterly("ChatAssigned", 1700000200, user=None), 2.000),
        received("natterly", natterly("ChatAssigned", 1700000200, user=bob), 2.001),
    ]
    for states in every_fold(log):
        assert chat(states, CHAT).agent == d.AgentRef(id="u-bob", name="Bob")
    # Delivered the other way round (assign, then unassign), the unassignment wins.
    log[1], log[2] = (received("natterly", natterly("ChatAssigned", 1700000200, user=bob), 2.000),
                      received("natterly", natterly("ChatAssigned", 1700000200, user=None), 2.001))
    for states in every_fold(log):
        assert chat(states, CHAT).agent is None


def test_natterly_rating_and_closing_time_after_close_are_folded() -> None:
    log = [
        received("natterly", natterly("ChatAccepted", 1700000100), 1),
        received("natterly", natterly("ChatClosed", 1700000300, status="Closed"), 2),
        received("natterly", natterly("ChatRated", 1700000360, status="Closed", rating=5,
                                      closed_at=1700000290), 3),
    ]
    for states in every_fold(log):
        view = chat(states, CHAT)
        assert (view.status, view.rating, view.provider_status) == ("closed", 5, "Closed")
        assert view.closed_at == datetime.fromtimestamp(1700000290, UTC)


def test_natterly_completed_is_not_closed_and_idle_ends_when_active_again() -> None:
    log = [
        received("natterly", natterly("ChatAccepted", 1700000100), 1),
        received("natterly", natterly("ChatIdle", 1700000200, status="Idle"), 2),
        received("natterly", natterly("ChatCompleted", 1700000300, status="Active"), 3),
    ]
    for states in every_fold(log):
        view = chat(states, CHAT)
        assert (view.status, view.completed, view.closed_at) == ("active", True, None)


def test_natterly_visitor_identified_mid_chat_is_never_erased_by_omission() -> None:
    anonymous = {"uuid": "v-1", "name": "Anonymous Chicken", "anonymous": True}
    log = [
        received("natterly", natterly("ChatInitiated", 1700000000, visitor=anonymous), 1),
        received("natterly", natterly("ChatAccepted", 1700000100,
                                      visitor={"uuid": "v-1", "name": "Ann", "anonymous": False}), 2),
        # A later webhook describing the visitor without any id.
        received("natterly", natterly("ChatTranscriptSent", 1700000200,
                                      visitor={"name": "Ann Smith"}), 3),
    ]
    for states in every_fold(log):
        assert chat(states, CHAT).visitor == d.VisitorRef(id="v-1", name="Ann Smith", anonymous=False)


def test_natterly_page_views_show_on_the_visitor_with_their_chats() -> None:
    def registration(n: int) -> dict[str, Any]:
        return {"event": "SessionRegistration", "timestamp": 1700000000 + n,
                "payload": {"session": {"uuid": "s-1", "page_url": f"https://shop.example/{n}",
                                        "page_title": f"Page {n}", "visitor": {"uuid": "v-1"},
                                        "active_chat_id": CHAT}}}
    log = [received("natterly", registration(n), n) for n in (3, 1, 2)]
    for states in every_fold(log):
        view = to_view(AggregateRef("visitor", "v-1"), states[AggregateRef("visitor", "v-1")])
        assert isinstance(view, VisitorState)
        assert [(p.url, p.title) for p in view.pages] == [
            (f"https://shop.example/{n}", f"Page {n}") for n in (1, 2, 3)]
        assert view.chats == (CHAT,)


# ---------------------------------------------------------------------------- ChatShipper

def conversation(event_id: str, status: str, updated: str, **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "event": "conversation.update", "timestamp": extra.pop("sent", updated),
            "data": {"conversation": {"id": CONV, "organization": "org-1", "type": "contact",
                                      "status": status, "updatedAt": updated, **extra}}}


def test_chatshipper_retry_of_an_older_update_85_minutes_late_stays_closed() -> None:
    """ChatShipper retries for up to 24 h, posting under a new webhook id: the retried
    ``active`` update was *sent* after the close, but its conversation changed before it."""
    log = [
        received("chatshipper", conversation("w-1", "active", "2026-03-01T09:00:00Z"), 0),
        received("chatshipper", conversation("w-2", "closed", "2026-03-01T09:10:00Z"), 600),
        received("chatshipper", conversation("w-3", "active", "2026-03-01T09:00:00Z",
                                             sent="2026-03-01T10:35:00Z"), 95 * 60),
    ]
    for states in every_fold(log):
        view = chat(states, CONV)
        assert (view.status, view.provider_status, view.type) == ("closed", "closed", "contact")


def test_chatshipper_transfer_moves_the_agent_to_the_active_participant() -> None:
    participants = [
        {"user": "u-ann", "role": "agent", "accepted": True, "active": False},
        {"user": "u-bob", "role": "agent", "accepted": True, "active": True},
    ]
    log = [received("chatshipper", conversation("w-1", "active", "2026-03-01T09:00:00Z",
                                                 participants=participants), 0)]
    assert chat(fold(events_of(log)), CONV).agent == d.AgentRef(id="u-bob")


def test_chatshipper_note_stays_internal_through_an_edit() -> None:
    message = {"id": "m-1", "conversation": CONV, "type": "chat", "role": "agent",
               "text": "customer is rude", "isBackchannel": True,
               "createdAt": "2026-03-01T09:01:00Z", "updatedAt": "2026-03-01T09:01:00Z"}
    edited = {**message, "text": "customer is very rude", "updatedAt": "2026-03-01T09:02:00Z"}
    del edited["isBackchannel"]  # message.update need not repeat the flag
    public = {"id": "m-2", "conversation": CONV, "type": "chat", "role": "contact", "text": "hi",
              "createdAt": "2026-03-01T09:00:30Z"}
    log = [
        received("chatshipper", {"id": "w-1", "event": "message.create.contact.chat",
                                 "timestamp": "2026-03-01T09:00:30Z",
                                 "data": {"conversation": {"id": CONV}, "message": public}}, 30),
        received("chatshipper", {"id": "w-2", "event": "message.create.contact.chat",
                                 "timestamp": "2026-03-01T09:01:00Z",
                                 "data": {"conversation": {"id": CONV}, "message": message}}, 60),
        received("chatshipper", {"id": "w-3", "event": "message.update",
                                 "timestamp": "2026-03-01T09:02:00Z",
                                 "data": {"conversation": {"id": CONV}, "message": edited}}, 120),
    ]
    for states in every_fold(log):
        view = chat(states, CONV)
        assert (view.message_count, view.internal_count) == (1, 1)
        note = to_view(message_ref(CONV, "m-1"), states[message_ref(CONV, "m-1")])
        assert isinstance(note, MessageState)
        assert (note.internal, note.message_type, note.text) == (True, "chat", "customer is very rude")


def test_an_impossible_body_time_falls_back_to_the_receipt() -> None:
    log = [received("chatshipper", conversation("w-1", "active", "2999-01-01T00:00:00Z"), 5)]
    (event, *_) = events_of(log)
    assert event.occurred_at == log[0].received_at  # the envelope said 2999 too

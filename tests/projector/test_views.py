"""Views (the JSON the API serves) and rows (what stores index) of fold states."""

from __future__ import annotations

import msgspec

from contracts import domain as d
from projector.states import AggregateRef, ChatFold, MessageFold, VisitorFold, decode_state, message_ref
from projector.views import row_for
from tests.kit.fold_events import at, common, fold

C1 = AggregateRef("chat", "c1")


def chat_events(chat_id: str, t: float, agent: str | None = "a1") -> list[d.DomainEvent]:
    return [
        d.ChatStarted(**common(t - 5), chat_id=chat_id),
        d.ChatAccepted(
            **common(t),
            chat_id=chat_id,
            agent=d.AgentRef(id=agent, name="Ann") if agent else None,
        ),
    ]


def test_chat_view_has_exactly_the_design_fields_in_utc_iso() -> None:
    states = fold(
        [
            *chat_events("c1", 10),
            d.ChatUpdated(
                **common(11),
                chat_id="c1",
                subject="Help",
                location=d.Location(country="United Kingdom", country_code="GB", city="Leeds"),
            ),
        ]
    )
    view = msgspec.json.decode(row_for(C1, states[C1]).view)
    assert list(view) == [
        "id",
        "provider",
        "source",
        "status",
        "ignored",
        "completed",
        "transcript_sent",
        "subject",
        "department",
        "agent",
        "visitor",
        "site",
        "initiated_at",
        "accepted_at",
        "closed_at",
        "last_message_at",
        "message_count",
        "rating",
        "location",
        "browser",
        "platform",
        "provider_status",
        "type",
        "internal_count",
        "agents",
        "metrics",
        "erasure",
    ]
    assert view["metrics"]["wait_s"] == 5.0  # started at 5 s, accepted at 10 s
    assert view["agents"] == [{"id": "a1", "name": "Ann"}]
    assert view["accepted_at"] == "2026-03-01T09:00:10Z"
    assert view["agent"] == {"id": "a1", "name": "Ann"}
    assert view["location"] == {"country": "United Kingdom", "country_code": "GB", "city": "Leeds"}
    assert (view["status"], view["provider"], view["source"]) == ("active", "natterly", "acme")


def test_chat_row_columns() -> None:
    states = fold(chat_events("c1", 10))
    row = row_for(C1, states[C1])
    assert (row.kind, row.id, row.chat_id, row.status, row.source, row.agent_id) == (
        "chat",
        "c1",
        "c1",
        "active",
        "acme",
        "a1",
    )
    assert decode_state("chat", row.state) == states[C1]
    unassigned = fold([*chat_events("c1", 10), d.ChatAssigned(**common(20), chat_id="c1", agent=None)])
    assert row_for(C1, unassigned[C1]).agent_id is None


def test_chats_sort_most_recent_activity_first_as_plain_text() -> None:
    states = fold(chat_events("old", 10) + chat_events("new", 2_000_000_000) + chat_events("mid", 500))
    rows = [row_for(ref, state) for ref, state in states.items() if ref.kind == "chat"]
    listed = sorted(rows, key=lambda row: (row.sort_key, row.id))
    assert [row.id for row in listed] == ["new", "mid", "old"]
    assert len({len(row.sort_key) for row in rows}) == 1  # fixed width: text order = number order


def test_chat_activity_counts_every_event_not_only_lifecycle() -> None:
    states = fold(
        chat_events("c1", 10)
        + chat_events("c2", 20)
        + [
            d.MessagePosted(
                **common(30),
                chat_id="c1",
                message_id="m1",
                author=d.Author(role="visitor"),
                posted_at=at(30),
            ),
        ]
    )
    first = min(
        (row_for(ref, s) for ref, s in states.items() if ref.kind == "chat"),
        key=lambda row: (row.sort_key, row.id),
    )
    assert first.id == "c1"


def test_messages_sort_by_posted_time_and_know_their_chat() -> None:
    events = [
        d.MessagePosted(
            **common(t),
            chat_id="c1",
            message_id=m,
            text=m,
            author=d.Author(role="agent", name="Ann"),
            posted_at=at(t),
        )
        for m, t in [("late", 9), ("early", 1), ("mid", 5)]
    ]
    states = fold(events)
    rows = [row_for(ref, state) for ref, state in states.items() if ref.kind == "message"]
    assert [row.id for row in sorted(rows, key=lambda row: (row.sort_key, row.id))] == [
        "c1/early",
        "c1/mid",
        "c1/late",
    ]
    assert {row.chat_id for row in rows} == {"c1"}
    view = msgspec.json.decode(row_for(message_ref("c1", "mid"), states[message_ref("c1", "mid")]).view)
    assert view == {
        "id": "mid",
        "chat_id": "c1",
        "text": "mid",
        "author": {"role": "agent", "name": "Ann", "id": None},
        "posted_at": "2026-03-01T09:00:05Z",
        "edited_at": None,
        "deleted": False,
        "internal": False,
        "message_type": None,
        "erasure": None,
    }


def test_deleted_message_view() -> None:
    ref = message_ref("c1", "m1")
    states = fold(
        [
            d.MessagePosted(
                **common(1),
                chat_id="c1",
                message_id="m1",
                text="oops",
                author=d.Author(role="visitor"),
                posted_at=at(1),
            ),
            d.MessageDeleted(**common(2), chat_id="c1", message_id="m1", deleted_at=at(2)),
        ]
    )
    assert isinstance(states[ref], MessageFold)
    view = msgspec.json.decode(row_for(ref, states[ref]).view)
    assert (view["deleted"], view["text"], view["posted_at"]) == (True, None, "2026-03-01T09:00:01Z")


def test_visitor_and_agent_views() -> None:
    states = fold(
        [
            d.VisitorSeen(**common(3), visitor_id="v1", chat_id="c2", name="Ann"),
            d.VisitorSeen(**common(1), visitor_id="v1", chat_id="c1", email="ann@example.org"),
            d.AgentStatusChanged(**common(4), agent_id="a1", name="Bob", status="online"),
        ]
    )
    visitor = states[AggregateRef("visitor", "v1")]
    assert isinstance(visitor, VisitorFold)
    assert msgspec.json.decode(row_for(AggregateRef("visitor", "v1"), visitor).view) == {
        "id": "v1",
        "name": "Ann",
        "email": "ann@example.org",
        "anonymous": None,
        "first_seen": "2026-03-01T09:00:01Z",
        "last_seen": "2026-03-01T09:00:03Z",
        "chats": ["c1", "c2"],
        "pages": [],
        "sessions": [],
        "identified_as": None,
        "erasure": None,
    }
    agent = row_for(AggregateRef("agent", "a1"), states[AggregateRef("agent", "a1")])
    assert msgspec.json.decode(agent.view) == {
        "id": "a1",
        "name": "Bob",
        "status": "online",
        "since": "2026-03-01T09:00:04Z",
        "metrics": {"version": 3, "online_s": 0.0, "invisible_s": 0.0, "status_changes": 1,
                    "measured_from": "2026-03-01T09:00:04Z",
                    "measured_to": "2026-03-01T09:00:04Z", "last_status": "online",
                    "chats_handled": None, "time": None},
    }
    assert (agent.kind, agent.status, agent.sort_key) == ("agent", "online", "a1")


def test_an_empty_chat_state_still_has_a_row() -> None:
    row = row_for(C1, ChatFold(id="c1"))
    assert msgspec.json.decode(row.view)["status"] is None
    assert row.sort_key == "9" * 18

"""The fold's conflict-resolution rules, one example each (docs/projector.md, "The fold")."""

from __future__ import annotations

import itertools
import typing
from collections.abc import Sequence

import pytest

from contracts import domain as d
from contracts.state import AgentState, ChatState, MessageState, VisitorState
from projector.fold import RANK, affected, apply
from projector.states import AgentFold, AggregateRef, ChatFold, decode_state, encode_state, message_ref
from projector.views import to_view
from tests.kit.fold_events import at, common, fold

C1 = AggregateRef("chat", "c1")
ANN = d.AgentRef(id="a1", name="Ann")
BOB = d.AgentRef(id="a2", name="Bob")


def chat_view(events: Sequence[d.DomainEvent], chat: AggregateRef = C1) -> ChatState:
    view = to_view(chat, fold(events)[chat])
    assert isinstance(view, ChatState)
    return view


def every_order(events: Sequence[d.DomainEvent]) -> list[list[d.DomainEvent]]:
    return [list(p) for p in itertools.permutations(events)]


def started(t: float, event_id: str | None = None) -> d.ChatStarted:
    return d.ChatStarted(**common(t, event_id), chat_id="c1", initiated_at=at(t))


def accepted(t: float, agent: d.AgentRef | None = ANN, event_id: str | None = None) -> d.ChatAccepted:
    return d.ChatAccepted(**common(t, event_id), chat_id="c1", agent=agent)


def assigned(t: float, agent: d.AgentRef | None, event_id: str | None = None) -> d.ChatAssigned:
    return d.ChatAssigned(**common(t, event_id), chat_id="c1", agent=agent)


def closed(t: float, event_id: str | None = None) -> d.ChatClosed:
    return d.ChatClosed(**common(t, event_id), chat_id="c1", closed_at=at(t))


def idle(t: float, event_id: str | None = None) -> d.ChatIdle:
    return d.ChatIdle(**common(t, event_id), chat_id="c1")


def completed(t: float, event_id: str | None = None) -> d.ChatCompleted:
    return d.ChatCompleted(**common(t, event_id), chat_id="c1")


def posted(
    t: float, message_id: str, text: str | None = "hi", event_id: str | None = None
) -> d.MessagePosted:
    return d.MessagePosted(
        **common(t, event_id),
        chat_id="c1",
        message_id=message_id,
        text=text,
        author=d.Author(role="visitor", name="V"),
        posted_at=at(t),
    )


def edited(t: float, message_id: str, text: str | None, event_id: str | None = None) -> d.MessageEdited:
    return d.MessageEdited(
        **common(t, event_id),
        chat_id="c1",
        message_id=message_id,
        text=text,
        edited_at=at(t),
    )


def deleted(t: float, message_id: str, event_id: str | None = None) -> d.MessageDeleted:
    return d.MessageDeleted(
        **common(t, event_id),
        chat_id="c1",
        message_id=message_id,
        deleted_at=at(t),
    )


# ----------------------------------------------------------------------------- chats


def test_closed_arriving_before_accepted_still_ends_closed_with_the_agent() -> None:
    events: list[d.DomainEvent] = [closed(10), accepted(5), started(0)]
    for order in every_order(events):
        view = chat_view(order)
        assert view.status == "closed"
        assert view.agent == ANN
        assert view.closed_at == at(10)
        assert view.accepted_at == at(5)
        assert view.initiated_at == at(0)


@pytest.mark.parametrize(
    ("events", "status"),
    [
        # Natterly's whole-second timestamps: the later kind in a chat's life wins a tie.
        ([started(0), accepted(0)], "active"),
        ([accepted(0), idle(0)], "idle"),
        ([accepted(0), closed(0)], "closed"),
        ([idle(0), closed(0)], "closed"),
        ([completed(0), accepted(0)], "active"),  # completed is a flag, not a close
        ([started(0), accepted(0), idle(0), completed(0), closed(0)], "closed"),
    ],
)
def test_ties_in_time_resolve_by_lifecycle_precedence(events: list[d.DomainEvent], status: str) -> None:
    for order in every_order(events):
        assert chat_view(order).status == status


def test_tie_in_time_and_kind_resolves_by_event_id() -> None:
    events = [assigned(5, ANN, event_id="e-2"), assigned(5, BOB, event_id="e-1")]
    for order in every_order(events):
        assert chat_view([started(0), *order]).agent == ANN  # "e-2" > "e-1"


def test_status_lifecycle_in_time_order() -> None:
    assert chat_view([started(0)]).status == "waiting"
    assert chat_view([started(0), accepted(1)]).status == "active"
    assert chat_view([started(0), accepted(1), idle(2)]).status == "idle"
    assert chat_view([started(0), accepted(1), idle(2), closed(3)]).status == "closed"
    # An idle chat that is accepted again (later) is active again.
    assert chat_view([accepted(1), idle(2), accepted(3)]).status == "active"


def test_closed_is_sticky_against_a_later_idle_but_reopened_by_a_later_accept() -> None:
    view = chat_view([accepted(1), closed(5), idle(9)])
    assert (view.status, view.closed_at) == ("closed", at(5))
    view = chat_view([accepted(1), closed(5), accepted(9)])
    assert (view.status, view.closed_at) == ("active", None)


def test_completed_flags_but_does_not_close() -> None:
    """Natterly: "a chat has completed (after acceptance and messages have occurred)" is
    not "a chat has been closed"."""
    view = chat_view([accepted(1), completed(5)])
    assert (view.status, view.completed, view.closed_at) == ("active", True, None)
    view = chat_view([accepted(1), completed(5), closed(6)])
    assert (view.status, view.completed, view.closed_at) == ("closed", True, at(6))


def test_flags_are_grow_only() -> None:
    events: list[d.DomainEvent] = [
        d.ChatIgnored(**common(1), chat_id="c1"),
        d.TranscriptSent(**common(2), chat_id="c1"),
        started(3),
    ]
    view = chat_view(events)
    assert (view.ignored, view.transcript_sent, view.completed) == (True, True, False)


def test_unassignment_clears_the_agent_but_an_accept_without_agent_does_not() -> None:
    assert chat_view([accepted(1, ANN), assigned(2, None)]).agent is None
    assert chat_view([accepted(1, ANN), assigned(2, None), assigned(3, BOB)]).agent == BOB
    assert chat_view([accepted(1, ANN), accepted(2, None)]).agent == ANN
    assert chat_view([accepted(1, None)]).agent is None


def test_a_snapshot_naming_the_agent_sets_it_last_writer_wins() -> None:
    """Natterly: unassigned, then completed and closed webhooks whose chat names the agent
    again. The chat ends with that agent (it used to end with none)."""

    def snapshot(t: float, agent: d.AgentRef | None) -> d.ChatUpdated:
        return d.ChatUpdated(**common(t), chat_id="c1", agent=agent)

    story = [accepted(1, ANN), snapshot(1, ANN), assigned(2, None), snapshot(2, None),
             d.ChatCompleted(**common(8), chat_id="c1"), snapshot(8, BOB),
             d.ChatClosed(**common(9), chat_id="c1", closed_at=at(9)), snapshot(9, BOB)]
    for order in (story, story[::-1], story[2:] + story[:2]):
        view = chat_view(order)
        assert (view.status, view.agent) == ("closed", BOB)
    # A snapshot that names no agent does not clear one; an explicit unassignment still
    # does, also when it ties with a snapshot (ChatAssigned outranks ChatUpdated).
    assert chat_view([accepted(1, ANN), snapshot(5, None)]).agent == ANN
    assert chat_view([snapshot(1, ANN), assigned(3, None)]).agent is None
    assert chat_view([snapshot(3, ANN), assigned(3, None)]).agent is None
    assert chat_view([assigned(3, None), snapshot(4, ANN)]).agent == ANN


def test_a_snapshot_field_is_only_written_when_stated() -> None:
    def snapshot(t: float, subject: str | None, browser: str | None) -> d.ChatUpdated:
        return d.ChatUpdated(
            **common(t),
            chat_id="c1",
            subject=subject,
            browser=browser,
            department=d.DepartmentRef(id="dep", name="Sales") if subject else None,
        )

    for order in every_order(
        [snapshot(1, "Help", "Firefox"), snapshot(2, None, "Chrome"), snapshot(3, "Refund", None)]
    ):
        view = chat_view(order)
        assert (view.subject, view.browser) == ("Refund", "Chrome")
        assert view.department == d.DepartmentRef(id="dep", name="Sales")
        assert view.status is None  # a snapshot says nothing about the lifecycle


def test_rating_is_last_writer_wins() -> None:
    def rated(t: float, rating: d.Rating | None) -> d.ChatRated:
        return d.ChatRated(**common(t), chat_id="c1", rating=rating)

    for order in every_order([rated(1, 2), rated(3, "good"), rated(4, None)]):
        assert chat_view(order).rating == "good"


# ----------------------------------------------------------------------------- messages


def test_message_count_counts_distinct_messages_minus_deleted() -> None:
    events: list[d.DomainEvent] = [
        posted(1, "m1"),
        posted(1, "m1"),
        posted(2, "m2"),
        edited(3, "m3", "x"),
        posted(4, "m4"),
        deleted(5, "m4"),
        deleted(6, "never-posted"),
    ]
    for order in [events, events[::-1]]:
        view = chat_view(order)
        assert view.message_count == 3  # m1, m2, m3 (known from its edit); m4 deleted
        assert view.last_message_at == at(4)


def test_edits_are_last_writer_wins_by_time() -> None:
    events: list[d.DomainEvent] = [posted(1, "m1", "one"), edited(3, "m1", "three"), edited(2, "m1", "two")]
    for order in every_order(events):
        view = to_view(message_ref("c1", "m1"), fold(order)[message_ref("c1", "m1")])
        assert isinstance(view, MessageState)
        assert (view.text, view.edited_at, view.posted_at, view.deleted) == ("three", at(3), at(1), False)


def test_deletion_is_a_tombstone_that_wins_over_edits_in_any_order() -> None:
    # The edit is *later* than the deletion (a late, retried webhook): still deleted.
    events: list[d.DomainEvent] = [
        posted(1, "m1", "secret"),
        deleted(2, "m1"),
        edited(3, "m1", "edited secret"),
    ]
    for order in every_order(events):
        state = fold(order)[message_ref("c1", "m1")]
        view = to_view(message_ref("c1", "m1"), state)
        assert isinstance(view, MessageState)
        assert (view.deleted, view.text) == (True, None)
        assert b"secret" not in encode_state(state)  # the text is gone, not just hidden


def test_message_identity_is_namespaced_by_chat() -> None:
    other = d.MessagePosted(
        **common(1),
        chat_id="c2",
        message_id="m1",
        text="other",
        author=d.Author(role="agent"),
        posted_at=at(1),
    )
    states = fold([posted(1, "m1", "mine"), other])
    for chat_id, text in [("c1", "mine"), ("c2", "other")]:
        view = to_view(message_ref(chat_id, "m1"), states[message_ref(chat_id, "m1")])
        assert isinstance(view, MessageState)
        assert view.text == text


# ----------------------------------------------------------------------------- visitors, agents


def seen(
    t: float,
    visitor: str = "v1",
    chat_id: str | None = None,
    name: str | None = None,
    email: str | None = None,
) -> d.VisitorSeen:
    return d.VisitorSeen(**common(t), visitor_id=visitor, chat_id=chat_id, name=name, email=email)


def test_visitor_first_last_seen_and_distinct_chats() -> None:
    events = [
        seen(5, chat_id="c1", name="Ann"),
        seen(1),
        seen(9, chat_id="c2"),
        seen(3, chat_id="c1", email="a@x"),
    ]
    for order in every_order(events):
        view = to_view(AggregateRef("visitor", "v1"), fold(order)[AggregateRef("visitor", "v1")])
        assert isinstance(view, VisitorState)
        assert (view.first_seen, view.last_seen, view.chats) == (at(1), at(9), ("c1", "c2"))
        assert (view.name, view.email) == ("Ann", "a@x")


def status_changed(
    t: float, status: d.AgentStatus, name: str | None = None, event_id: str | None = None
) -> d.AgentStatusChanged:
    return d.AgentStatusChanged(**common(t, event_id), agent_id="a1", name=name, status=status)


def test_agent_status_and_name_are_last_writer_wins() -> None:
    events = [
        status_changed(1, "online", "Ann"),
        status_changed(5, "invisible"),
        status_changed(3, "offline", "Annie"),
    ]
    for order in every_order(events):
        view = to_view(AggregateRef("agent", "a1"), fold(order)[AggregateRef("agent", "a1")])
        assert isinstance(view, AgentState)
        assert (view.status, view.since, view.name) == ("invisible", at(5), "Annie")


# ----------------------------------------------------------------------------- plumbing


def test_affected() -> None:
    assert affected(started(0)) == [C1]
    assert affected(posted(0, "m1")) == [C1, AggregateRef("message", "c1/m1")]
    assert affected(deleted(0, "m1")) == [C1, AggregateRef("message", "c1/m1")]
    assert affected(seen(0, chat_id="c1")) == [AggregateRef("visitor", "v1")]
    assert affected(status_changed(0, "online")) == [AggregateRef("agent", "a1")]


def test_apply_refuses_a_state_of_another_kind() -> None:
    with pytest.raises(TypeError):
        apply(C1, AgentFold(id="a1"), started(0))


def test_an_event_of_no_concern_leaves_the_state_alone() -> None:
    state = fold([started(0)])[C1]
    assert apply(C1, state, seen(5)) is state
    agent = AggregateRef("agent", "a1")
    assert apply(agent, None, started(0)) == AgentFold(id="a1")


def test_states_encode_deterministically_and_round_trip() -> None:
    events: list[d.DomainEvent] = [posted(1, f"m{i}") for i in range(20)]
    events += [deleted(2, f"m{i}") for i in range(0, 20, 3)]
    forward, backward = fold(events)[C1], fold(events[::-1])[C1]
    assert isinstance(forward, ChatFold)
    assert encode_state(forward) == encode_state(backward)
    assert decode_state("chat", encode_state(forward)) == forward


def test_every_domain_event_kind_has_a_precedence() -> None:
    kinds = set(typing.get_args(d.DomainEvent))
    assert set(RANK) == kinds
    assert len(set(RANK.values())) == len(RANK)  # a total order: no two kinds tie

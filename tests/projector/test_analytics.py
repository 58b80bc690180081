"""A chat's analytics measures (projector/analytics.py, docs/analytics.md), on stories with
the expected numbers worked out by hand, each folded in delivery order, reversed and with
every event delivered twice: the measures depend on the set of events, never their order."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest

from contracts import domain as d
from contracts.state import ChatMetrics, ChatState
from projector.analytics import DEFINITIONS, VERSION
from projector.states import AggregateRef
from tests.kit.fold_events import at, common, fold, viewed

C1 = AggregateRef("chat", "c1")
ANN = d.AgentRef(id="a1", name="Ann")
BOB = d.AgentRef(id="a2", name="Bob")
_offsets = itertools.count(1)


def delivered(*events: d.DomainEvent) -> list[d.DomainEvent]:
    """``events`` as the log holds them, in this order: each with its own offset."""
    return [msgspec.structs.replace(e, received_at=e.occurred_at, log_offset=next(_offsets))
            for e in events]


def started(t: float) -> d.ChatStarted:
    return d.ChatStarted(**common(t), chat_id="c1", initiated_at=at(t))


def accepted(t: float, agent: d.AgentRef = ANN) -> d.ChatAccepted:
    return d.ChatAccepted(**common(t), chat_id="c1", agent=agent)


def closed(t: float) -> d.ChatClosed:
    return d.ChatClosed(**common(t), chat_id="c1", closed_at=at(t))


def said(t: float, role: d.AuthorRole, message_id: str, *, internal: bool = False,
         delivered_at: float | None = None) -> d.MessagePosted:
    """A message posted at ``t``, carried by a webhook of ``delivered_at`` (default ``t``)."""
    return d.MessagePosted(**common(t if delivered_at is None else delivered_at), chat_id="c1",
                           message_id=message_id, text=message_id, author=d.Author(role=role),
                           posted_at=at(t), internal=internal)


def measures(events: list[d.DomainEvent]) -> ChatMetrics:
    """The chat's metrics, after checking that reversed and doubled delivery agree."""
    views = [msgspec.json.decode(viewed(fold(order))[C1], type=ChatState)
             for order in (events, events[::-1], events + events[::-1])]
    assert views[0] == views[1] == views[2]
    assert views[0].metrics is not None
    return views[0].metrics


def test_rating_after_the_close() -> None:
    """Started 0, visitor asks at 5, Ann accepts at 20 and answers at 35, closes at 300;
    the visitor thanks at 350 and rates at 360. wait 20, first response 35-5 = 30, one
    response (the thanks after the close is never answered), handle 300-20 = 280."""
    events = delivered(
        started(0), said(5, "visitor", "m1"), accepted(20), said(35, "agent", "m2"), closed(300),
        said(350, "visitor", "m3"), d.ChatRated(**common(360), chat_id="c1", rating="Good"))
    m = measures(events)
    assert (m.wait_s, m.first_response_s, m.handle_s) == (20.0, 30.0, 280.0)
    assert (m.responses, m.response_avg_s, m.response_max_s) == (1, 30.0, 30.0)
    assert (m.visitor_messages, m.agent_messages) == (2, 1)
    assert (m.missed, m.abandoned, m.transfers, m.excluded) == (False, False, 0, ())
    assert m.version == VERSION


def test_acceptance_delivered_before_the_initiation() -> None:
    """The acceptance (30) reaches the log first, the initiation (0) later: wait 30 s."""
    m = measures(delivered(accepted(30), said(40, "agent", "m2"), said(10, "visitor", "m1"),
                           started(0)))
    assert (m.wait_s, m.first_response_s, m.handle_s) == (30.0, 30.0, None)


def test_a_message_delivered_before_an_earlier_one() -> None:
    """Visitor 10, agent 25, visitor 40, agent 100: responses 15 and 60, whichever of the
    messages the log holds first (the later ones are delivered first here)."""
    in_order = delivered(started(0), accepted(5), said(10, "visitor", "m1"),
                         said(25, "agent", "m2"), said(40, "visitor", "m3"),
                         said(100, "agent", "m4"))
    late_first = delivered(*in_order[::-1])
    for events in (in_order, late_first):
        m = measures(events)
        assert (m.first_response_s, m.responses, m.response_avg_s, m.response_max_s) == (
            15.0, 2, 37.5, 60.0)


def test_a_duplicate_changes_nothing() -> None:
    """Natterly repeats a chat's messages in later webhooks: the same message, delivered
    again by another webhook (another event id and offset), counts once."""
    first = said(10, "visitor", "m1")
    again = msgspec.structs.replace(said(10, "visitor", "m1", delivered_at=30), event_id="dup")
    m = measures(delivered(started(0), first, accepted(20), said(30, "agent", "m2"), again,
                           first))
    assert (m.visitor_messages, m.agent_messages, m.responses, m.first_response_s) == (
        1, 1, 1, 20.0)


def test_a_transfer() -> None:
    """Ann accepts at 10 and answers at 15 (visitor asked at 12: 3 s); the chat goes to Bob
    at 60 (an unassignment between says nothing); visitor asks at 70, Bob answers at 130:
    60 s. One transfer; responses 3 and 60 (avg 31.5); handle 200-10 = 190."""
    m = measures(delivered(
        started(0), accepted(10), said(12, "visitor", "m1"), said(15, "agent", "m2"),
        d.ChatAssigned(**common(50), chat_id="c1", agent=None),
        d.ChatAssigned(**common(60), chat_id="c1", agent=BOB),
        said(70, "visitor", "m3"), said(130, "agent", "m4"), closed(200)))
    assert m.transfers == 1
    assert (m.first_response_s, m.response_avg_s, m.response_max_s, m.responses) == (
        3.0, 31.5, 60.0, 2)
    assert (m.wait_s, m.handle_s) == (10.0, 190.0)


def test_a_reopened_chat() -> None:
    """Started 0, accepted 10, closed 100; reopened (started again) at 200: open, so no
    handle time; accepted at 230, closed at 400: handle runs from the first acceptance,
    400-10 = 390, and the wait is the first one, 10."""
    first_life = [started(0), accepted(10), closed(100)]
    reopened = measures(delivered(*first_life, started(200)))
    assert (reopened.wait_s, reopened.handle_s) == (10.0, None)
    again = measures(delivered(*first_life, started(200), accepted(230), closed(400)))
    assert (again.wait_s, again.handle_s) == (10.0, 390.0)


def test_bots_notes_and_system_lines_do_not_stop_the_clock() -> None:
    """Visitor at 0; a bot at 2, a system line at 3, an agent-only note at 4, a deleted agent
    reply at 5; the agent's reply at 12: first response 12 s. Notes and deleted messages are
    not counted (the visitor never saw them)."""
    m = measures(delivered(
        started(0), said(0, "visitor", "m1"), said(2, "bot", "m2"), said(3, "system", "m3"),
        said(4, "agent", "m4", internal=True), said(5, "agent", "m5"),
        d.MessageDeleted(**common(6), chat_id="c1", message_id="m5", deleted_at=at(6)),
        said(12, "agent", "m6")))
    assert m.first_response_s == 12.0
    assert (m.visitor_messages, m.agent_messages, m.bot_messages, m.system_messages) == (1, 1, 1, 1)


def test_a_reply_in_the_same_second_answers_in_zero() -> None:
    m = measures(delivered(said(7, "agent", "m2"), said(7, "visitor", "m1")))
    assert (m.first_response_s, m.responses) == (0.0, 1)


def test_missed_and_abandoned() -> None:
    ignored = d.ChatIgnored(**common(120), chat_id="c1")
    missed = measures(delivered(started(0), said(1, "visitor", "m1"), ignored, closed(300)))
    assert (missed.missed, missed.abandoned, missed.wait_s, missed.first_response_s) == (
        True, False, None, None)
    abandoned = measures(delivered(started(0), said(1, "visitor", "m1"), closed(40)))
    assert (abandoned.missed, abandoned.abandoned) == (False, True)
    answered_late = measures(delivered(started(0), ignored, accepted(200), closed(300)))
    assert (answered_late.missed, answered_late.abandoned, answered_late.wait_s) == (
        False, False, 200.0)


def test_impossible_intervals_are_excluded_never_negative() -> None:
    """Accepted at 5 but initiated (as the chat data says) at 50; closed before accepted."""
    m = measures(delivered(d.ChatStarted(**common(60), chat_id="c1", initiated_at=at(50)),
                           accepted(5), d.ChatClosed(**common(70), chat_id="c1",
                                                     closed_at=at(1))))
    assert (m.wait_s, m.handle_s, m.excluded) == (None, None, ("wait_s", "handle_s"))


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_every_definition_has_a_version_and_is_documented(name: str) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text()
    assert DEFINITIONS[name] >= 1
    assert f"`{name}` (v{DEFINITIONS[name]})" in doc

"""Property tests of the fold: order and duplicates never matter, and the result is what
replaying the events one by one in conflict-resolution order would give.

Hypothesis prints the falsifying example and a ``@reproduce_failure`` blob on failure
(``print_blob=True``); rerun with ``--hypothesis-seed=N`` to replay a whole run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import domain as d
from contracts.state import AgentState, ChatState, MessageState, VisitorState
from projector.fold import PROVIDER_STATUS, RANK, affected, apply
from projector.states import NEVER, AggregateRef, decode_state, encode_state
from projector.views import to_view
from tests.kit.fold_events import conversation, encoded, fold, redelivered, viewed, world

E = TypeVar("E", bound=d.DomainEvent)

FOLD_SETTINGS = settings(
    max_examples=100, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)


@FOLD_SETTINGS
@given(st.data())
def test_one_conversation_any_order_any_duplicates_same_state(data: st.DataObject) -> None:
    events = data.draw(conversation())
    shuffled = data.draw(redelivered(events))
    assert encoded(fold(shuffled)) == encoded(fold(events))
    assert viewed(fold(shuffled)) == viewed(fold(events))


@FOLD_SETTINGS
@given(st.data())
def test_interleaved_aggregates_any_order_same_state(data: st.DataObject) -> None:
    """Chats of both providers sharing visitors and agents, interleaved at random."""
    events = data.draw(world())
    shuffled = data.draw(redelivered(events))
    assert encoded(fold(shuffled)) == encoded(fold(events))


@FOLD_SETTINGS
@given(st.data())
def test_folding_in_batches_from_stored_states_same_state(data: st.DataObject) -> None:
    """The runner folds a batch, encodes the states, later decodes them and folds on."""
    events = data.draw(redelivered(data.draw(world())))
    cut = data.draw(st.integers(0, len(events)))
    first = fold(events[:cut])
    restored = {ref: decode_state(ref.kind, encode_state(state)) for ref, state in first.items()}
    assert restored == first
    assert encoded(fold(events[cut:], restored)) == encoded(fold(events))


@FOLD_SETTINGS
@given(st.data())
def test_apply_is_idempotent(data: st.DataObject) -> None:
    events = data.draw(world())
    states = fold(events)
    again = data.draw(st.sampled_from(events))
    for ref in affected(again):
        assert apply(ref, states[ref], again) == states[ref]


# ----------------------------------------------------------------------------- the oracle
# An independent, naive model: sort the events by (occurred_at, precedence, event_id) and
# replay them one by one like a state machine. The CRDT-style fold must agree with it.


def _ordered(events: Sequence[E]) -> list[E]:
    """Time of the change, then receive order (time, log offset), then kind, then id."""
    return sorted(events, key=lambda e: (
        e.occurred_at, e.received_at or NEVER, -1 if e.log_offset is None else e.log_offset,
        RANK[type(e)], e.event_id))  # type: ignore[index]


def _named(e: d.DomainEvent) -> list[d.AgentRef]:
    """The agents an event names (with a name), in the order it gives them."""
    match e:
        case d.ChatAccepted(agent=d.AgentRef(name=str())) | d.ChatAssigned(agent=d.AgentRef(name=str())):
            assert e.agent is not None
            return [e.agent]
        case d.ChatUpdated():
            given = [e.agent] if e.agent is not None else []
            return [a for a in given + list(e.agents) if a.name is not None]
        case d.MessagePosted(author=d.Author(role="agent", id=str(), name=str())):
            assert e.author.id is not None
            return [d.AgentRef(id=e.author.id, name=e.author.name)]
    return []


def _first_names(e: d.DomainEvent) -> dict[str, str]:
    """Per agent id, the first name the event gives it (one event is one write)."""
    names: dict[str, str] = {}
    for agent in _named(e):
        assert agent.name is not None
        names.setdefault(agent.id, agent.name)
    return names


def _oracle_chat(chat_id: str, events: list[d.DomainEvent]) -> dict[str, object]:
    status: str | None = None
    agent: d.AgentRef | None = None
    closed_at: datetime | None = None
    accepted: list[datetime] = []
    known: set[str] = set()
    deleted: set[str] = set()
    internal: set[str] = set()
    names: dict[str, str] = {}
    said_closed_at: datetime | None = None
    flags = {"ignored": False, "completed": False, "transcript_sent": False}
    subject = None
    visitor: str | None = None
    session: str | None = None
    for e in _ordered(events):
        names.update(_first_names(e))
        match e:
            case d.ChatStarted():
                status = "waiting"
            case d.ChatAccepted():
                status = "active"
                accepted.append(e.occurred_at)
                agent = e.agent or agent
            case d.ChatAssigned():
                agent = e.agent
            case d.ChatIdle():
                status = "idle" if status != "closed" else status
            case d.ChatIgnored():
                flags["ignored"] = True
            case d.ChatCompleted():
                flags["completed"] = True
            case d.ChatClosed():
                status, closed_at = "closed", e.closed_at or e.occurred_at
            case d.TranscriptSent():
                flags["transcript_sent"] = True
            case d.ChatUpdated():
                subject = e.subject or subject
                if e.visitor is not None and e.visitor.id is not None:
                    if e.visitor.id.startswith("session:"):
                        session = e.visitor.id
                    else:
                        visitor = e.visitor.id
                agent = e.agent or agent
                said_closed_at = e.closed_at or said_closed_at
                word = PROVIDER_STATUS.get((e.provider_status or "").casefold())
                if word == "closed":
                    status, closed_at = "closed", e.closed_at or e.occurred_at
                elif word == "idle":
                    status = "idle" if status != "closed" else status
                elif word is not None:
                    status = word
            case d.MessagePosted() | d.MessageEdited():
                known.add(e.message_id)
                if e.internal:
                    internal.add(e.message_id)
            case d.MessageDeleted():
                deleted.add(e.message_id)
    return {
        "id": chat_id,
        "status": status,
        "agent": (d.AgentRef(id=agent.id, name=names[agent.id])
                  if agent and agent.name is None and agent.id in names else agent),
        "closed_at": (said_closed_at or closed_at) if status == "closed" else None,
        "accepted_at": min(accepted, default=None),
        "message_count": len(known - deleted - internal),
        "internal_count": len((known - deleted) & internal),
        "subject": subject,
        # A real id, once given, is the chat's visitor: a session id never replaces it.
        "visitor_id": visitor or session,
        "agents": tuple(d.AgentRef(id=i, name=n) for i, n in sorted(names.items())),
        **flags,
    }


def _oracle_message(events: list[d.DomainEvent]) -> dict[str, object]:
    text: str | None = None
    deleted = False
    for e in _ordered(events):
        match e:
            case d.MessagePosted() | d.MessageEdited() if not deleted:
                text = e.text if e.text is not None else text
            case d.MessageDeleted():
                deleted, text = True, None
    return {"text": text, "deleted": deleted}


def _oracle_agent(agent_id: str, events: list[d.DomainEvent]) -> dict[str, object]:
    statuses = [e for e in _ordered(events) if isinstance(e, d.AgentStatusChanged)]
    name: str | None = None
    for e in _ordered(events):  # any webhook that names the agent: the latest wins
        given = e.name if isinstance(e, d.AgentStatusChanged) else _first_names(e).get(agent_id)
        name = given or name
    last = statuses[-1] if statuses else None
    return {"status": last and last.status, "since": last and last.occurred_at, "name": name}


def _oracle_visitor(visitor_id: str, events: list[d.DomainEvent]) -> dict[str, object]:
    seen = [e for e in events if isinstance(e, d.VisitorSeen) and e.visitor_id == visitor_id]
    # Events that name this (session) visitor as the alias of another: it became that one.
    became = [e.visitor_id for e in _ordered(events)
              if isinstance(e, d.VisitorSeen) and e.alias == visitor_id]
    return {
        "first_seen": min((e.occurred_at for e in seen), default=None),
        "last_seen": max((e.occurred_at for e in seen), default=None),
        "chats": tuple(sorted({e.chat_id for e in seen if e.chat_id})),
        "email": next((e.email for e in reversed(_ordered(seen)) if e.email), None),
        "sessions": tuple(sorted({e.alias for e in seen if e.alias})),
        "identified_as": became[-1] if became else None,
    }


@FOLD_SETTINGS
@given(st.data())
def test_fold_agrees_with_replay_in_resolution_order(data: st.DataObject) -> None:
    events = data.draw(world())
    states = fold(data.draw(redelivered(events)))
    by_ref: dict[AggregateRef, list[d.DomainEvent]] = defaultdict(list)
    for event in events:
        for ref in affected(event):
            by_ref[ref].append(event)
    for ref, mine in by_ref.items():
        view = to_view(ref, states[ref])
        match view:
            case ChatState():
                expected = _oracle_chat(ref.id, mine)
                got = {key: getattr(view, key) for key in expected if key != "visitor_id"}
                got["visitor_id"] = None if view.visitor is None else view.visitor.id
                assert got == expected
            case MessageState():
                assert {"text": view.text, "deleted": view.deleted} == _oracle_message(mine)
            case AgentState():
                got = {"status": view.status, "since": view.since, "name": view.name}
                assert got == _oracle_agent(ref.id, mine)
            case VisitorState():
                expected = _oracle_visitor(ref.id, mine)
                assert {key: getattr(view, key) for key in expected} == expected


# ----------------------------------------------------------------------------- analytics
# The chat's measures (projector/analytics.py), worked out another way: from the events
# themselves, each agent message answering the visitor messages since the agent message
# before it.


def _oracle_metrics(events: list[d.DomainEvent]) -> dict[str, object]:
    first: dict[str, tuple[datetime, str]] = {}
    hidden: set[str] = set()
    initiated: list[datetime] = []
    accepted: list[datetime] = []
    holders: set[str] = set()
    for e in events:
        match e:
            case d.MessagePosted():
                first[e.message_id] = min(first.get(e.message_id, (e.posted_at, "~")),
                                          (e.posted_at, e.author.role))
                if e.internal:
                    hidden.add(e.message_id)
            case d.MessageEdited(internal=True) | d.MessageDeleted():
                hidden.add(e.message_id)
            case d.ChatStarted():
                initiated.append(e.initiated_at or e.occurred_at)
            case d.ChatUpdated(initiated_at=datetime() as when):
                initiated.append(when)
        match e:
            case d.ChatAccepted() | d.ChatAssigned() | d.ChatUpdated():
                holders.update([e.agent.id] if e.agent is not None else [])
        if isinstance(e, d.ChatAccepted):
            accepted.append(e.occurred_at)
    shown = [post for message_id, post in first.items() if message_id not in hidden]
    visitors = [at for at, role in shown if role == "visitor"]
    agents = sorted(at for at, role in shown if role == "agent")
    responses = []
    for before, reply in zip([None, *agents], agents, strict=False):
        asked = [at for at in visitors if (before is None or at > before) and at <= reply]
        if asked:
            responses.append((reply - min(asked)).total_seconds())
    wait = None
    if initiated and accepted and min(accepted) >= min(initiated):
        wait = (min(accepted) - min(initiated)).total_seconds()
    return {
        "wait_s": wait,
        "first_response_s": responses[0] if responses else None,
        "response_max_s": max(responses, default=None),
        "responses": len(responses),
        "visitor_messages": len(visitors),
        "agent_messages": len(agents),
        "bot_messages": sum(role == "bot" for _, role in shown),
        "transfers": max(0, len(holders) - 1),
    }


@FOLD_SETTINGS
@given(st.data())
def test_chat_metrics_agree_with_the_events_in_any_order(data: st.DataObject) -> None:
    events = data.draw(conversation())
    view = to_view(AggregateRef("chat", "c1"), fold(data.draw(redelivered(events)))[
        AggregateRef("chat", "c1")])
    assert isinstance(view, ChatState) and view.metrics is not None
    metrics = view.metrics
    expected = _oracle_metrics(events)
    assert {key: getattr(metrics, key) for key in expected} == expected
    if metrics.responses:
        assert metrics.response_avg_s is not None and metrics.response_max_s is not None
        assert metrics.response_avg_s <= metrics.response_max_s
    if view.closed_at is not None and view.accepted_at is not None:
        handle = (view.closed_at - view.accepted_at).total_seconds()
        assert metrics.handle_s == (handle if handle >= 0 else None)
    else:
        assert metrics.handle_s is None


# An agent's measures, worked out another way: the status in effect at each distinct time
# (the tie rule's pick among that time's changes) held until the next distinct time.
_TIE = ("invisible", "offline", "online")


def _oracle_agent_metrics(agent_id: str, events: list[d.DomainEvent]) -> dict[str, object]:
    at_time: dict[datetime, str] = {}
    for e in events:
        if isinstance(e, d.AgentStatusChanged) and e.agent_id == agent_id:
            prior = at_time.get(e.occurred_at)
            if prior is None or _TIE.index(e.status) > _TIE.index(prior):
                at_time[e.occurred_at] = e.status
    times = sorted(at_time)
    held = {"online": 0.0, "invisible": 0.0, "offline": 0.0}
    for start, end in pairwise(times):
        held[at_time[start]] += (end - start).total_seconds()
    return {"online_s": held["online"], "invisible_s": held["invisible"],
            "last_status": at_time[times[-1]] if times else None}


@FOLD_SETTINGS
@given(st.data())
def test_agent_metrics_agree_with_the_events_in_any_order(data: st.DataObject) -> None:
    events = data.draw(world())
    states = fold(data.draw(redelivered(events)))
    for ref, state in states.items():
        if ref.kind != "agent":
            continue
        view = to_view(ref, state)
        assert isinstance(view, AgentState) and view.metrics is not None
        expected = _oracle_agent_metrics(ref.id, events)
        assert {key: getattr(view.metrics, key) for key in expected} == expected

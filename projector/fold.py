"""The pure fold: domain events in, chat / message / visitor / agent states out. No I/O.

``apply(ref, state, event)`` is a join of a semilattice: every field of a fold state is
either

* a **last-writer-wins register** (:class:`Reg`) that keeps the value written by the
  event with the greatest *stamp* ``(occurred_at, received_at, log_offset, RANK[kind],
  event_id)``;
* a **min** or **max** of times (first seen, last message…);
* a **grow-only** flag or set (``completed``, message ids, deletion tombstones, internal
  notes), or the newest N of a grow-only set (a visitor's pages).

Each of these merges is commutative, associative and idempotent, so the state depends
only on the *set* of events (each with its receive time and log offset): any permutation
and any duplication of one aggregate's events folds to the same state — which is what
lets the projector take Kafka's at-least-once, provider-reordered delivery as it comes.

Conflict resolution (also in docs/projector.md, "The fold"):

1. the later ``occurred_at`` wins: the time the provider says the change happened;
2. at equal time (Natterly sends whole seconds, so ties are common) the event received
   later wins: the later ``received_at``, then the greater ``log_offset`` — the same
   answer on every replay, since both are stored with the record;
3. events of one webhook share both, so then the event kind that comes later in a chat's
   life wins, by :data:`RANK`: closed > completed > idle > ignored > accepted > assigned >
   updated > started (and for messages: deleted > edited > posted);
4. then the greater ``event_id`` (arbitrary but fixed).

A field only takes part when the event actually states it: ``None`` in an optional
field means "not said", not "cleared" — so a ChatClosed that carries no agent and
arrives before its ChatAccepted still ends ``closed`` *with* the agent. The one
explicit clearing is ChatAssigned with no agent (Natterly's "unassigned").

The chat status is derived from three registers (last open, last idle, last close) by
:func:`chat_status`, which equals replaying the lifecycle events in stamp order: closed
stays closed through a later ChatIdle; only a later ChatStarted / ChatAccepted reopens.
A snapshot's provider status that the fold knows (:data:`PROVIDER_STATUS`) writes the
same registers, so the provider's own view drives the status where it is the more recent
(an idle chat the provider calls active again is active). ChatCompleted is a flag, not a
close: Natterly sends it when a chat had an exchange, not when it ended.
People (:mod:`projector.fold_people`): a VisitorSeen with an ``alias`` (a session id the
visitor was known by) folds into both visitors — the link, never a copy, since the two rows
may be written from different partitions; the query API merges them on read. Any chat event
that names an agent names the agent's row too; a chat's visitor is its last real id, else
its last session id, in separate registers so a session id never displaces a real one.
Messages: edits are LWW; a deletion is a tombstone that wins over every edit whatever
the order, and ``message_count`` counts distinct messages posted or edited, minus
deleted ones.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from contracts import domain as d
from contracts.natterly_ids import is_session_visitor
from projector.fold_people import apply_agent, apply_visitor, described_agents
from projector.lww import earliest, grow, latest, pick, write
from projector.states import (
    NEVER,
    STATE_TYPE,
    AgentFold,
    AggregateRef,
    ChatFold,
    FoldState,
    MessageFold,
    Reg,
    Stamp,
    VisitorFold,
    message_key,
    message_ref,
)

__all__ = ["PROVIDER_STATUS", "RANK", "affected", "apply"]

#: Precedence of event kinds at equal ``occurred_at`` (greater wins). Lifecycle order:
#: an event that can only follow another outranks it, so a tie resolves the way the
#: chat most plausibly went. Kinds that never write the same register share no order
#: constraint but still get distinct ranks so stamps are a total order.
RANK: dict[type[d.DomainEvent], int] = {
    d.VisitorSeen: 0,
    d.AgentStatusChanged: 1,
    d.ChatStarted: 2,
    d.ChatUpdated: 3,
    d.MessagePosted: 4,
    d.MessageEdited: 5,
    d.MessageDeleted: 6,
    d.ChatAssigned: 7,
    d.ChatAccepted: 8,
    d.ChatRated: 9,
    d.TranscriptSent: 10,
    d.ChatIgnored: 11,
    d.ChatIdle: 12,
    d.ChatCompleted: 13,
    d.ChatClosed: 14,
}

#: Provider status words (case-folded) that say where a chat is in its life. Others
#: ("Completed", "Ignored", unknown words) are kept for display and drive nothing.
PROVIDER_STATUS: dict[str, str] = {
    "initiated": "waiting",
    "queued": "waiting",
    "waiting": "waiting",
    "accepted": "active",
    "active": "active",
    "idle": "idle",
    "closed": "closed",
}

_replace = msgspec.structs.replace
T = TypeVar("T")




def _stamp(event: d.DomainEvent) -> Stamp:
    """What orders the event's writes (rules 1-4 above)."""
    received, offset = event.received_at, event.log_offset
    return (event.occurred_at, NEVER if received is None else received,
            -1 if offset is None else offset, RANK[type(event)], event.event_id)


# ---------------------------------------------------------------------------- affected


def affected(event: d.DomainEvent) -> list[AggregateRef]:
    """Every aggregate one domain event touches: chat events their chat (and message
    events their message too), VisitorSeen its visitor (and the session visitor it links,
    ``alias``), AgentStatusChanged its agent, and any chat event that names an agent
    (:func:`~projector.fold_people.described_agents`) that agent, for its name.

    Visitors learn about chats only from VisitorSeen (``normalise`` emits one beside every
    chat webhook that names a visitor); agents learn their status only from
    AgentStatusChanged: the agent on a chat is part of the chat's state, not an agent row.
    A ChatAccepted / ChatAssigned names no agent row: its webhook's snapshot (ChatUpdated)
    names the same agent, and naming it from both would double the work.
    """
    match event:
        case d.VisitorSeen():
            if event.alias is None or event.alias == event.visitor_id:
                return [AggregateRef("visitor", event.visitor_id)]
            # Both sides of the link: the visitor learns its session, the session its visitor.
            return [AggregateRef("visitor", event.visitor_id), AggregateRef("visitor", event.alias)]
        case d.ChatUpdated():
            return [AggregateRef("chat", event.chat_id), *_agent_refs(event)]
        case d.MessagePosted():
            return [AggregateRef("chat", event.chat_id),
                    message_ref(event.chat_id, event.message_id), *_agent_refs(event)]
        case d.MessageEdited() | d.MessageDeleted():
            return [AggregateRef("chat", event.chat_id),
                    message_ref(event.chat_id, event.message_id)]
        case d.AgentStatusChanged():
            return [AggregateRef("agent", event.agent_id)]
        case _:
            return [AggregateRef("chat", event.chat_id)]


def _agent_refs(event: d.DomainEvent) -> list[AggregateRef]:
    """The agents an event describes by name, each once."""
    agents = described_agents(event)
    if not agents:
        return []
    return [AggregateRef("agent", agent_id) for agent_id in dict.fromkeys([a.id for a in agents])]


# ---------------------------------------------------------------------------- apply


def apply(ref: AggregateRef, state: FoldState | None, event: d.DomainEvent) -> FoldState:
    """Fold one event into the state of ``ref`` (``None``: the aggregate is new).

    Pure, idempotent, and commutative across the events of one aggregate. ``ref`` should
    be one of ``affected(event)``; an event that does not concern ``ref`` leaves the
    state as it was (a new aggregate's state is then empty but for its id).
    """
    if state is None:
        state = _empty(ref)
    elif type(state) is not STATE_TYPE[ref.kind]:
        raise TypeError(f"{type(state).__name__} is not the state of a {ref.kind}")
    stamp = _stamp(event)
    match state:
        case ChatFold():
            return _apply_chat(state, event, stamp)
        case VisitorFold():
            return apply_visitor(state, event, stamp)
        case MessageFold():
            return _apply_message(state, event, stamp)
        case AgentFold():
            return apply_agent(state, event, stamp)


def _empty(ref: AggregateRef) -> FoldState:
    kind, id_ = ref
    match kind:
        case "chat":
            return ChatFold(id=id_)
        case "message":
            chat_id, _, message_id = id_.partition("/")
            return MessageFold(chat_id=chat_id, id=message_id)
        case "visitor":
            return VisitorFold(id=id_)
        case _:
            return AgentFold(id=id_)


# ---------------------------------------------------------------------------- chats

#: The fields a chat event writes, by name (one ``replace`` per event applies them).
_Writes = dict[str, Any]


def _apply_chat(s: ChatFold, ev: d.DomainEvent, st: Stamp) -> ChatFold:
    """Every chat event also merges the provider, source and last activity."""
    match ev:
        case d.ChatUpdated():
            writes = _chat_updated(s, ev, st)
        case d.MessagePosted() | d.MessageEdited() | d.MessageDeleted():
            writes = _chat_message(s, ev, st)
        case d.ChatAccepted():
            writes = _chat_accepted(s, ev, st)
        case d.ChatStarted():
            writes = _chat_started(s, ev, st)
        case d.ChatClosed():
            writes = {"closed": write(s.closed, st, ev.closed_at or st[0])}
        case d.ChatCompleted():
            # A flag, not a close (Natterly: "completed after acceptance and messages").
            writes = {"completed": True}
        case d.ChatRated():
            writes = {"rating": _said(s.rating, st, ev.rating)}
        case d.TranscriptSent():
            writes = {"transcript_sent": True}
        case d.ChatIdle():
            writes = {"idled": write(s.idled, st, st[0])}
        case d.ChatAssigned():
            writes = _chat_assigned(s, ev, st)
        case d.ChatIgnored():
            writes = {"ignored": True}
        case d.VisitorSeen() | d.AgentStatusChanged():
            return s  # no concern of a chat
        case _:
            raise TypeError(f"not a domain event: {type(ev).__name__}")
    return _replace(s, provider=pick(s.provider, ev.provider), source=pick(s.source, ev.source),
                    active_at=latest(s.active_at, st[0]), **writes)


def _said(reg: Reg[T] | None, st: Stamp, value: T | None) -> Reg[T] | None:
    """A write of ``value`` if the event states it: ``None`` is "not said" and leaves the
    register alone."""
    return reg if value is None else write(reg, st, value)


def _chat_started(s: ChatFold, ev: d.ChatStarted, st: Stamp) -> _Writes:
    return {"opened": write(s.opened, st, "waiting"),
            "initiated_at": earliest(s.initiated_at, ev.initiated_at or st[0])}


def _chat_accepted(s: ChatFold, ev: d.ChatAccepted, st: Stamp) -> _Writes:
    return {"opened": write(s.opened, st, "active"),
            "accepted_at": earliest(s.accepted_at, st[0]),
            "agent": _said(s.agent, st, ev.agent),
            "agent_names": _named(s.agent_names, (ev.agent,), st),
            "holders": _held(s.holders, ev.agent)}


def _chat_assigned(s: ChatFold, ev: d.ChatAssigned, st: Stamp) -> _Writes:
    return {"agent": write(s.agent, st, ev.agent),  # None: explicitly unassigned
            "agent_names": _named(s.agent_names, (ev.agent,), st),
            "holders": _held(s.holders, ev.agent)}


def _held(holders: frozenset[str], agent: d.AgentRef | None) -> frozenset[str]:
    """The agents that held the chat, with ``agent`` (if any) among them."""
    return holders if agent is None else grow(holders, agent.id)


def _chat_updated(s: ChatFold, ev: d.ChatUpdated, st: Stamp) -> _Writes:
    """A snapshot: every field it states, the lifecycle its provider status implies, and
    its visitor (a real id and a session id in separate registers)."""
    writes: _Writes = {
        "subject": _said(s.subject, st, ev.subject),
        "department": _said(s.department, st, ev.department),
        "site": _said(s.site, st, ev.site),
        "location": _said(s.location, st, ev.location),
        "browser": _said(s.browser, st, ev.browser),
        "platform": _said(s.platform, st, ev.platform),
        "agent": _said(s.agent, st, ev.agent),
        "agent_names": _named(s.agent_names, (ev.agent, *ev.agents), st),
        "holders": _held(s.holders, ev.agent),
        "closed_at": _said(s.closed_at, st, ev.closed_at),
        "rating": _said(s.rating, st, ev.rating),
        "provider_status": _said(s.provider_status, st, ev.provider_status),
        "initiated_at": earliest(s.initiated_at, ev.initiated_at),
        "last_message_at": latest(s.last_message_at, ev.last_message_at),
        "chat_type": _fixed(s.chat_type, ev.chat_type),
    }
    word = ev.provider_status
    match None if word is None else PROVIDER_STATUS.get(word.casefold()):
        case None:
            pass
        case "closed":
            writes["closed"] = write(s.closed, st, ev.closed_at or st[0])
        case "idle":
            writes["idled"] = write(s.idled, st, st[0])
        case lifecycle:
            writes["opened"] = write(s.opened, st, lifecycle)
    visitor = ev.visitor
    if visitor is not None:
        # A description without an id never clears the id an earlier one gave, and a
        # provisional (session) id never replaces a real one: each has its register.
        if visitor.id is not None and is_session_visitor(visitor.id):
            writes["visitor_session"] = write(s.visitor_session, st, visitor)
        elif visitor.id is not None:
            writes["visitor"] = write(s.visitor, st, visitor)
        writes["visitor_name"] = _said(s.visitor_name, st, visitor.name)
        writes["visitor_anonymous"] = _said(s.visitor_anonymous, st, visitor.anonymous)
    return writes


def _chat_message(s: ChatFold, ev: d.MessagePosted | d.MessageEdited | d.MessageDeleted,
                  st: Stamp) -> _Writes:
    """A chat counts its messages (grow-only sets of keys, deletions as tombstones), its
    internal notes, and the time of its last message; an agent's message names its author."""
    key = message_key(ev.message_id)
    match ev:
        case d.MessagePosted():
            return {"messages": grow(s.messages, key),
                    "internal": grow(s.internal, key) if ev.internal else s.internal,
                    "last_message_at": latest(s.last_message_at, ev.posted_at),
                    "agent_names": _named(s.agent_names, described_agents(ev), st),
                    "posts": grow(s.posts, (key, ev.posted_at, ev.author.role))}
        case d.MessageEdited():
            return {"messages": grow(s.messages, key),
                    "internal": grow(s.internal, key) if ev.internal else s.internal}
        case d.MessageDeleted():
            return {"deleted": grow(s.deleted, key)}


def _named(names: dict[str, Reg[str]], agents: tuple[d.AgentRef | None, ...], st: Stamp
           ) -> dict[str, Reg[str]]:
    """``names`` with the name of each of ``agents`` that has one (a register per agent id)."""
    for agent in agents:
        if agent is not None and agent.name is not None:
            prior = names.get(agent.id)
            written = write(prior, st, agent.name)
            if written is not prior:
                names = {**names, agent.id: written}
    return names


# ---------------------------------------------------------------------------- messages


def _apply_message(s: MessageFold, ev: d.DomainEvent, st: Stamp) -> MessageFold:
    """Edits are LWW on the text; a deletion is a tombstone that wins over every edit,
    whichever arrives first: the text is dropped and never written again."""
    match ev:
        case d.MessagePosted():
            return _replace(s, provider=pick(s.provider, ev.provider),
                            source=pick(s.source, ev.source),
                            text=_text(s, ev, st), internal=s.internal or ev.internal,
                            message_type=_fixed(s.message_type, ev.message_type),
                            author=write(s.author, st, ev.author),
                            posted_at=earliest(s.posted_at, ev.posted_at))
        case d.MessageEdited():
            return _replace(s, provider=pick(s.provider, ev.provider),
                            source=pick(s.source, ev.source),
                            text=_text(s, ev, st), internal=s.internal or ev.internal,
                            message_type=_fixed(s.message_type, ev.message_type),
                            edited_at=latest(s.edited_at, ev.edited_at))
        case d.MessageDeleted():
            return _replace(s, provider=pick(s.provider, ev.provider),
                            source=pick(s.source, ev.source),
                            deleted_at=earliest(s.deleted_at, ev.deleted_at), text=None)
        case _:
            return s


def _text(s: MessageFold, ev: d.MessagePosted | d.MessageEdited, st: Stamp) -> Reg[str] | None:
    """The text register, unless the message is deleted (a tombstone is never written over)."""
    if s.deleted_at is not None or ev.text is None:
        return s.text
    return write(s.text, st, ev.text)


def _fixed(value: str | None, said: str | None) -> str | None:
    """A value set at creation (``chat_type``, ``message_type``): should two ever differ, the
    greater string wins (:func:`~projector.lww.pick`); ``None`` is "not said"."""
    return value if said is None else pick(value, said)

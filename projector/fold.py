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

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeAlias

import msgspec

from contracts import domain as d
from contracts.natterly_ids import is_session_visitor
from projector.fold_people import apply_agent, apply_visitor, described_agents
from projector.lww import pick as _pick
from projector.lww import write as _write
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



#: (occurred_at, received_at, log_offset, rank, event_id): what orders writes.


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a <= b else b


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b




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

_LIFECYCLE: dict[str, str | None] = {}


def _lifecycle(word: str) -> str | None:
    """:data:`PROVIDER_STATUS` of a status word as sent (memoised: a few words repeat)."""
    try:
        return _LIFECYCLE[word]
    except KeyError:
        if len(_LIFECYCLE) > 1024:  # a sender inventing words without end
            _LIFECYCLE.clear()
        found = _LIFECYCLE[word] = PROVIDER_STATUS.get(word.casefold())
        return found


# ---------------------------------------------------------------------------- affected

# AggregateRef(...) goes through the NamedTuple's Python-level __new__; building the tuple
# directly is three times cheaper, and the fold builds one or two refs per event.
_tuple_new: Any = tuple.__new__


def _chat_refs(ev: Any) -> list[AggregateRef]:
    return [_tuple_new(AggregateRef, ("chat", ev.chat_id))]


def _message_refs(ev: Any) -> list[AggregateRef]:
    chat_id = ev.chat_id
    return [_tuple_new(AggregateRef, ("chat", chat_id)),
            _tuple_new(AggregateRef, ("message", f"{chat_id}/{ev.message_id}"))]


def _snapshot_refs(ev: Any) -> list[AggregateRef]:
    """A snapshot's chat, and the agents it names (their rows take the name)."""
    refs = [_tuple_new(AggregateRef, ("chat", ev.chat_id))]
    agent = ev.agent
    if ev.agents:
        for agent_id in dict.fromkeys(a.id for a in described_agents(ev)):
            refs.append(_tuple_new(AggregateRef, ("agent", agent_id)))
    elif agent is not None and agent.name is not None:
        refs.append(_tuple_new(AggregateRef, ("agent", agent.id)))
    return refs


def _posted_refs(ev: Any) -> list[AggregateRef]:
    """A message's chat and message, and its author if an agent named with id and name."""
    chat_id = ev.chat_id
    refs = [_tuple_new(AggregateRef, ("chat", chat_id)),
            _tuple_new(AggregateRef, ("message", f"{chat_id}/{ev.message_id}"))]
    author = ev.author
    if author.id is not None and author.name is not None and author.role == "agent":
        refs.append(_tuple_new(AggregateRef, ("agent", author.id)))
    return refs


def _visitor_refs(ev: Any) -> list[AggregateRef]:
    alias = ev.alias
    if alias is None or alias == ev.visitor_id:
        return [_tuple_new(AggregateRef, ("visitor", ev.visitor_id))]
    # Both sides of the link: the visitor learns its session, the session its visitor.
    return [_tuple_new(AggregateRef, ("visitor", ev.visitor_id)),
            _tuple_new(AggregateRef, ("visitor", alias))]


def _agent_refs(ev: Any) -> list[AggregateRef]:
    return [_tuple_new(AggregateRef, ("agent", ev.agent_id))]


# Dispatch on the exact type: isinstance() against a msgspec Struct class takes the slow
# (metaclass) path, ~150 ns per miss, and the fold asks once per event.
_AFFECTED: dict[type, Callable[[Any], list[AggregateRef]]] = {
    d.VisitorSeen: _visitor_refs,
    d.AgentStatusChanged: _agent_refs,
    d.MessagePosted: _posted_refs,
    # Chat data names agents in the snapshot (a ChatAccepted / ChatAssigned names the same
    # agent as its webhook's snapshot: naming the agent row from both would double the work).
    d.ChatUpdated: _snapshot_refs,
    d.MessageEdited: _message_refs,
    d.MessageDeleted: _message_refs,
}


def affected(event: d.DomainEvent) -> list[AggregateRef]:
    """Every aggregate one domain event touches: chat events their chat (and message
    events their message too), VisitorSeen its visitor (and the session visitor it links,
    ``alias``), AgentStatusChanged its agent, and any chat event that names an agent
    (:func:`~projector.fold_people.described_agents`) that agent, for its name.

    Visitors learn about chats only from VisitorSeen (``normalise`` emits one beside every
    chat webhook that names a visitor); agents learn their status only from
    AgentStatusChanged: the agent on a chat is part of the chat's state, not an agent row.
    """
    refs = _AFFECTED.get(type(event), _chat_refs)
    return refs(event)


# ---------------------------------------------------------------------------- apply

# One handler per event kind, found by exact type (see _AFFECTED), and one ``replace`` per
# event (the fold's inner loop runs once per event and aggregate). A handler gets the
# event's stamp and, for chats, the provider, source and last activity already merged by
# _apply_chat (every chat event updates those three the same way).
_ChatHandler: TypeAlias = Callable[[ChatFold, Any, Stamp, str, str, datetime], ChatFold]
_replace = msgspec.structs.replace


def _named(names: dict[str, Reg[str]], agent: d.AgentRef | None, st: Stamp) -> dict[str, Reg[str]]:
    """``names`` with the agent's name, if this event gives one (a register per agent id)."""
    if agent is None or agent.name is None:
        return names
    prior = names.get(agent.id)
    written = _write(prior, st, agent.name)
    if written is prior:
        return names
    return {**names, agent.id: written}


def _all_named(names: dict[str, Reg[str]], agents: tuple[d.AgentRef, ...], st: Stamp
               ) -> dict[str, Reg[str]]:
    """``names`` with the name of each of ``agents`` that has one."""
    for agent in agents:
        names = _named(names, agent, st)
    return names


def _chat_started(s: ChatFold, ev: d.ChatStarted, st: Stamp,
                  provider: str, source: str, active: datetime) -> ChatFold:
    at = st[0]
    return _replace(
        s, provider=provider, source=source, active_at=active,
        opened=_write(s.opened, st, "waiting"),
        initiated_at=_min(s.initiated_at, ev.initiated_at or at),
    )


def _chat_updated(s: ChatFold, ev: d.ChatUpdated, st: Stamp,
                  provider: str, source: str, active: datetime) -> ChatFold:
    # "Not said" (None) leaves a register alone; written out rather than via a helper
    # because a snapshot states a dozen optional fields, most of them None.
    subject, department, site, visitor = ev.subject, ev.department, ev.site, ev.visitor
    location, browser, platform, agent = ev.location, ev.browser, ev.platform, ev.agent
    word, chat_type, closed_at, rating = ev.provider_status, ev.chat_type, ev.closed_at, ev.rating
    opened, idled, closed = s.opened, s.idled, s.closed
    status_reg = s.provider_status
    if word is not None:
        status_reg = _write(status_reg, st, word)
        lifecycle = _lifecycle(word)
        if lifecycle is None:
            pass
        elif lifecycle == "closed":
            closed = _write(closed, st, closed_at or st[0])
        elif lifecycle == "idle":
            idled = _write(idled, st, st[0])
        else:
            opened = _write(opened, st, lifecycle)
    visitor_reg, visitor_name, visitor_anonymous = s.visitor, s.visitor_name, s.visitor_anonymous
    visitor_session = s.visitor_session
    if visitor is not None:
        # A description without an id never clears the id an earlier one gave, and a
        # provisional (session) id never replaces a real one: each has its register.
        visitor_id = visitor.id
        if visitor_id is None:
            pass
        elif is_session_visitor(visitor_id):
            visitor_session = _write(visitor_session, st, visitor)
        else:
            visitor_reg = _write(visitor_reg, st, visitor)
        if visitor.name is not None:
            visitor_name = _write(visitor_name, st, visitor.name)
        if visitor.anonymous is not None:
            visitor_anonymous = _write(visitor_anonymous, st, visitor.anonymous)
    return _replace(
        s, provider=provider, source=source, active_at=active,
        subject=s.subject if subject is None else _write(s.subject, st, subject),
        department=(s.department if department is None
                    else _write(s.department, st, department)),
        site=s.site if site is None else _write(s.site, st, site),
        visitor=visitor_reg, visitor_name=visitor_name, visitor_anonymous=visitor_anonymous,
        visitor_session=visitor_session,
        location=s.location if location is None else _write(s.location, st, location),
        browser=s.browser if browser is None else _write(s.browser, st, browser),
        platform=s.platform if platform is None else _write(s.platform, st, platform),
        agent=s.agent if agent is None else _write(s.agent, st, agent),
        agent_names=_all_named(_named(s.agent_names, agent, st), ev.agents, st),
        initiated_at=_min(s.initiated_at, ev.initiated_at),
        last_message_at=_max(s.last_message_at, ev.last_message_at),
        provider_status=status_reg, opened=opened, idled=idled, closed=closed,
        chat_type=s.chat_type if chat_type is None else _pick(s.chat_type, chat_type),
        closed_at=s.closed_at if closed_at is None else _write(s.closed_at, st, closed_at),
        rating=s.rating if rating is None else _write(s.rating, st, rating),
    )


def _chat_accepted(s: ChatFold, ev: d.ChatAccepted, st: Stamp,
                   provider: str, source: str, active: datetime) -> ChatFold:
    agent = ev.agent
    return _replace(
        s, provider=provider, source=source, active_at=active,
        opened=_write(s.opened, st, "active"),
        accepted_at=_min(s.accepted_at, st[0]),
        agent=s.agent if agent is None else _write(s.agent, st, agent),
        agent_names=_named(s.agent_names, agent, st),
    )


def _chat_assigned(s: ChatFold, ev: d.ChatAssigned, st: Stamp,
                   provider: str, source: str, active: datetime) -> ChatFold:
    agent = ev.agent
    return _replace(
        s, provider=provider, source=source, active_at=active,
        agent=_write(s.agent, st, agent),  # None: explicitly unassigned
        agent_names=_named(s.agent_names, agent, st),
    )


def _chat_idle(s: ChatFold, ev: d.ChatIdle, st: Stamp,
               provider: str, source: str, active: datetime) -> ChatFold:
    return _replace(
        s, provider=provider, source=source, active_at=active,
        idled=_write(s.idled, st, st[0]),
    )


def _chat_closed(s: ChatFold, ev: d.ChatClosed, st: Stamp,
                 provider: str, source: str, active: datetime) -> ChatFold:
    return _replace(
        s, provider=provider, source=source, active_at=active,
        closed=_write(s.closed, st, ev.closed_at or st[0]),
    )


def _chat_completed(s: ChatFold, ev: d.ChatCompleted, st: Stamp,
                    provider: str, source: str, active: datetime) -> ChatFold:
    # A flag, not a close (Natterly: "completed after acceptance and messages").
    return _replace(s, provider=provider, source=source, active_at=active, completed=True)


def _chat_ignored(s: ChatFold, ev: d.ChatIgnored, st: Stamp,
                  provider: str, source: str, active: datetime) -> ChatFold:
    return _replace(s, provider=provider, source=source, active_at=active, ignored=True)


def _transcript_sent(s: ChatFold, ev: d.TranscriptSent, st: Stamp,
                     provider: str, source: str, active: datetime) -> ChatFold:
    return _replace(s, provider=provider, source=source, active_at=active, transcript_sent=True)


def _chat_rated(s: ChatFold, ev: d.ChatRated, st: Stamp,
                provider: str, source: str, active: datetime) -> ChatFold:
    rating = ev.rating
    return _replace(
        s, provider=provider, source=source, active_at=active,
        rating=s.rating if rating is None else _write(s.rating, st, rating),
    )


def _chat_message(s: ChatFold, ev: _MessageEvent, st: Stamp,
                  provider: str, source: str, active: datetime) -> ChatFold:
    messages, deleted, internal, last = s.messages, s.deleted, s.internal, s.last_message_at
    names = s.agent_names
    key = message_key(ev.message_id)
    kind = type(ev)
    if kind is d.MessageDeleted:
        if key not in deleted:
            deleted = deleted | {key}
    else:
        if key not in messages:
            messages = messages | {key}
        if ev.internal and key not in internal:  # type: ignore[union-attr]
            internal = internal | {key}
        if kind is d.MessagePosted:
            last = _max(last, ev.posted_at)  # type: ignore[union-attr]
            if ev.author.id is not None:  # type: ignore[union-attr]
                # An agent's message with id and name names its author.
                names = _all_named(names, described_agents(ev), st)
    return _replace(
        s, provider=provider, source=source, active_at=active,
        messages=messages, deleted=deleted, internal=internal, last_message_at=last,
        agent_names=names,
    )


_MessageEvent: TypeAlias = d.MessagePosted | d.MessageEdited | d.MessageDeleted

_CHAT: dict[type, _ChatHandler] = {
    d.ChatStarted: _chat_started,
    d.ChatUpdated: _chat_updated,
    d.ChatAccepted: _chat_accepted,
    d.ChatAssigned: _chat_assigned,
    d.ChatIdle: _chat_idle,
    d.ChatIgnored: _chat_ignored,
    d.TranscriptSent: _transcript_sent,
    d.ChatCompleted: _chat_completed,
    d.ChatClosed: _chat_closed,
    d.ChatRated: _chat_rated,
    d.MessagePosted: _chat_message,
    d.MessageEdited: _chat_message,
    d.MessageDeleted: _chat_message,
}
_NOT_CHAT_EVENTS = (d.VisitorSeen, d.AgentStatusChanged)


def _apply_chat(s: ChatFold, ev: Any, st: Stamp) -> ChatFold:
    handler = _CHAT.get(type(ev))
    if handler is None:
        if type(ev) in _NOT_CHAT_EVENTS:
            return s  # no concern of a chat
        raise TypeError(f"not a domain event: {type(ev).__name__}")
    provider, source, active = s.provider, s.source, s.active_at
    if provider is None or ev.provider > provider:  # see _pick
        provider = ev.provider
    if source is None or ev.source > source:
        source = ev.source
    at = st[0]
    if active is None or at > active:  # max
        active = at
    return handler(s, ev, st, provider, source, active)


def _apply_message(state: MessageFold, ev: Any, st: Stamp) -> MessageFold:
    kind = type(ev)
    if kind not in _MESSAGE_EVENTS:
        return state
    provider, source = _pick(state.provider, ev.provider), _pick(state.source, ev.source)
    if kind is d.MessageDeleted:
        # The tombstone wins over every edit, whichever arrives first: the text is
        # dropped now and never written again (see the ``deleted_at`` checks below).
        return _replace(
            state, provider=provider, source=source,
            deleted_at=_min(state.deleted_at, ev.deleted_at), text=None,
        )
    text, message_type = ev.text, ev.message_type
    written: Reg[str] | None = state.text
    if state.deleted_at is None and text is not None:
        written = _write(written, st, text)
    internal = state.internal or ev.internal
    typed = state.message_type if message_type is None else _pick(state.message_type, message_type)
    if kind is d.MessagePosted:
        return _replace(
            state, provider=provider, source=source,
            author=_write(state.author, st, ev.author),
            posted_at=_min(state.posted_at, ev.posted_at),
            text=written, internal=internal, message_type=typed,
        )
    return _replace(
        state, provider=provider, source=source,
        edited_at=_max(state.edited_at, ev.edited_at),
        text=written, internal=internal, message_type=typed,
    )


_MESSAGE_EVENTS = frozenset((d.MessagePosted, d.MessageEdited, d.MessageDeleted))


def _empty(ref: AggregateRef) -> FoldState:
    kind, id_ = ref  # unpacked once rather than up to four property reads
    if kind == "chat":
        return ChatFold(id=id_)
    if kind == "message":
        chat_id, _, message_id = id_.partition("/")
        return MessageFold(chat_id=chat_id, id=message_id)
    if kind == "visitor":
        return VisitorFold(id=id_)
    return AgentFold(id=id_)


_APPLY: dict[str, Callable[[Any, Any, Stamp], FoldState]] = {
    "chat": _apply_chat,
    "message": _apply_message,
    "visitor": apply_visitor,
    "agent": apply_agent,
}


def apply(ref: AggregateRef, state: FoldState | None, event: d.DomainEvent) -> FoldState:
    """Fold one event into the state of ``ref`` (``None``: the aggregate is new).

    Pure, idempotent, and commutative across the events of one aggregate. ``ref`` should
    be one of ``affected(event)``; an event that does not concern ``ref`` leaves the
    state as it was (a new aggregate's state is then empty but for its id).
    """
    kind = ref[0]  # ref.kind: indexing is a little cheaper than the NamedTuple's property
    if state is None:
        state = _empty(ref)
    elif type(state) is not STATE_TYPE[kind]:
        raise TypeError(f"{type(state).__name__} is not the state of a {kind}")
    received, offset = event.received_at, event.log_offset
    stamp = (event.occurred_at, NEVER if received is None else received,
             -1 if offset is None else offset, RANK[type(event)], event.event_id)
    return _APPLY[kind](state, event, stamp)

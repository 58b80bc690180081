"""The fold's fast path: :func:`affected` and :func:`apply` of :mod:`projector.fold`, the
same functions (``tests/projector/test_fold_fast.py`` proves it on generated event sets),
written for speed; the projector's :class:`~projector.folder.Folder` folds with these.

Read :mod:`projector.fold` for what the fold does; this module only does it faster, and is
kept because ``bench/fold.py`` measured the plain fold at about 0.7x this one's records per
CPU-second, which cost a rebuild 10-12 % of its rate (``bench/replay.py --baseline``;
docs/benchmarks-history.md, 2026-12-06). What makes it faster, each measured: events are
dispatched by exact type through dicts (a ``match`` class pattern is an ``isinstance``, and
a miss against a msgspec Struct class takes the metaclass path, ~100 ns); a chat's provider,
source and last activity are merged before its handler, which writes every field in one
``replace`` (no dict of writes to unpack); refs are built with ``tuple.__new__`` (a
NamedTuple's ``__new__`` is Python code, twice the cost); registers are written inline
where a snapshot states a dozen optional fields; status words are memoised.
Visitors and agents are folded by :mod:`projector.fold_people` as in the plain fold.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeAlias

import msgspec

from contracts import domain as d
from contracts.natterly_ids import is_session_visitor
from projector.fold import PROVIDER_STATUS, RANK
from projector.fold_people import apply_agent, apply_visitor, described_agents
from projector.lww import earliest as _min
from projector.lww import latest as _max
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

__all__ = ["affected", "apply"]




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
    """:func:`projector.fold.affected`, faster."""
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
        holders=_held(s.holders, agent),
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
        holders=_held(s.holders, agent),
    )


def _chat_assigned(s: ChatFold, ev: d.ChatAssigned, st: Stamp,
                   provider: str, source: str, active: datetime) -> ChatFold:
    agent = ev.agent
    return _replace(
        s, provider=provider, source=source, active_at=active,
        agent=_write(s.agent, st, agent),  # None: explicitly unassigned
        agent_names=_named(s.agent_names, agent, st),
        holders=_held(s.holders, agent),
    )


def _held(holders: frozenset[str], agent: d.AgentRef | None) -> frozenset[str]:
    """The agents that held the chat, with ``agent`` (if any) among them."""
    if agent is None or agent.id in holders:
        return holders
    return holders | {agent.id}


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
    names, posts = s.agent_names, s.posts
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
            post = (key, ev.posted_at, ev.author.role)  # type: ignore[union-attr]
            if post not in posts:
                posts = posts | {post}
            if ev.author.id is not None:  # type: ignore[union-attr]
                # An agent's message with id and name names its author.
                names = _all_named(names, described_agents(ev), st)
    return _replace(
        s, provider=provider, source=source, active_at=active,
        messages=messages, deleted=deleted, internal=internal, last_message_at=last,
        agent_names=names, posts=posts,
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
    """:func:`projector.fold.apply`, faster."""
    kind = ref[0]  # ref.kind: indexing is a little cheaper than the NamedTuple's property
    if state is None:
        state = _empty(ref)
    elif type(state) is not STATE_TYPE[kind]:
        raise TypeError(f"{type(state).__name__} is not the state of a {kind}")
    received, offset = event.received_at, event.log_offset
    stamp = (event.occurred_at, NEVER if received is None else received,
             -1 if offset is None else offset, RANK[type(event)], event.event_id)
    return _APPLY[kind](state, event, stamp)

"""The pure fold: domain events in, chat / message / visitor / agent states out. No I/O.

``apply(ref, state, event)`` is a join of a semilattice: every field of a fold state is
either

* a **last-writer-wins register** (:class:`Reg`) that keeps the value written by the
  event with the greatest *stamp* ``(occurred_at, RANK[kind], event_id)``;
* a **min** or **max** of times (first seen, last message…);
* a **grow-only** flag or set (``completed``, message ids, deletion tombstones).

Each of these merges is commutative, associative and idempotent, so any permutation and
any duplication of one aggregate's events folds to the same state — which is what lets
the projector take Kafka's at-least-once, provider-reordered delivery as it comes.

Conflict resolution (also in docs/projector.md, "The fold"):

1. the later ``occurred_at`` wins;
2. at equal time (Natterly sends whole seconds, so ties are common) the event kind that
   comes later in a chat's life wins, by :data:`RANK`:
   closed > completed > idle > ignored > accepted > assigned > updated > started (and
   for messages: deleted > edited > posted);
3. at equal time and kind, the greater ``event_id`` wins (arbitrary but fixed).

A field only takes part when the event actually states it: ``None`` in an optional
field means "not said", not "cleared" — so a ChatClosed that carries no agent and
arrives before its ChatAccepted still ends ``closed`` *with* the agent. The one
explicit clearing is ChatAssigned with no agent (Natterly's "unassigned").

The chat status is derived from three registers (last open, last idle, last close) by
:func:`chat_status`, which equals replaying the lifecycle events in stamp order: closed
stays closed through a later ChatIdle; only a later ChatStarted / ChatAccepted reopens.
Messages: edits are LWW; a deletion is a tombstone that wins over every edit whatever
the order, and ``message_count`` counts distinct messages posted or edited, minus
deleted ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from hashlib import blake2b
from typing import Any, Generic, Literal, NamedTuple, TypeAlias, TypeVar

import msgspec

from contracts import domain as d

__all__ = [
    "RANK",
    "AgentFold",
    "AggregateKind",
    "AggregateRef",
    "ChatFold",
    "FoldState",
    "MessageFold",
    "Reg",
    "VisitorFold",
    "affected",
    "apply",
    "chat_status",
    "decode_state",
    "encode_state",
    "message_key",
    "message_ref",
]

T = TypeVar("T")

AggregateKind: TypeAlias = Literal["chat", "message", "visitor", "agent"]


class AggregateRef(NamedTuple):
    """One folded aggregate. Message ids are namespaced by chat: ``"{chat_id}/{message_id}"``."""

    kind: AggregateKind
    id: str


def message_key(message_id: str) -> int:
    """A stable 64-bit key of a message id, for a chat's sets of messages.

    Two ids of one chat sharing a key (odds about n²/2⁶⁵ for n messages: ~3·10⁻¹² for
    ten thousand) would make ``message_count`` one short; the message itself is unaffected.
    """
    return int.from_bytes(blake2b(message_id.encode(), digest_size=8).digest(), "big")


def message_ref(chat_id: str, message_id: str) -> AggregateRef:
    """The ref of a message (message ids are only unique within their chat)."""
    return AggregateRef("message", f"{chat_id}/{message_id}")


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


class Reg(msgspec.Struct, Generic[T], frozen=True, array_like=True):
    """A last-writer-wins register: ``value`` as written by the event with the greatest stamp."""

    at: datetime
    rank: int
    event_id: str
    value: T


Stamp: TypeAlias = tuple[datetime, int, str]


def _write(reg: Reg[T] | None, stamp: Stamp, value: T) -> Reg[T]:
    """Merge one write into a register (keeps whichever has the greater stamp)."""
    if reg is not None:
        # The hot path of the fold: compare times first, build tuples only on a tie.
        at = reg.at
        if at > stamp[0] or (at == stamp[0] and (reg.rank, reg.event_id) >= stamp[1:]):
            return reg
    return Reg(stamp[0], stamp[1], stamp[2], value)


def _pick(a: str | None, b: str) -> str:
    """Provider and source never change within an aggregate; should they ever differ,
    the greater string wins, which is as order-independent as a register and cheaper."""
    return b if a is None or b > a else a


def _maybe(reg: Reg[T] | None, stamp: Stamp, value: T | None) -> Reg[T] | None:
    """Like :func:`_write` but ``None`` means "not stated": the register is left alone."""
    if value is None:
        return reg
    return _write(reg, stamp, value)


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


class ChatFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="chat"):
    """Everything the fold knows about one chat, with the versions that make merges commute."""

    id: str
    provider: str | None = None
    source: str | None = None
    #: The lifecycle, as three registers; :func:`chat_status` derives the status.
    #: ``opened``: the last ChatStarted ("waiting") or ChatAccepted ("active");
    opened: Reg[str] | None = None
    #: ``idled``: the last ChatIdle (value: its time);
    idled: Reg[datetime] | None = None
    #: ``closed``: the last ChatClosed or ChatCompleted (value: when it closed).
    closed: Reg[datetime] | None = None
    subject: Reg[str] | None = None
    department: Reg[d.DepartmentRef] | None = None
    #: ``value=None`` only after an explicit unassignment.
    agent: Reg[d.AgentRef | None] | None = None
    visitor: Reg[d.VisitorRef] | None = None
    site: Reg[d.SiteRef] | None = None
    location: Reg[d.Location] | None = None
    browser: Reg[str] | None = None
    platform: Reg[str] | None = None
    rating: Reg[d.Rating] | None = None
    initiated_at: datetime | None = None  # min
    accepted_at: datetime | None = None  # min
    last_message_at: datetime | None = None  # max
    #: latest ``occurred_at`` of any event of this chat (max): "last activity" for listings.
    active_at: datetime | None = None
    ignored: bool = False  # grow-only
    completed: bool = False  # grow-only
    transcript_sent: bool = False  # grow-only
    #: messages seen posted or edited (grow-only), and deleted ones (tombstones), as
    #: :func:`message_key` hashes: a chat's state is rewritten every batch that touches
    #: it, and 8-byte keys keep that cost a fifth of what 36-character uuids would.
    messages: frozenset[int] = frozenset()
    deleted: frozenset[int] = frozenset()


class MessageFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="message"):
    """One message. Deletion is a tombstone: once ``deleted_at`` is set the text is gone for good."""

    chat_id: str
    id: str
    provider: str | None = None
    source: str | None = None
    author: Reg[d.Author] | None = None
    #: posted text, then edits (LWW by stamp); None once deleted, whatever the order.
    text: Reg[str] | None = None
    posted_at: datetime | None = None  # min
    edited_at: datetime | None = None  # max
    deleted_at: datetime | None = None  # min; set = tombstone


class VisitorFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="visitor"):
    """A visitor: identity fields LWW, first/last seen min/max, distinct chats grow-only."""

    id: str
    provider: str | None = None
    source: str | None = None
    name: Reg[str] | None = None
    email: Reg[str] | None = None
    anonymous: Reg[bool] | None = None
    first_seen: datetime | None = None  # min
    last_seen: datetime | None = None  # max
    chats: frozenset[str] = frozenset()


class AgentFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="agent"):
    """An agent: ``status`` LWW (its stamp's time is ``since``), ``name`` LWW."""

    id: str
    provider: str | None = None
    source: str | None = None
    name: Reg[str] | None = None
    status: Reg[str] | None = None


FoldState: TypeAlias = ChatFold | MessageFold | VisitorFold | AgentFold


def _key(reg: Reg[T]) -> Stamp:
    return (reg.at, reg.rank, reg.event_id)


def chat_status(state: ChatFold) -> str | None:
    """``waiting`` / ``active`` / ``idle`` / ``closed`` (None: no lifecycle event seen yet).

    Equivalent to replaying the lifecycle events in stamp order through this machine:
    ChatStarted → waiting, ChatAccepted → active (both also reopen a closed chat),
    ChatIdle → idle unless closed, ChatClosed / ChatCompleted → closed. So "closed" is
    sticky against a later ChatIdle, and only a later start or accept reopens a chat.
    """
    opened, idled, closed = state.opened, state.idled, state.closed
    if closed is not None and (opened is None or _key(opened) < _key(closed)):
        return "closed"
    if idled is not None and (opened is None or _key(idled) > _key(opened)):
        return "idle"
    return None if opened is None else opened.value


_MessageEvent = d.MessagePosted | d.MessageEdited | d.MessageDeleted


# ---------------------------------------------------------------------------- affected


def affected(event: d.DomainEvent) -> list[AggregateRef]:
    """Every aggregate one domain event touches: chat events their chat (and message
    events their message too), VisitorSeen its visitor, AgentStatusChanged its agent.

    Visitors learn about chats only from VisitorSeen (``normalise`` emits one beside every
    chat webhook that names a visitor), agents only from AgentStatusChanged: the agent on
    a chat is part of the chat's state, not an agent row.
    """
    if isinstance(event, d.VisitorSeen):
        return [AggregateRef("visitor", event.visitor_id)]
    if isinstance(event, d.AgentStatusChanged):
        return [AggregateRef("agent", event.agent_id)]
    if isinstance(event, _MessageEvent):
        return [AggregateRef("chat", event.chat_id), message_ref(event.chat_id, event.message_id)]
    return [AggregateRef("chat", event.chat_id)]


# ---------------------------------------------------------------------------- apply


def _stamp(event: d.DomainEvent) -> Stamp:
    return (event.occurred_at, RANK[type(event)], event.event_id)


# One handler per event kind: a dict lookup instead of a chain of isinstance checks, and
# one ``replace`` per event (the fold's inner loop runs once per event and aggregate).
_ChatHandler: TypeAlias = Callable[[ChatFold, Any, Stamp], ChatFold]
_replace = msgspec.structs.replace


def _chat_started(s: ChatFold, ev: d.ChatStarted, st: Stamp) -> ChatFold:
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        opened=_write(s.opened, st, "waiting"),
        initiated_at=_min(s.initiated_at, ev.initiated_at or ev.occurred_at),
    )


def _chat_updated(s: ChatFold, ev: d.ChatUpdated, st: Stamp) -> ChatFold:
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        subject=_maybe(s.subject, st, ev.subject),
        department=_maybe(s.department, st, ev.department),
        site=_maybe(s.site, st, ev.site),
        visitor=_maybe(s.visitor, st, ev.visitor),
        location=_maybe(s.location, st, ev.location),
        browser=_maybe(s.browser, st, ev.browser),
        platform=_maybe(s.platform, st, ev.platform),
        initiated_at=_min(s.initiated_at, ev.initiated_at),
        last_message_at=_max(s.last_message_at, ev.last_message_at),
    )


def _chat_accepted(s: ChatFold, ev: d.ChatAccepted, st: Stamp) -> ChatFold:
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        opened=_write(s.opened, st, "active"),
        accepted_at=_min(s.accepted_at, ev.occurred_at),
        agent=_maybe(s.agent, st, ev.agent),
    )


def _chat_assigned(s: ChatFold, ev: d.ChatAssigned, st: Stamp) -> ChatFold:
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        agent=_write(s.agent, st, ev.agent),  # None: explicitly unassigned
    )


def _chat_idle(s: ChatFold, ev: d.ChatIdle, st: Stamp) -> ChatFold:
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        idled=_write(s.idled, st, ev.occurred_at),
    )


def _chat_closed(s: ChatFold, ev: d.ChatClosed | d.ChatCompleted, st: Stamp) -> ChatFold:
    completed = s.completed or isinstance(ev, d.ChatCompleted)
    closed_at = ev.closed_at if isinstance(ev, d.ChatClosed) and ev.closed_at else ev.occurred_at
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        closed=_write(s.closed, st, closed_at),
        completed=completed,
    )


def _chat_flag(s: ChatFold, ev: d.ChatIgnored | d.TranscriptSent, st: Stamp) -> ChatFold:
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        ignored=s.ignored or isinstance(ev, d.ChatIgnored),
        transcript_sent=s.transcript_sent or isinstance(ev, d.TranscriptSent),
    )


def _chat_rated(s: ChatFold, ev: d.ChatRated, st: Stamp) -> ChatFold:
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        rating=_maybe(s.rating, st, ev.rating),
    )


def _chat_message(
    s: ChatFold, ev: d.MessagePosted | d.MessageEdited | d.MessageDeleted, st: Stamp
) -> ChatFold:
    messages, deleted, last = s.messages, s.deleted, s.last_message_at
    key = message_key(ev.message_id)
    if isinstance(ev, d.MessageDeleted):
        if key not in deleted:
            deleted = deleted | {key}
    else:
        if key not in messages:
            messages = messages | {key}
        if isinstance(ev, d.MessagePosted):
            last = _max(last, ev.posted_at)
    return _replace(
        s,
        provider=_pick(s.provider, ev.provider),
        source=_pick(s.source, ev.source),
        active_at=_max(s.active_at, ev.occurred_at),
        messages=messages,
        deleted=deleted,
        last_message_at=last,
    )


def _untouched(s: ChatFold, ev: d.DomainEvent, st: Stamp) -> ChatFold:
    return s


_CHAT: dict[type, _ChatHandler] = {
    d.ChatStarted: _chat_started,
    d.ChatUpdated: _chat_updated,
    d.ChatAccepted: _chat_accepted,
    d.ChatAssigned: _chat_assigned,
    d.ChatIdle: _chat_idle,
    d.ChatIgnored: _chat_flag,
    d.TranscriptSent: _chat_flag,
    d.ChatCompleted: _chat_closed,
    d.ChatClosed: _chat_closed,
    d.ChatRated: _chat_rated,
    d.MessagePosted: _chat_message,
    d.MessageEdited: _chat_message,
    d.MessageDeleted: _chat_message,
    d.VisitorSeen: _untouched,
    d.AgentStatusChanged: _untouched,
}


def _apply_chat(state: ChatFold, ev: d.DomainEvent, st: Stamp) -> ChatFold:
    return _CHAT[type(ev)](state, ev, st)


def _apply_message(state: MessageFold, ev: d.DomainEvent, st: Stamp) -> MessageFold:
    provider, source = _pick(state.provider, ev.provider), _pick(state.source, ev.source)
    deleted = state.deleted_at is not None
    match ev:
        case d.MessagePosted():
            return _replace(
                state,
                provider=provider,
                source=source,
                author=_write(state.author, st, ev.author),
                posted_at=_min(state.posted_at, ev.posted_at),
                text=state.text if deleted else _maybe(state.text, st, ev.text),
            )
        case d.MessageEdited():
            return _replace(
                state,
                provider=provider,
                source=source,
                edited_at=_max(state.edited_at, ev.edited_at),
                text=state.text if deleted else _maybe(state.text, st, ev.text),
            )
        case d.MessageDeleted():
            # The tombstone wins over every edit, whichever arrives first: the text is
            # dropped now and never written again (see the ``deleted`` checks above).
            return _replace(
                state,
                provider=provider,
                source=source,
                deleted_at=_min(state.deleted_at, ev.deleted_at),
                text=None,
            )
    return state


def _apply_visitor(state: VisitorFold, ev: d.DomainEvent, st: Stamp) -> VisitorFold:
    if not isinstance(ev, d.VisitorSeen):
        return state
    chats = state.chats
    if ev.chat_id is not None and ev.chat_id not in chats:
        chats = chats | {ev.chat_id}
    return _replace(
        state,
        provider=_pick(state.provider, ev.provider),
        source=_pick(state.source, ev.source),
        name=_maybe(state.name, st, ev.name),
        email=_maybe(state.email, st, ev.email),
        anonymous=_maybe(state.anonymous, st, ev.anonymous),
        first_seen=_min(state.first_seen, ev.occurred_at),
        last_seen=_max(state.last_seen, ev.occurred_at),
        chats=chats,
    )


def _apply_agent(state: AgentFold, ev: d.DomainEvent, st: Stamp) -> AgentFold:
    if not isinstance(ev, d.AgentStatusChanged):
        return state
    return _replace(
        state,
        provider=_pick(state.provider, ev.provider),
        source=_pick(state.source, ev.source),
        name=_maybe(state.name, st, ev.name),
        status=_write(state.status, st, ev.status),
    )


def _empty(ref: AggregateRef) -> FoldState:
    if ref.kind == "chat":
        return ChatFold(id=ref.id)
    if ref.kind == "message":
        chat_id, _, message_id = ref.id.partition("/")
        return MessageFold(chat_id=chat_id, id=message_id)
    if ref.kind == "visitor":
        return VisitorFold(id=ref.id)
    return AgentFold(id=ref.id)


_APPLY: dict[str, Callable[[FoldState, d.DomainEvent, Stamp], FoldState]] = {
    "chat": _apply_chat,  # type: ignore[dict-item]
    "message": _apply_message,  # type: ignore[dict-item]
    "visitor": _apply_visitor,  # type: ignore[dict-item]
    "agent": _apply_agent,  # type: ignore[dict-item]
}
_STATE_TYPE: dict[str, type[FoldState]] = {
    "chat": ChatFold,
    "message": MessageFold,
    "visitor": VisitorFold,
    "agent": AgentFold,
}


def apply(ref: AggregateRef, state: FoldState | None, event: d.DomainEvent) -> FoldState:
    """Fold one event into the state of ``ref`` (``None``: the aggregate is new).

    Pure, idempotent, and commutative across the events of one aggregate. ``ref`` should
    be one of ``affected(event)``; an event that does not concern ``ref`` leaves the
    state as it was (a new aggregate's state is then empty but for its id).
    """
    if state is None:
        state = _empty(ref)
    elif type(state) is not _STATE_TYPE[ref.kind]:
        raise TypeError(f"{type(state).__name__} is not the state of a {ref.kind}")
    return _APPLY[ref.kind](state, event, _stamp(event))


# ---------------------------------------------------------------------------- codecs

# "deterministic" sorts sets, so equal states always encode to equal bytes (a rebuilt
# projection can be compared with the live one byte for byte).
_ENCODER = msgspec.msgpack.Encoder(order="deterministic")
_DECODERS: dict[str, msgspec.msgpack.Decoder[FoldState]] = {
    kind: msgspec.msgpack.Decoder(cls) for kind, cls in _STATE_TYPE.items()
}


def encode_state(state: FoldState) -> bytes:
    """Compact, deterministic bytes of a fold state (msgpack)."""
    return _ENCODER.encode(state)


def decode_state(kind: str, data: bytes) -> FoldState:
    """Inverse of :func:`encode_state` for a state of aggregate kind ``kind``."""
    return _DECODERS[kind].decode(data)

"""The fold's state types and their codec: aggregate refs, last-writer-wins registers, the
chat / message / visitor / agent fold states, the chat status they derive, and the compact
deterministic msgpack encoding the stores keep. Data only; the fold itself (what an event
does to a state) is :mod:`projector.fold`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from typing import Generic, Literal, NamedTuple, TypeAlias, TypeVar

import msgspec

from contracts import domain as d
from contracts.state import Erasure

__all__ = [
    "MAX_PAGES",
    "NEVER",
    "SETTLE_AFTER",
    "STATE_TYPE",
    "AgentFold",
    "AggregateRef",
    "ChatFold",
    "FoldKind",
    "FoldState",
    "MessageFold",
    "Reg",
    "Spells",
    "Stamp",
    "VisitorFold",
    "chat_status",
    "decode_state",
    "encode_state",
    "message_key",
    "message_ref",
]

T = TypeVar("T")

#: Which fold state an :class:`AggregateRef` names (a message is folded and stored apart from
#: its chat); not the event topic a record travels on (:data:`contracts.topics.EventTopicKind`).
FoldKind: TypeAlias = Literal["chat", "message", "visitor", "agent"]


class AggregateRef(NamedTuple):
    """One folded aggregate. Message ids are namespaced by chat: ``"{chat_id}/{message_id}"``."""

    kind: FoldKind
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



#: The receive time of an event that has none (not read from the log): before any other.
NEVER = datetime(1, 1, 1, tzinfo=UTC)


class Reg(msgspec.Struct, Generic[T], frozen=True, array_like=True, omit_defaults=True, gc=False):
    """A last-writer-wins register: ``value`` as written by the event with the greatest stamp.

    The stamp is ``(at, received_at, log_offset, rank, event_id)`` (see :mod:`projector.fold`);
    the receive order comes last in the encoding, with defaults, so states stored before it
    existed still decode.
    """

    at: datetime
    rank: int
    event_id: str
    value: T
    received_at: datetime = NEVER
    log_offset: int = -1


#: What orders two writes of one register: (occurred_at, received_at, log_offset, rank,
#: event_id), compared as a tuple; the greater stamp wins (see projector.fold).
Stamp: TypeAlias = tuple[datetime, datetime, int, int, str]


class ChatFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="chat", gc=False):
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
    #: The last description naming a real visitor id (an id is never cleared by omission).
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
    #: Agent-only notes among them (grow-only: a note stays internal once internal).
    internal: frozenset[int] = frozenset()
    #: The provider's own status word.
    provider_status: Reg[str] | None = None
    #: ChatShipper's conversation type: set at creation, never changed, so a plain value
    #: (should two ever differ, the greater string wins, like ``provider``), not a register.
    chat_type: str | None = None
    #: Closing time as the chat data says it (later webhooks may carry it).
    closed_at: Reg[datetime] | None = None
    #: The visitor's name and anonymity from any description, with or without an id.
    visitor_name: Reg[str] | None = None
    visitor_anonymous: Reg[bool] | None = None
    #: The last name each agent of this chat was given (an id alone names nobody).
    agent_names: dict[str, Reg[str]] = {}
    #: The last description naming only a provisional, session-derived visitor id
    #: (``session:…``): the chat's visitor until any description gives a real id, which
    #: then wins whatever the order (a session id never replaces a real one).
    visitor_session: Reg[d.VisitorRef] | None = None
    #: What the analytics measures need (:mod:`projector.analytics`): each (message key,
    #: time posted, author role) a MessagePosted said (grow-only; deliveries of one message
    #: agree, and should two ever differ the measures take the earliest).
    posts: frozenset[tuple[int, datetime, str]] = frozenset()
    #: Every agent that held the chat: accepted it, was assigned it, or was named its agent
    #: by a snapshot (grow-only).
    holders: frozenset[str] = frozenset()
    #: The erasure that removed its personal fields (:mod:`projector.erasure`), if any.
    erasure: Erasure | None = None


class MessageFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="message", gc=False):
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
    internal: bool = False  # grow-only: an agent-only note stays one through edits
    message_type: str | None = None  # ChatShipper's; fixed at creation (see ChatFold.chat_type)
    erasure: Erasure | None = None  # as ChatFold.erasure


class VisitorFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="visitor", gc=False):
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
    #: Pages registered, oldest first: the newest :data:`MAX_PAGES` of all ever seen, by
    #: (time, url, title) — a union cut to its top, so as order-independent as a set.
    pages: tuple[d.PageView, ...] = ()
    #: Provisional (session) ids this visitor was known by before it was identified
    #: (grow-only); the query API shows their pages and chats as this visitor's.
    sessions: frozenset[str] = frozenset()
    #: On a provisional (session) visitor: the real visitor it turned out to be (LWW).
    identified_as: Reg[str] | None = None
    erasure: Erasure | None = None  # as ChatFold.erasure


#: How many of a visitor's registered pages are kept.
MAX_PAGES = 50


class AgentFold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="agent", gc=False):
    """An agent: ``status`` LWW (its stamp's time is ``since``), ``name`` LWW."""

    id: str
    provider: str | None = None
    source: str | None = None
    name: Reg[str] | None = None
    status: Reg[str] | None = None
    #: What the analytics measures need (:mod:`projector.analytics`): the agent's status
    #: changes, bounded (:class:`Spells`, folded by :mod:`projector.spells`).
    spells: Spells | None = None


class Spells(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True, gc=False):
    """An agent's status changes, in bounded space whatever its history
    (:mod:`projector.spells`): the changes within :data:`SETTLE_AFTER` of the latest one,
    kept as a sorted set of (time, status word); older ones settled into running totals.
    Once anything is settled, ``pending[0]`` is the boundary: the last settled spell ended
    there, and a change before it arrived too late to place (it is dropped)."""

    pending: tuple[tuple[datetime, str], ...] = ()
    #: Changes settled into the totals (``pending[0]`` not included).
    settled: int = 0
    #: Seconds online and invisible in the settled spells.
    online_s: float = 0.0
    invisible_s: float = 0.0
    #: The first change (once settled: ``pending[0]`` is no longer it).
    first_at: datetime | None = None


#: How far behind an agent's latest status change another may arrive and still be placed:
#: providers retry for up to 24 h (Natterly) and deliver up to an hour late (ChatShipper),
#: so two days. Older changes are settled into running totals (:class:`Spells`).
SETTLE_AFTER = timedelta(days=2)


FoldState: TypeAlias = ChatFold | MessageFold | VisitorFold | AgentFold


def _key(reg: Reg[T]) -> Stamp:
    return (reg.at, reg.received_at, reg.log_offset, reg.rank, reg.event_id)


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


STATE_TYPE: dict[str, type[FoldState]] = {
    "chat": ChatFold,
    "message": MessageFold,
    "visitor": VisitorFold,
    "agent": AgentFold,
}


# ---------------------------------------------------------------------------- codecs

# "deterministic" sorts sets, so equal states always encode to equal bytes (a rebuilt
# projection can be compared with the live one byte for byte).
_ENCODER = msgspec.msgpack.Encoder(order="deterministic")
_DECODERS: dict[str, msgspec.msgpack.Decoder[FoldState]] = {
    kind: msgspec.msgpack.Decoder(cls) for kind, cls in STATE_TYPE.items()
}


def encode_state(state: FoldState) -> bytes:
    """Compact, deterministic bytes of a fold state (msgpack)."""
    return _ENCODER.encode(state)


def decode_state(kind: str, data: bytes) -> FoldState:
    """Inverse of :func:`encode_state` for a state of aggregate kind ``kind``."""
    return _DECODERS[kind].decode(data)

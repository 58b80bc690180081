"""Provider-neutral domain events: what a webhook means, whoever sent it.

:func:`contracts.normalise.normalise` turns an :class:`~contracts.envelope.Envelope`
into a list of these; the projector folds them into the state in
``contracts.state``. ``DomainEvent`` is a tagged union: the JSON form carries
``"kind": "<class name>"``.

Every event has ``event_id`` (the envelope's, plus a ``#…`` suffix when one
webhook yields several events, so each is unique and stable across
re-deliveries), ``occurred_at``, ``provider`` and ``source``. A ``None`` in an
attribute means "this webhook did not say", never "cleared".

``occurred_at`` is when the provider says the change happened (ChatShipper: the
resource's ``updatedAt``, a message's ``createdAt``/``updatedAt``; Natterly: the
webhook's ``timestamp``), the envelope's time only when the body gives none.
``received_at`` (the envelope's) and ``log_offset`` (the record's offset in its
partition) say when Parley got it: at equal ``occurred_at`` the event received later
wins (see docs/projector.md, "The fold").
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "AgentRef",
    "AgentStatus",
    "AgentStatusChanged",
    "Author",
    "AuthorRole",
    "ChatAccepted",
    "ChatAssigned",
    "ChatClosed",
    "ChatCompleted",
    "ChatIdle",
    "ChatIgnored",
    "ChatRated",
    "ChatStarted",
    "ChatUpdated",
    "DepartmentRef",
    "DomainEvent",
    "Location",
    "MessageDeleted",
    "MessageEdited",
    "MessagePosted",
    "PageView",
    "Rating",
    "SiteRef",
    "TranscriptSent",
    "VisitorRef",
    "VisitorSeen",
    "parse_agent_status",
]

AgentStatus = Literal["online", "offline", "invisible"]
#: Who wrote a message: the visitor/contact, an agent, a bot, or the system.
AuthorRole = Literal["visitor", "agent", "bot", "system"]
#: A rating as the provider gave it (Natterly does not publish the format).
Rating = bool | int | float | str


class _Value(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of the small value objects embedded in events and state.

    ``gc=False`` here and on events: they hold only scalars and other such Structs, so
    they cannot form reference cycles and the collector need not track them."""


class DepartmentRef(_Value, frozen=True, kw_only=True):
    """A department (Natterly ``department``)."""

    id: str | None = None
    name: str | None = None


class AgentRef(_Value, frozen=True, kw_only=True):
    """An agent (Natterly user, ChatShipper user)."""

    id: str
    name: str | None = None


class VisitorRef(_Value, frozen=True, kw_only=True):
    """A visitor (Natterly visitor, ChatShipper contact); ``id`` may be unknown."""

    id: str | None = None
    name: str | None = None
    anonymous: bool | None = None


class SiteRef(_Value, frozen=True, kw_only=True):
    """Where the chat happens (Natterly site, ChatShipper organization)."""

    id: str | None = None
    name: str | None = None


class Location(_Value, frozen=True, kw_only=True):
    """Where the visitor is, as the provider geolocated it."""

    country: str | None = None
    country_code: str | None = None
    city: str | None = None


class PageView(_Value, frozen=True, kw_only=True):
    """A page a visitor loaded (Natterly ``SessionRegistration``)."""

    url: str
    title: str | None = None
    at: datetime


class Author(_Value, frozen=True, kw_only=True):
    """A message's author; ``id`` is the provider's id of whoever wrote it (ChatShipper
    ``message.user``, Natterly ``author.details.uuid``) when the webhook gives one."""

    role: AuthorRole
    name: str | None = None
    id: str | None = None


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag=True, gc=False):
    """Fields every domain event has; ``kind`` (the class name) is the tag."""

    event_id: str
    occurred_at: datetime
    provider: str
    source: str
    #: When the receiver accepted the webhook (None: not from the log, e.g. a test).
    received_at: datetime | None = None
    #: The record's offset in its partition (None: not known, e.g. a consumer's copy).
    log_offset: int | None = None


class _ChatEvent(_Event, frozen=True, kw_only=True):
    chat_id: str


class ChatStarted(_ChatEvent, frozen=True, kw_only=True):
    """A chat exists and waits for an agent (Natterly ChatInitiated; ChatShipper
    conversation created, or queued)."""

    initiated_at: datetime | None = None


class ChatAccepted(_ChatEvent, frozen=True, kw_only=True):
    """An agent took the chat; it is active."""

    agent: AgentRef | None = None


class ChatAssigned(_ChatEvent, frozen=True, kw_only=True):
    """The chat's agent changed; ``agent=None`` means unassigned."""

    agent: AgentRef | None = None


class ChatUpdated(_ChatEvent, frozen=True, kw_only=True):
    """A snapshot of the chat's descriptive attributes as of ``occurred_at``.

    ``provider_status`` is the provider's own status word; where it is one the fold knows
    (docs/projector.md) and more recent than Parley's lifecycle events, it drives the chat's
    status. ``agent`` is the agent the snapshot names (Natterly ``chat.user``, ChatShipper's
    active accepted agent participant); None means the snapshot names none, never
    "unassigned" (that is ``ChatAssigned`` with no agent). ``closed_at`` and ``rating`` are
    what the chat data says of them; ``chat_type`` is ChatShipper's conversation type
    (``contact``, ``bot``, ``agent``, ``system``). ``agents`` are the other agents the
    snapshot describes by name (ChatShipper participants whose user is populated): they
    name those agents, and assign nobody.
    """

    subject: str | None = None
    department: DepartmentRef | None = None
    site: SiteRef | None = None
    visitor: VisitorRef | None = None
    location: Location | None = None
    browser: str | None = None
    platform: str | None = None
    initiated_at: datetime | None = None
    last_message_at: datetime | None = None
    provider_status: str | None = None
    agent: AgentRef | None = None
    closed_at: datetime | None = None
    rating: Rating | None = None
    chat_type: str | None = None
    agents: tuple[AgentRef, ...] = ()


class MessagePosted(_ChatEvent, frozen=True, kw_only=True):
    """A message in the chat. ``internal`` marks agent-only notes (whisper,
    backchannel) and control messages; ``message_type`` is ChatShipper's type."""

    message_id: str
    text: str | None = None
    author: Author
    posted_at: datetime
    internal: bool = False
    message_type: str | None = None


class MessageEdited(_ChatEvent, frozen=True, kw_only=True):
    """A message's text changed. ``internal`` True: the edit says it is an agent-only note
    (False says nothing: a note stays internal once internal)."""

    message_id: str
    text: str | None = None
    edited_at: datetime
    internal: bool = False
    message_type: str | None = None


class MessageDeleted(_ChatEvent, frozen=True, kw_only=True):
    """A message was deleted."""

    message_id: str
    deleted_at: datetime


class ChatIdle(_ChatEvent, frozen=True, kw_only=True):
    """No staff reply within the site's idle timeout."""


class ChatIgnored(_ChatEvent, frozen=True, kw_only=True):
    """Nobody replied to a new chat within the site's ignore timeout."""


class ChatClosed(_ChatEvent, frozen=True, kw_only=True):
    """The chat was closed."""

    closed_at: datetime | None = None


class ChatCompleted(_ChatEvent, frozen=True, kw_only=True):
    """The chat finished after being accepted and messages exchanged."""


class ChatRated(_ChatEvent, frozen=True, kw_only=True):
    """The visitor rated the chat."""

    rating: Rating | None = None


class TranscriptSent(_ChatEvent, frozen=True, kw_only=True):
    """A transcript of the chat was sent."""


class VisitorSeen(_Event, frozen=True, kw_only=True):
    """A visitor was created, registered a session (``page``: the page loaded), or
    appeared in a chat.

    ``alias`` is another id the same visitor is known by: a provisional one Parley derived
    from a session (Natterly ``session:<session id>``, see ``contracts.natterly_ids``) when
    the webhook names both it and the visitor's real id. Folding it links the two visitors
    (the query API then shows them as one)."""

    visitor_id: str
    name: str | None = None
    email: str | None = None
    anonymous: bool | None = None
    chat_id: str | None = None
    page: PageView | None = None
    alias: str | None = None


class AgentStatusChanged(_Event, frozen=True, kw_only=True):
    """An agent went online, offline or invisible."""

    agent_id: str
    name: str | None = None
    status: AgentStatus


DomainEvent = (
    ChatStarted
    | ChatAccepted
    | ChatAssigned
    | ChatUpdated
    | MessagePosted
    | MessageEdited
    | MessageDeleted
    | ChatIdle
    | ChatIgnored
    | ChatClosed
    | ChatCompleted
    | ChatRated
    | TranscriptSent
    | VisitorSeen
    | AgentStatusChanged
)

_STATUS_WORDS: dict[str, AgentStatus] = {
    "online": "online",
    # Natterly's API setter says Visible where its webhook docs say Online.
    "visible": "online",
    "available": "online",
    "offline": "offline",
    "invisible": "invisible",
    "hidden": "invisible",
}


def parse_agent_status(value: str | None) -> AgentStatus | None:
    """Normalise a provider's agent status, case-insensitively; None if unknown."""
    if not value:
        return None
    return _STATUS_WORDS.get(value.strip().casefold())

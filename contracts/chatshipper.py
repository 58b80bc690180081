"""ChatShipper (Web1on1) webhook bodies, typed.

A ChatShipper webhook is ``{"id", "event", "timestamp", "organization",
"activity", "data"}``: ``activity`` is an ActivityStreams 2.0 summary whose
actor and object ids are full API URLs, on either API host; ``data`` holds the
resources of the event (``conversation`` and ``message`` for message events, the
resource under its own name otherwise) plus ``links``. Wire names are camelCase;
the Structs use snake_case attributes (``created_at`` ↔ ``createdAt``).

Only part of each object is documented, so everything but ``id`` and ``event``
is optional and unknown keys are ignored. Ids that the API can "populate" into
whole objects (a message's ``conversation``, a participant's ``user``, a
conversation's ``contact``) accept either form.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from contracts.chatshipper_events import EventName, parse_event_name
from contracts.decoding import check_utf8, decode

__all__ = [
    "API_HOSTS",
    "Activity",
    "ActivityObject",
    "ChatShipperWebhook",
    "Contact",
    "ContactProfile",
    "Conversation",
    "Data",
    "Message",
    "Participant",
    "ResourceRef",
    "User",
    "decode_chatshipper",
    "parse_resource_url",
    "ref_id",
]

#: The API hosts whose resource URLs appear in ``activity`` and ``data.links``.
API_HOSTS: Final = ("api.chatshipper.com", "api.web1on1.chat")

_RESOURCE_URL = re.compile(
    r"https?://(?:api\.chatshipper\.com|api\.web1on1\.chat)(?::\d+)?"
    r"(?:/v\d+)?/([A-Za-z]+)/([^/?#\s]+)(?:[/?#]\S*)?",
    re.IGNORECASE,
)

NonEmptyStr = Annotated[str, Meta(min_length=1)]


class ResourceRef(msgspec.Struct, frozen=True, kw_only=True):
    """A resource named by an API URL: ``collection`` (plural, e.g. ``users``) and ``id``."""

    collection: str
    id: str


def parse_resource_url(url: str | None) -> ResourceRef | None:
    """``https://api.web1on1.chat/v2/users/5c1a…`` → ResourceRef("users", "5c1a…").

    Accepts both API hosts (``api.chatshipper.com``, ``api.web1on1.chat``);
    anything else gives None.
    """
    if not url:
        return None
    match = _RESOURCE_URL.fullmatch(url.strip())
    if match is None:
        return None
    return ResourceRef(collection=match.group(1).lower(), id=match.group(2))


class _Lenient(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """Base of every ChatShipper object: camelCase on the wire, unknown keys ignored.

    ``gc=False``: a decoded body is a tree, never a cycle, so the collector need not
    track it (cheaper to build and free); do not put a Struct into its own containers."""


class ActivityObject(_Lenient, frozen=True, kw_only=True):
    """``activity.actor`` / ``activity.object``: ``{"id": <API URL>, "type": ...}``."""

    id: str | None = None
    type: str | None = None

    @property
    def ref(self) -> ResourceRef | None:
        """The resource the URL names, if it is an API URL of a known host."""
        return parse_resource_url(self.id)


class Activity(_Lenient, frozen=True, kw_only=True):
    """ActivityStreams 2.0 summary of what happened (``summary`` is for humans)."""

    context: str | None = msgspec.field(default=None, name="@context")
    type: str | None = None
    actor: ActivityObject | None = None
    # "object" is the ActivityStreams name; the attribute avoids the builtin.
    target: ActivityObject | None = msgspec.field(default=None, name="object")
    published: datetime | None = None
    summary: str | None = None


class User(_Lenient, frozen=True, kw_only=True):
    """A user: an agent, bot or admin. Only ``role`` is documented besides ``id``."""

    id: str | None = None
    organization: str | None = None
    name: str | None = None
    display_name: str | None = None
    email: str | None = None
    role: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ContactProfile(_Lenient, frozen=True, kw_only=True):
    """A contact's identifying details (at least an email or telephone, plus name)."""

    name: str | None = None
    email: str | None = None
    telephone: str | None = None


class Contact(_Lenient, frozen=True, kw_only=True):
    """A consumer; each contact belongs to exactly one conversation."""

    id: str | None = None
    organization: str | None = None
    name: str | None = None
    email: str | None = None
    telephone: str | None = None
    profile: ContactProfile | None = None
    conversation: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Participant(_Lenient, frozen=True, kw_only=True):
    """A user in a conversation: ``accepted`` agents are handling it."""

    user: str | User | None = None
    role: str | None = None
    active: bool | None = None
    accepted: bool | None = None
    inbox: bool | None = None

    @property
    def user_id(self) -> str | None:
        """The participant's user id, whether ``user`` is an id or populated."""
        return ref_id(self.user)


class Conversation(_Lenient, frozen=True, kw_only=True):
    """A conversation; ``type`` ∈ contact|bot|agent|system, ``status`` seen as
    queued, active, closed."""

    id: str | None = None
    organization: str | None = None
    type: str | None = None
    contact: str | Contact | None = None
    name: str | None = None
    status: str | None = None
    category: str | None = None
    participants: list[Participant] | None = None
    meta: dict[str, object] | None = None
    touchpoint: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Message(_Lenient, frozen=True, kw_only=True):
    """A message; ``role`` ∈ contact|agent|bot, ``is_backchannel`` = agents only."""

    id: str | None = None
    organization: str | None = None
    org_path: str | None = None
    conversation: str | Conversation | None = None
    type: str | None = None
    role: str | None = None
    content_type: str | None = None
    text: str | None = None
    is_backchannel: bool | None = None
    meta: dict[str, object] | None = None
    user: str | User | None = None
    touchpoint: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def conversation_id(self) -> str | None:
        """The conversation's id, whether ``conversation`` is an id or populated."""
        return ref_id(self.conversation)


class Data(_Lenient, frozen=True, kw_only=True):
    """The resources of one event, plus ``links`` (API URLs keyed by resource)."""

    conversation: Conversation | None = None
    message: Message | None = None
    contact: Contact | None = None
    user: User | None = None
    links: dict[str, str | None] | None = None


class ChatShipperWebhook(_Lenient, frozen=True, kw_only=True):
    """One ChatShipper webhook body.

    ``timestamp`` is ISO-8601 with or without fractional seconds (naive values
    are UTC). ``id`` is the webhook's unique id, Parley's event id.
    """

    id: NonEmptyStr
    event: NonEmptyStr
    timestamp: datetime | None = None
    organization: str | None = None
    activity: Activity | None = None
    data: Data | None = None

    @property
    def name(self) -> EventName:
        """``event`` parsed by the event-name grammar."""
        return parse_event_name(self.event)


def ref_id(value: str | Conversation | Contact | User | None) -> str | None:
    """The id of a reference that the API may send as an id or as the object."""
    if value is None or isinstance(value, str):
        return value or None
    return value.id or None


_DECODER = msgspec.json.Decoder(ChatShipperWebhook)


def decode_chatshipper(body: bytes, *, utf8_checked: bool = False) -> ChatShipperWebhook:
    """Decode a ChatShipper body; ContractError on invalid JSON, UTF-8 or types.

    ``utf8_checked``: the caller already checked the whole body is UTF-8 (e.g. it came out
    of ``decode_envelope``), so it is not checked again."""
    if not utf8_checked:
        check_utf8(body)
    return decode(_DECODER, body)

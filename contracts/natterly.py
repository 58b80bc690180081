"""Natterly webhook bodies, typed: ``{"event", "timestamp", "payload", "auth_token"}``.

Only ``ChatInitiated``'s payload is documented; the other eleven events are
modelled from Natterly's documented Chat, Message, User, Visitor, Session, Site
and Department structures, leniently: every field optional, unknown keys
ignored, expansions absent or null, a timestamp of ``0`` meaning "not set"
(``timestamps.from_unix_or_none``), status strings kept as sent (compare with
``natterly_ids.status_is``). :func:`decode_natterly` returns a ``…Webhook``
Struct, or :class:`UnknownNatterlyWebhook` for an event name added later.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from contracts.decoding import check_utf8, decode
from contracts.errors import ContractError
from contracts.natterly_ids import chat_id_of
from contracts.timestamps import UnixSeconds

__all__ = [
    "NATTERLY_EVENTS",
    "Attachment",
    "Author",
    "AuthorDetails",
    "Chat",
    "ChatAcceptedWebhook",
    "ChatAssignedWebhook",
    "ChatClosedWebhook",
    "ChatCompletedWebhook",
    "ChatIdleWebhook",
    "ChatIgnoredWebhook",
    "ChatInitiatedWebhook",
    "ChatPayload",
    "ChatRatedWebhook",
    "ChatTranscriptSentWebhook",
    "Department",
    "Message",
    "NatterlyEnvelope",
    "NatterlyWebhook",
    "Session",
    "SessionRegistrationWebhook",
    "Site",
    "UnknownNatterlyWebhook",
    "User",
    "UserPayload",
    "UserStatusChangedWebhook",
    "Visitor",
    "VisitorCreatedWebhook",
    "VisitorPayload",
    "decode_documented_natterly",
    "decode_natterly",
]

#: The twelve documented event names, in the order Natterly's page lists them.
NATTERLY_EVENTS: Final = (
    "ChatInitiated", "ChatAccepted", "ChatAssigned", "ChatCompleted", "ChatClosed",
    "ChatIgnored", "ChatIdle", "ChatTranscriptSent", "ChatRated", "VisitorCreated",
    "SessionRegistration", "UserStatusChanged",
)

#: A rating's format is not published: thumbs (bool), a score, or a word.
Rating = bool | int | float | str
#: Free-form data a site attaches to a visitor (Ruby hash; [] if ever PHP-ish).
CustomData = dict[str, object] | list[object]


class _Lenient(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every Natterly object: frozen, keyword-only, unknown keys ignored.

    ``gc=False``: a decoded body is a tree, never a cycle, so the collector need not
    track it (cheaper to build and free); do not put a Struct into its own containers."""


class Department(_Lenient, frozen=True, kw_only=True):
    """A site's department, e.g. Sales (``uuid``, ``name``)."""

    uuid: str | None = None
    name: str | None = None


class Site(_Lenient, frozen=True, kw_only=True):
    """A website with the ChatBox installed; ``color`` is hex without ``#``."""

    uuid: str | None = None
    name: str | None = None
    color: str | None = None
    initials: str | None = None


class User(_Lenient, frozen=True, kw_only=True):
    """An agent. Only ``uuid``, ``email_address`` and ``admin`` are documented."""

    uuid: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email_address: str | None = None
    avatar_url: str | None = None
    admin: bool | None = None
    status: str | None = None

    @property
    def display_name(self) -> str | None:
        """``name``, else ``first_name last_name``, else None."""
        if self.name:
            return self.name
        parts = [part for part in (self.first_name, self.last_name) if part]
        return " ".join(parts) or None


class Visitor(_Lenient, frozen=True, kw_only=True):
    """A website visitor; ``anonymous`` visitors get animal names ("Anonymous Chicken")."""

    uuid: str | None = None
    name: str | None = None
    email_address: str | None = None
    avatar_url: str | None = None
    anonymous: bool | None = None


class Session(_Lenient, frozen=True, kw_only=True):
    """A visitor's ChatBox session on one page load (registration parameters)."""

    uuid: str | None = None
    token: str | None = None
    page_url: str | None = None
    page_title: str | None = None
    language: str | None = None
    time_zone: str | None = None
    browser: str | None = None
    ip_address: str | None = None
    visitor: Visitor | None = None
    site: Site | None = None
    active_chat_id: str | None = None
    custom_data: CustomData | None = None


class AuthorDetails(_Lenient, frozen=True, kw_only=True):
    """Who wrote a message, as far as Natterly says (visitor-shaped in its example)."""

    uuid: str | None = None
    name: str | None = None
    avatar_url: str | None = None
    anonymous: bool | None = None
    email_address: str | None = None


class Author(_Lenient, frozen=True, kw_only=True):
    """A message's author; ``type`` is e.g. ``"AnonymousAnimal"`` or ``"User"``."""

    type: str | None = None
    name: str | None = None
    avatar_url: str | None = None
    details: AuthorDetails | None = None


class Attachment(_Lenient, frozen=True, kw_only=True):
    """A file sent in a chat (structure unpublished: the obvious fields only)."""

    uuid: str | None = None
    name: str | None = None
    url: str | None = None
    size: int | None = None
    content_type: str | None = None


class Message(_Lenient, frozen=True, kw_only=True):
    """One line of a chat. ``event`` marks a system line rather than typed text;
    ``whisper`` an agent-only note."""

    uuid: str | None = None
    chat: str | None = None
    text: str | None = None
    event: bool | None = None
    author: Author | None = None
    posted_by_visitor: bool | None = None
    created_at: UnixSeconds | None = None
    updated_at: UnixSeconds | None = None
    file: Attachment | None = None
    formatting: str | None = None
    whisper: bool | None = None


class Chat(_Lenient, frozen=True, kw_only=True):
    """Natterly's Chat structure: base and extended attributes plus expansions."""

    uuid: str | None = None
    status: str | None = None
    subject: str | None = None
    initiated_at: UnixSeconds | None = None
    last_message_at: UnixSeconds | None = None
    prompt_for_transcript: bool | None = None
    prompt_for_rating: bool | None = None
    closed_at: UnixSeconds | None = None
    verified: bool | None = None
    trusted: bool | None = None
    pending_message: str | None = None
    pending_message_set_at: UnixSeconds | None = None
    ip_address: str | None = None
    city: str | None = None
    country: str | None = None
    country_code: str | None = None
    browser: str | None = None
    platform: str | None = None
    stale: bool | None = None
    time_zone: str | None = None
    rating: Rating | None = None
    department: Department | None = None
    user: User | None = None
    visitor: Visitor | None = None
    visitor_custom_data: CustomData | None = None
    session: Session | None = None
    session_id: str | None = None
    last_message: Message | None = None
    site: Site | None = None


class ChatPayload(_Lenient, frozen=True, kw_only=True):
    """Payload of the nine ``Chat…`` events: the chat and, maybe, its messages.

    ``user`` and ``rating`` at payload level are accepted in case an event puts
    the assignee or the rating beside the chat rather than inside it.
    """

    chat: Chat | None = None
    messages: list[Message] | None = None
    user: User | None = None
    rating: Rating | None = None


class VisitorPayload(_Lenient, frozen=True, kw_only=True):
    """Payload of ``VisitorCreated`` and ``SessionRegistration`` (unpublished)."""

    visitor: Visitor | None = None
    session: Session | None = None
    session_id: str | None = None
    site: Site | None = None
    chat: Chat | None = None


class UserPayload(_Lenient, frozen=True, kw_only=True):
    """Payload of ``UserStatusChanged`` (unpublished): the user and its new status."""

    user: User | None = None
    status: str | None = None


class _Webhook(_Lenient, frozen=True, kw_only=True, tag_field="event"):
    """Envelope fields shared by every Natterly event; ``event`` is the tag."""

    timestamp: UnixSeconds | None = None

    @property
    def event(self) -> str:
        """The event name as sent, e.g. ``"ChatInitiated"``."""
        tag = type(self).__struct_config__.tag
        return tag if isinstance(tag, str) else type(self).__name__


class _ChatWebhook(_Webhook, frozen=True, kw_only=True):
    payload: ChatPayload | None = None

    @property
    def chat_id(self) -> str | None:
        """``payload.chat.uuid``, else the first message's ``chat``."""
        if self.payload is None:
            return None
        return chat_id_of(self.payload.chat, self.payload.messages)


class ChatInitiatedWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatInitiated"):
    """A new chat was started (payload documented, with its first messages)."""


class ChatAcceptedWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatAccepted"):
    """An agent accepted a chat; the agent is ``chat.user``."""


class ChatAssignedWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatAssigned"):
    """A chat was assigned to ``chat.user``, or unassigned (user null)."""


class ChatCompletedWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatCompleted"):
    """A chat finished after it was accepted and messages were exchanged."""


class ChatClosedWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatClosed"):
    """A chat was closed."""


class ChatIgnoredWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatIgnored"):
    """A new chat got no reply within the site's ignore timeout."""


class ChatIdleWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatIdle"):
    """An accepted chat got no staff reply within the site's idle timeout."""


class ChatTranscriptSentWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatTranscriptSent"):
    """A transcript of the chat was sent."""


class ChatRatedWebhook(_ChatWebhook, frozen=True, kw_only=True, tag="ChatRated"):
    """The chat was rated (``chat.rating``)."""


class VisitorCreatedWebhook(_Webhook, frozen=True, kw_only=True, tag="VisitorCreated"):
    """A new visitor's details were stored."""

    payload: VisitorPayload | None = None


class SessionRegistrationWebhook(_Webhook, frozen=True, kw_only=True, tag="SessionRegistration"):
    """A visitor loaded a page that contains the ChatBox."""

    payload: VisitorPayload | None = None


class UserStatusChangedWebhook(_Webhook, frozen=True, kw_only=True, tag="UserStatusChanged"):
    """An agent's status changed (Online/``Visible``, Offline, Invisible)."""

    payload: UserPayload | None = None


class UnknownNatterlyWebhook(_Lenient, frozen=True, kw_only=True):
    """Any event name Natterly adds after this was written: kept, not rejected."""

    event: Annotated[str, Meta(min_length=1)]
    timestamp: UnixSeconds | None = None
    payload: dict[str, object] | None = None


class NatterlyEnvelope(_Lenient, frozen=True, kw_only=True):
    """Every Natterly body as it arrives. ``auth_token`` (the account's shared secret,
    read by ``ingest.natterly_auth_token``) is stripped before a body is stored, so
    the event Structs do not declare it and cannot leak it through ``repr``."""

    event: Annotated[str, Meta(min_length=1)]
    timestamp: UnixSeconds | None = None
    payload: dict[str, object] | None = None
    auth_token: str | None = None


#: Every Natterly body, discriminated by ``event``.
NatterlyWebhook = (
    ChatInitiatedWebhook
    | ChatAcceptedWebhook
    | ChatAssignedWebhook
    | ChatCompletedWebhook
    | ChatClosedWebhook
    | ChatIgnoredWebhook
    | ChatIdleWebhook
    | ChatTranscriptSentWebhook
    | ChatRatedWebhook
    | VisitorCreatedWebhook
    | SessionRegistrationWebhook
    | UserStatusChangedWebhook
)

_KNOWN: msgspec.json.Decoder[NatterlyWebhook] = msgspec.json.Decoder(NatterlyWebhook)
_UNKNOWN = msgspec.json.Decoder(UnknownNatterlyWebhook)


class _EventName(msgspec.Struct):
    event: str | None = None


_KNOWN_NAMES = frozenset(NATTERLY_EVENTS)
_EVENT_NAME = msgspec.json.Decoder(_EventName)


def decode_documented_natterly(body: bytes) -> NatterlyWebhook:
    """:func:`decode_natterly` for the documented events only: any other event name is a
    ContractError, and the UTF-8 of bytes msgspec skips is the caller's to check."""
    return decode(_KNOWN, body)


def decode_natterly(body: bytes) -> NatterlyWebhook | UnknownNatterlyWebhook:
    """Decode a Natterly body (with or without ``auth_token``) into typed Structs.

    Raises ContractError for invalid JSON or UTF-8, a non-object body, a missing
    or empty ``event``, or a value of the wrong type anywhere a field is declared.
    """
    check_utf8(body)
    try:
        return decode_documented_natterly(body)
    except ContractError as exc:
        failure = exc
    # The tagged union rejects event names it does not know; only then is the
    # body decoded again as an unknown event (the common path decodes once).
    name = decode(_EVENT_NAME, body).event
    if name is None or name in _KNOWN_NAMES:
        raise failure
    return decode(_UNKNOWN, body)

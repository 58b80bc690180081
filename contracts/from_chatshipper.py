"""ChatShipper webhooks → domain events (pure; see docs/contracts.md for the table).

Conversation status maps onto Parley's chat lifecycle: ``queued`` → waiting
(``ChatStarted``), ``active`` → active (``ChatAccepted``, with the last
participant whose role is agent, who has accepted and is still active),
``closed`` → closed (``ChatClosed``). Participants listed with no such agent on
an open conversation, but an inactive accepted one, mean the previous agent was
transferred away or left: ``ChatAssigned`` with no agent. Anything missing means
fewer events, never an error.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts import chatshipper as c
from contracts.chatshipper_events import MessageChanged, MessageCreated, ResourceEvent, parse_event_name
from contracts.chatshipper_people import accepted_agent, agent_left, named_agents, populated, user_name
from contracts.domain import (
    AgentStatusChanged,
    Author,
    AuthorRole,
    ChatAccepted,
    ChatAssigned,
    ChatClosed,
    ChatStarted,
    ChatUpdated,
    DomainEvent,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    SiteRef,
    VisitorRef,
    VisitorSeen,
    parse_agent_status,
)
from contracts.origin import Origin
from contracts.timestamps import as_utc

__all__ = ["chatshipper_events"]

_ROLES: dict[str, AuthorRole] = {"contact": "visitor", "agent": "agent", "bot": "bot"}
# Control messages, not conversation content: they count as internal.
_CONTROL_TYPES = frozenset(("command", "status"))


def chatshipper_events(origin: Origin, webhook: c.ChatShipperWebhook) -> list[DomainEvent]:
    """The domain events a decoded ChatShipper webhook means (unknown events: none)."""
    return _handler(webhook.event)(origin, webhook, webhook.data or c.Data())


_Handler = Callable[[Origin, c.ChatShipperWebhook, c.Data], list[DomainEvent]]


def _nothing(origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data) -> list[DomainEvent]:
    return []


def _on_message_created(message_type: str | None) -> _Handler:
    def handle(origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data) -> list[DomainEvent]:
        return _message_created(origin, data, message_type)

    return handle


def _on_message_edited(origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data) -> list[DomainEvent]:
    return _message_edited(origin, data)


def _on_message_deleted(origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data) -> list[DomainEvent]:
    return _message_deleted(origin, data)


def _on_conversation_created(
    origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data
) -> list[DomainEvent]:
    ref_id = _activity_ref(webhook, "conversations")
    return _conversation(origin, data.conversation, ref_id, created=True)


def _on_conversation_updated(
    origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data
) -> list[DomainEvent]:
    ref_id = _activity_ref(webhook, "conversations")
    return _conversation(origin, data.conversation, ref_id, created=False)


def _on_contact(origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data) -> list[DomainEvent]:
    return _contact(origin, data.contact, _activity_ref(webhook, "contacts"))


def _on_user(origin: Origin, webhook: c.ChatShipperWebhook, data: c.Data) -> list[DomainEvent]:
    return _user(origin, data.user)


# Event names repeat endlessly, so each is parsed and classified once: the normaliser runs
# once per record on every replay. Bounded in case a sender invents names without end.
_HANDLERS: dict[str, _Handler] = {}
_MAX_HANDLERS = 4096


def _handler(event: str) -> _Handler:
    """What to do with a webhook of event name ``event`` (parsed by the event-name grammar)."""
    known = _HANDLERS.get(event)
    if known is not None:
        return known
    handler: _Handler
    match parse_event_name(event):
        case MessageCreated(message_type=message_type):
            handler = _on_message_created(message_type)
        case MessageChanged(action="update"):
            handler = _on_message_edited
        case MessageChanged(action="delete"):
            handler = _on_message_deleted
        case ResourceEvent(resource="conversation", action="create"):
            handler = _on_conversation_created
        case ResourceEvent(resource="conversation", action="update"):
            handler = _on_conversation_updated
        case ResourceEvent(resource="contact", action=action) if action != "delete":
            handler = _on_contact
        case ResourceEvent(resource="user"):
            handler = _on_user
        case _:
            handler = _nothing
    if len(_HANDLERS) >= _MAX_HANDLERS:
        _HANDLERS.clear()
    _HANDLERS[event] = handler
    return handler


def _activity_ref(webhook: c.ChatShipperWebhook, collection: str) -> str | None:
    target = webhook.activity.target if webhook.activity is not None else None
    ref = target.ref if target is not None else None
    return ref.id if ref is not None and ref.collection == collection else None


def _chat_id(data: c.Data) -> str | None:
    # Same order as the receiver's record key (contracts.ingest).
    if data.conversation is not None and data.conversation.id:
        return data.conversation.id
    if data.message is not None:
        return data.message.conversation_id
    return None


def _message_created(origin: Origin, data: c.Data, message_type: str | None) -> list[DomainEvent]:
    chat_id = _chat_id(data)
    if chat_id is None:
        return []
    events: list[DomainEvent] = []
    message = data.message
    if message is not None and message.id:
        # The message's own time: a retry posted later still says when it was written.
        posted = origin.at(message.created_at, "data.message.createdAt")
        eid, at, prov, src, rcv, off, _ = posted
        kind = message.type or message_type
        events.append(
            MessagePosted(
                event_id=eid,
                occurred_at=at,
                provider=prov, source=src, received_at=rcv, log_offset=off,
                chat_id=chat_id,
                message_id=message.id,
                text=message.text,
                author=_author(message, data.conversation),
                posted_at=at,
                internal=bool(message.is_backchannel) or kind in _CONTROL_TYPES,
                message_type=kind,
            )
        )
    if data.conversation is not None:
        # The full conversation rides along with every message: subscribers to
        # message events only still see the chat's lifecycle.
        # At the conversation's own time, which may differ from the message's.
        conversation = data.conversation
        changed = origin.at(conversation.updated_at, "data.conversation.updatedAt")
        events.extend(_conversation_facts(changed, chat_id, conversation, "#chat"))
    return events


def _message_edited(origin: Origin, data: c.Data) -> list[DomainEvent]:
    chat_id = _chat_id(data)
    message = data.message
    if chat_id is None or message is None or not message.id:
        return []
    eid, at, prov, src, rcv, off, _ = origin.at(message.updated_at, "data.message.updatedAt")
    return [
        MessageEdited(
            event_id=eid,
            occurred_at=at,
            provider=prov, source=src, received_at=rcv, log_offset=off,
            chat_id=chat_id,
            message_id=message.id,
            text=message.text,
            edited_at=at,
            # Only ever True: an update that omits the flag does not make a note public.
            internal=bool(message.is_backchannel) or message.type in _CONTROL_TYPES,
            message_type=message.type,
        )
    ]


def _message_deleted(origin: Origin, data: c.Data) -> list[DomainEvent]:
    chat_id = _chat_id(data)
    message = data.message
    if chat_id is None or message is None or not message.id:
        return []
    eid, at, prov, src, rcv, off, _ = origin.at(message.updated_at, "data.message.updatedAt")
    return [
        MessageDeleted(
            event_id=eid,
            occurred_at=at,
            provider=prov, source=src, received_at=rcv, log_offset=off,
            chat_id=chat_id,
            message_id=message.id,
            deleted_at=at,
        )
    ]


def _conversation(
    origin: Origin, conversation: c.Conversation | None, ref_id: str | None, *, created: bool
) -> list[DomainEvent]:
    conversation = conversation or c.Conversation()
    chat_id = conversation.id or ref_id
    if not chat_id:
        return []
    origin = origin.at(conversation.updated_at, "data.conversation.updatedAt")
    eid, at, prov, src, rcv, off, _ = origin
    if not created:
        return _conversation_facts(origin, chat_id, conversation, "")
    initiated_at = as_utc(conversation.created_at) if conversation.created_at else None
    started = ChatStarted(
        event_id=eid,
        occurred_at=at,
        provider=prov, source=src, received_at=rcv, log_offset=off,
        chat_id=chat_id,
        initiated_at=initiated_at or origin.occurred_at,
    )
    return [started, *_conversation_facts(origin, chat_id, conversation, "#chat", started=True)]


def _conversation_facts(
    origin: Origin,
    chat_id: str,
    conversation: c.Conversation,
    snapshot_suffix: str,
    *,
    started: bool = False,
) -> list[DomainEvent]:
    """Snapshot, lifecycle transitions and visitor of one conversation object."""
    eid, at, prov, src, rcv, off, _ = origin
    contact: str | c.Contact | None = conversation.contact
    if contact is None or isinstance(contact, str):
        contact_id, contact = contact or None, None
    else:
        contact_id = contact.id or None
    created_at = conversation.created_at
    initiated_at = as_utc(created_at) if created_at else None
    status = conversation.status
    closed = (status or "").casefold() == "closed"
    agent = accepted_agent(conversation, closed=closed)
    events: list[DomainEvent] = [
        ChatUpdated(
            event_id=eid + snapshot_suffix,
            occurred_at=at,
            provider=prov, source=src, received_at=rcv, log_offset=off,
            chat_id=chat_id,
            subject=conversation.name,
            site=SiteRef(id=conversation.organization) if conversation.organization else None,
            visitor=VisitorRef(id=contact_id, name=_contact_name(contact)) if contact_id else None,
            initiated_at=initiated_at,
            provider_status=status,
            agent=agent,
            chat_type=conversation.type,
            agents=named_agents(conversation),
        )
    ]
    status = (status or "").casefold()
    if status == "queued" and not started:
        events.append(
            ChatStarted(
                event_id=eid + "#started",
                occurred_at=at,
                provider=prov, source=src, received_at=rcv, log_offset=off,
                chat_id=chat_id,
                initiated_at=initiated_at,
            )
        )
    if status == "active" or agent is not None:
        events.append(
            ChatAccepted(
                event_id=eid + "#accepted",
                occurred_at=at,
                provider=prov, source=src, received_at=rcv, log_offset=off,
                chat_id=chat_id,
                agent=agent,
            )
        )
    if agent is None and not closed and agent_left(conversation):
        # An accepted agent listed but inactive, and no accepted agent active: the previous
        # agent was transferred away (or left) and nobody has accepted yet.
        events.append(ChatAssigned(event_id=eid + "#unassigned", occurred_at=at, provider=prov,
                                   source=src, received_at=rcv, log_offset=off, chat_id=chat_id))
    if status == "closed":
        closed_at = as_utc(conversation.updated_at) if conversation.updated_at else None
        events.append(
            ChatClosed(
                event_id=eid + "#closed",
                occurred_at=at,
                provider=prov, source=src, received_at=rcv, log_offset=off,
                chat_id=chat_id,
                closed_at=closed_at or at,
            )
        )
    if contact_id:
        events.append(_visitor_seen(origin, contact_id, contact, chat_id, "#visitor"))
    return events


def _contact(origin: Origin, contact: c.Contact | None, ref_id: str | None) -> list[DomainEvent]:
    contact_id = (contact.id if contact is not None else None) or ref_id
    if not contact_id:
        return []
    if contact is not None:
        origin = origin.at(contact.updated_at, "data.contact.updatedAt")
    chat_id = contact.conversation if contact is not None else None
    return [_visitor_seen(origin, contact_id, contact, chat_id or None, "")]


def _visitor_seen(
    origin: Origin, visitor_id: str, contact: c.Contact | None, chat_id: str | None, suffix: str
) -> VisitorSeen:
    eid, at, prov, src, rcv, off, _ = origin
    profile = contact.profile if contact is not None else None
    email = contact.email if contact is not None else None
    if not email and profile is not None:
        email = profile.email
    return VisitorSeen(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov, source=src, received_at=rcv, log_offset=off,
        visitor_id=visitor_id,
        name=_contact_name(contact),
        email=email or None,
        chat_id=chat_id,
    )


def _user(origin: Origin, user: c.User | None) -> list[DomainEvent]:
    if user is None or not user.id:
        return []
    eid, at, prov, src, rcv, off, _ = origin.at(user.updated_at, "data.user.updatedAt")
    status = parse_agent_status(user.status)
    if status is None:
        return []
    return [
        AgentStatusChanged(
            event_id=eid,
            occurred_at=at,
            provider=prov, source=src, received_at=rcv, log_offset=off,
            agent_id=user.id,
            name=user_name(user),
            status=status,
        )
    ]


def _author(message: c.Message, conversation: c.Conversation | None) -> Author:
    """The message's author: its user's name as populated, else as the conversation riding
    along names that participant (an id alone names nobody; the fold may know the name)."""
    user_id = c.ref_id(message.user)
    name = user_name(populated(message.user))
    if name is None and user_id is not None and conversation is not None:
        name = next((a.name for a in named_agents(conversation) if a.id == user_id), None)
    return Author(role=_ROLES.get(message.role or "", "system"), name=name, id=user_id)


def _contact_name(contact: c.Contact | None) -> str | None:
    if contact is None:
        return None
    if contact.name:
        return contact.name
    return contact.profile.name if contact.profile is not None else None

"""ChatShipper webhooks → domain events (pure; see docs/contracts.md for the table).

Conversation status maps onto Parley's chat lifecycle: ``queued`` → waiting
(``ChatStarted``), ``active`` → active (``ChatAccepted``, with the first
participant whose role is agent and who has accepted), ``closed`` → closed
(``ChatClosed``). Anything missing means fewer events, never an error.
"""

from __future__ import annotations

from contracts import chatshipper as c
from contracts.chatshipper_events import MessageChanged, MessageCreated, ResourceEvent
from contracts.domain import (
    AgentRef,
    AgentStatusChanged,
    Author,
    AuthorRole,
    ChatAccepted,
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
    data = webhook.data or c.Data()
    match webhook.name:
        case MessageCreated(message_type=message_type):
            return _message_created(origin, data, message_type)
        case MessageChanged(action="update"):
            return _message_edited(origin, data)
        case MessageChanged(action="delete"):
            return _message_deleted(origin, data)
        case ResourceEvent(resource="conversation", action="create" | "update" as action):
            ref_id = _activity_ref(webhook, "conversations")
            return _conversation(origin, data.conversation, ref_id, created=action == "create")
        case ResourceEvent(resource="contact", action=action) if action != "delete":
            return _contact(origin, data.contact, _activity_ref(webhook, "contacts"))
        case ResourceEvent(resource="user"):
            return _user(origin, data.user)
        case _:
            return []


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
    eid, at, prov, src = origin
    chat_id = _chat_id(data)
    if chat_id is None:
        return []
    events: list[DomainEvent] = []
    message = data.message
    if message is not None and message.id:
        kind = message.type or message_type
        events.append(
            MessagePosted(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                message_id=message.id,
                text=message.text,
                author=Author(role=_ROLES.get(message.role or "", "system"), name=_name(message)),
                posted_at=as_utc(message.created_at) if message.created_at else origin.occurred_at,
                internal=bool(message.is_backchannel) or kind in _CONTROL_TYPES,
                message_type=kind,
            )
        )
    if data.conversation is not None:
        # The full conversation rides along with every message: subscribers to
        # message events only still see the chat's lifecycle.
        events.extend(_conversation_facts(origin, chat_id, data.conversation, "#chat"))
    return events


def _message_edited(origin: Origin, data: c.Data) -> list[DomainEvent]:
    eid, at, prov, src = origin
    chat_id = _chat_id(data)
    message = data.message
    if chat_id is None or message is None or not message.id:
        return []
    edited_at = as_utc(message.updated_at) if message.updated_at else origin.occurred_at
    return [
        MessageEdited(
            event_id=eid,
            occurred_at=at,
            provider=prov,
            source=src,
            chat_id=chat_id,
            message_id=message.id,
            text=message.text,
            edited_at=edited_at,
        )
    ]


def _message_deleted(origin: Origin, data: c.Data) -> list[DomainEvent]:
    eid, at, prov, src = origin
    chat_id = _chat_id(data)
    message = data.message
    if chat_id is None or message is None or not message.id:
        return []
    return [
        MessageDeleted(
            event_id=eid,
            occurred_at=at,
            provider=prov,
            source=src,
            chat_id=chat_id,
            message_id=message.id,
            deleted_at=origin.occurred_at,
        )
    ]


def _conversation(
    origin: Origin, conversation: c.Conversation | None, ref_id: str | None, *, created: bool
) -> list[DomainEvent]:
    eid, at, prov, src = origin
    conversation = conversation or c.Conversation()
    chat_id = conversation.id or ref_id
    if not chat_id:
        return []
    if not created:
        return _conversation_facts(origin, chat_id, conversation, "")
    initiated_at = as_utc(conversation.created_at) if conversation.created_at else None
    started = ChatStarted(
        event_id=eid,
        occurred_at=at,
        provider=prov,
        source=src,
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
    eid, at, prov, src = origin
    events: list[DomainEvent] = [_snapshot(origin, chat_id, conversation, snapshot_suffix)]
    status = (conversation.status or "").casefold()
    if status == "queued" and not started:
        initiated_at = as_utc(conversation.created_at) if conversation.created_at else None
        events.append(
            ChatStarted(
                event_id=eid + "#started",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                initiated_at=initiated_at,
            )
        )
    agent = _accepted_agent(conversation)
    if status == "active" or agent is not None:
        events.append(
            ChatAccepted(
                event_id=eid + "#accepted",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                agent=agent,
            )
        )
    if status == "closed":
        closed_at = as_utc(conversation.updated_at) if conversation.updated_at else None
        events.append(
            ChatClosed(
                event_id=eid + "#closed",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                closed_at=closed_at or origin.occurred_at,
            )
        )
    contact_id = c.ref_id(conversation.contact)
    if contact_id:
        contact = conversation.contact if isinstance(conversation.contact, c.Contact) else None
        events.append(_visitor_seen(origin, contact_id, contact, chat_id, "#visitor"))
    return events


def _snapshot(
    origin: Origin, chat_id: str, conversation: c.Conversation, suffix: str = "#chat"
) -> ChatUpdated:
    eid, at, prov, src = origin
    contact_id = c.ref_id(conversation.contact)
    contact = conversation.contact if isinstance(conversation.contact, c.Contact) else None
    return ChatUpdated(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov,
        source=src,
        chat_id=chat_id,
        subject=conversation.name,
        site=SiteRef(id=conversation.organization) if conversation.organization else None,
        visitor=VisitorRef(id=contact_id, name=_contact_name(contact)) if contact_id else None,
        initiated_at=as_utc(conversation.created_at) if conversation.created_at else None,
        provider_status=conversation.status,
    )


def _accepted_agent(conversation: c.Conversation) -> AgentRef | None:
    for participant in conversation.participants or ():
        if participant.accepted and (participant.role or "").casefold() == "agent":
            user_id = participant.user_id
            if user_id:
                user = participant.user if isinstance(participant.user, c.User) else None
                return AgentRef(id=user_id, name=_user_name(user))
    return None


def _contact(origin: Origin, contact: c.Contact | None, ref_id: str | None) -> list[DomainEvent]:
    contact_id = (contact.id if contact is not None else None) or ref_id
    if not contact_id:
        return []
    chat_id = contact.conversation if contact is not None else None
    return [_visitor_seen(origin, contact_id, contact, chat_id or None, "")]


def _visitor_seen(
    origin: Origin, visitor_id: str, contact: c.Contact | None, chat_id: str | None, suffix: str
) -> VisitorSeen:
    eid, at, prov, src = origin
    profile = contact.profile if contact is not None else None
    email = contact.email if contact is not None else None
    if not email and profile is not None:
        email = profile.email
    return VisitorSeen(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov,
        source=src,
        visitor_id=visitor_id,
        name=_contact_name(contact),
        email=email or None,
        chat_id=chat_id,
    )


def _user(origin: Origin, user: c.User | None) -> list[DomainEvent]:
    eid, at, prov, src = origin
    if user is None or not user.id:
        return []
    status = parse_agent_status(user.status)
    if status is None:
        return []
    return [
        AgentStatusChanged(
            event_id=eid,
            occurred_at=at,
            provider=prov,
            source=src,
            agent_id=user.id,
            name=_user_name(user),
            status=status,
        )
    ]


def _name(message: c.Message) -> str | None:
    return _user_name(message.user) if isinstance(message.user, c.User) else None


def _user_name(user: c.User | None) -> str | None:
    if user is None:
        return None
    return user.display_name or user.name or None


def _contact_name(contact: c.Contact | None) -> str | None:
    if contact is None:
        return None
    if contact.name:
        return contact.name
    return contact.profile.name if contact.profile is not None else None

"""Decode benchmark, pydantic v2 baseline for ChatShipper: models of the contracts' shapes, same rules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from decode_common import (
    CONTROL_TYPES,
    RECEIVED_AT,
    ROLES,
    SOURCE,
    cs_ref_id,
)
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from contracts import domain as d
from contracts.chatshipper_events import MessageChanged, MessageCreated, ResourceEvent, parse_event_name
from contracts.envelope import Envelope
from contracts.origin import Origin


class C(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True)


class CActivityObject(C):
    id: str | None = None
    type: str | None = None


class CActivity(C):
    context: str | None = Field(default=None, alias="@context")
    type: str | None = None
    actor: CActivityObject | None = None
    target: CActivityObject | None = Field(default=None, alias="object")
    published: datetime | None = None
    summary: str | None = None


class CUser(C):
    id: str | None = None
    organization: str | None = None
    name: str | None = None
    display_name: str | None = None
    email: str | None = None
    role: str | None = None
    status: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CContactProfile(C):
    name: str | None = None
    email: str | None = None
    telephone: str | None = None


class CContact(C):
    id: str | None = None
    organization: str | None = None
    name: str | None = None
    email: str | None = None
    telephone: str | None = None
    profile: CContactProfile | None = None
    conversation: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CParticipant(C):
    user: str | CUser | None = None
    role: str | None = None
    active: bool | None = None
    accepted: bool | None = None
    inbox: bool | None = None


class CConversation(C):
    id: str | None = None
    organization: str | None = None
    type: str | None = None
    contact: str | CContact | None = None
    name: str | None = None
    status: str | None = None
    category: str | None = None
    participants: list[CParticipant] | None = None
    meta: dict[str, Any] | None = None
    touchpoint: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CMessage(C):
    id: str | None = None
    organization: str | None = None
    org_path: str | None = None
    conversation: str | CConversation | None = None
    type: str | None = None
    role: str | None = None
    content_type: str | None = None
    text: str | None = None
    is_backchannel: bool | None = None
    meta: dict[str, Any] | None = None
    user: str | CUser | None = None
    touchpoint: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CData(C):
    conversation: CConversation | None = None
    message: CMessage | None = None
    contact: CContact | None = None
    user: CUser | None = None
    links: dict[str, str | None] | None = None


class CWebhook(C):
    id: str = Field(min_length=1)
    event: str = Field(min_length=1)
    timestamp: datetime | None = None
    organization: str | None = None
    activity: CActivity | None = None
    data: CData | None = None


class CRef(C):
    id: str | None = None


class CIMessage(C):
    conversation: str | CRef | None = None


class CIData(C):
    conversation: CRef | None = None
    message: CIMessage | None = None
    contact: CRef | None = None
    user: CRef | None = None


class CIActivity(C):
    target: CRef | None = Field(default=None, alias="object")
    published: datetime | None = None


class CIngest(C):
    id: str = Field(min_length=1)
    event: str = Field(min_length=1)
    timestamp: datetime | None = None
    activity: CIActivity | None = None
    data: CIData | None = None


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def p_ref_id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return value.id or None


def p_receive_chatshipper(body: bytes) -> Envelope:
    webhook = CIngest.model_validate_json(body)
    published = webhook.activity.published if webhook.activity else None
    occurred = utc(webhook.timestamp) or utc(published) or RECEIVED_AT
    data = webhook.data or CIData()
    target = webhook.activity.target if webhook.activity else None
    url = target.id if target else None
    conversation_id = data.conversation.id if data.conversation else None
    if not conversation_id and data.message is not None:
        conversation_id = p_ref_id(data.message.conversation)
    contact_id = data.contact.id if data.contact else None
    user_id = data.user.id if data.user else None
    resource = webhook.event.split(".", 1)[0]
    aggregate: Any = "other"
    key = webhook.id
    if resource in ("message", "conversation"):
        conversation_id = conversation_id or cs_ref_id(url, "conversations")
        if conversation_id:
            aggregate, key = "chat", conversation_id
    elif resource == "contact":
        contact_id = contact_id or cs_ref_id(url, "contacts")
        if contact_id:
            aggregate, key = "visitor", contact_id
    elif resource == "user":
        user_id = user_id or cs_ref_id(url, "users")
        if user_id:
            aggregate, key = "agent", user_id
    elif conversation_id:
        aggregate, key = "chat", conversation_id
    elif contact_id:
        aggregate, key = "visitor", contact_id
    return Envelope(
        event_id=webhook.id,
        provider="chatshipper",
        source=SOURCE,
        event_type=webhook.event,
        aggregate=aggregate,
        key=key,
        occurred_at=occurred,
        received_at=RECEIVED_AT,
        body=msgspec.Raw(body),
    )


def p_cs_user_name(user: Any) -> str | None:
    return (user.display_name or user.name or None) if isinstance(user, CUser) else None


def p_contact_name(contact: Any) -> str | None:
    if not isinstance(contact, CContact):
        return None
    return contact.name or (contact.profile.name if contact.profile else None)


def p_cs_visitor_seen(
    origin: Origin, visitor_id: str, contact: Any, chat_id: Any, suffix: str
) -> d.VisitorSeen:
    eid, at, prov, src = origin
    email = contact.email if isinstance(contact, CContact) else None
    if not email and isinstance(contact, CContact) and contact.profile is not None:
        email = contact.profile.email
    return d.VisitorSeen(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov,
        source=src,
        visitor_id=visitor_id,
        name=p_contact_name(contact),
        email=email or None,
        chat_id=chat_id,
    )


def p_conversation_facts(
    origin: Origin, chat_id: str, conv: CConversation, suffix: str, *, started: bool = False
) -> list[d.DomainEvent]:
    eid, at, prov, src = origin
    contact_id = p_ref_id(conv.contact)
    contact = conv.contact if isinstance(conv.contact, CContact) else None
    agent = None
    for participant in conv.participants or ():
        if participant.accepted and (participant.role or "").casefold() == "agent":
            user_id = p_ref_id(participant.user)
            if user_id:
                agent = d.AgentRef(id=user_id, name=p_cs_user_name(participant.user))
                break
    events: list[d.DomainEvent] = [
        d.ChatUpdated(
            event_id=eid + suffix,
            occurred_at=at,
            provider=prov,
            source=src,
            chat_id=chat_id,
            subject=conv.name,
            site=d.SiteRef(id=conv.organization) if conv.organization else None,
            visitor=d.VisitorRef(id=contact_id, name=p_contact_name(contact)) if contact_id else None,
            initiated_at=utc(conv.created_at),
            provider_status=conv.status,
            agent=agent,
        )
    ]
    status = (conv.status or "").casefold()
    if status == "queued" and not started:
        events.append(
            d.ChatStarted(
                event_id=eid + "#started",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                initiated_at=utc(conv.created_at),
            )
        )
    if status == "active" or agent is not None:
        events.append(
            d.ChatAccepted(
                event_id=eid + "#accepted",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                agent=agent,
            )
        )
    if status == "closed":
        events.append(
            d.ChatClosed(
                event_id=eid + "#closed",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                closed_at=utc(conv.updated_at) or origin.occurred_at,
            )
        )
    if contact_id:
        events.append(p_cs_visitor_seen(origin, contact_id, contact, chat_id, "#visitor"))
    return events


def p_events_chatshipper(env: Envelope) -> list[d.DomainEvent]:
    webhook = CWebhook.model_validate_json(bytes(env.body))
    origin = Origin.of(env)
    eid, at, prov, src = origin
    data = webhook.data or CData()
    target = webhook.activity.target if webhook.activity else None
    url = target.id if target else None
    conversation, message = data.conversation, data.message
    chat_id = (conversation.id if conversation else None) or None
    if not chat_id and message is not None:
        chat_id = p_ref_id(message.conversation)
    match parse_event_name(webhook.event):
        case MessageCreated(message_type=message_type):
            if chat_id is None:
                return []
            events: list[d.DomainEvent] = []
            if message is not None and message.id:
                kind = message.type or message_type
                events.append(
                    d.MessagePosted(
                        event_id=eid,
                        occurred_at=at,
                        provider=prov,
                        source=src,
                        chat_id=chat_id,
                        message_id=message.id,
                        text=message.text,
                        author=d.Author(
                            role=ROLES.get(message.role or "", "system"), name=p_cs_user_name(message.user)
                        ),
                        posted_at=utc(message.created_at) or origin.occurred_at,
                        internal=bool(message.is_backchannel) or kind in CONTROL_TYPES,
                        message_type=kind,
                    )
                )
            if conversation is not None:
                events.extend(p_conversation_facts(origin, chat_id, conversation, "#chat"))
            return events
        case MessageChanged(action="update"):
            if chat_id is None or message is None or not message.id:
                return []
            return [
                d.MessageEdited(
                    event_id=eid,
                    occurred_at=at,
                    provider=prov,
                    source=src,
                    chat_id=chat_id,
                    message_id=message.id,
                    text=message.text,
                    edited_at=utc(message.updated_at) or origin.occurred_at,
                )
            ]
        case MessageChanged(action="delete"):
            if chat_id is None or message is None or not message.id:
                return []
            return [
                d.MessageDeleted(
                    event_id=eid,
                    occurred_at=at,
                    provider=prov,
                    source=src,
                    chat_id=chat_id,
                    message_id=message.id,
                    deleted_at=origin.occurred_at,
                )
            ]
        case ResourceEvent(resource="conversation", action="create" | "update" as action):
            conv = conversation or CConversation()
            conv_id = conv.id or cs_ref_id(url, "conversations")
            if not conv_id:
                return []
            if action == "update":
                return p_conversation_facts(origin, conv_id, conv, "")
            started = d.ChatStarted(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=conv_id,
                initiated_at=utc(conv.created_at) or origin.occurred_at,
            )
            return [started, *p_conversation_facts(origin, conv_id, conv, "#chat", started=True)]
        case ResourceEvent(resource="contact", action=action) if action != "delete":
            contact = data.contact
            contact_id = (contact.id if contact else None) or cs_ref_id(url, "contacts")
            if not contact_id:
                return []
            return [
                p_cs_visitor_seen(
                    origin, contact_id, contact, (contact.conversation if contact else None) or None, ""
                )
            ]
        case ResourceEvent(resource="user"):
            user = data.user
            status = d.parse_agent_status(user.status if user else None)
            if user is None or not user.id or status is None:
                return []
            return [
                d.AgentStatusChanged(
                    event_id=eid,
                    occurred_at=at,
                    provider=prov,
                    source=src,
                    agent_id=user.id,
                    name=p_cs_user_name(user),
                    status=status,
                )
            ]
    return []

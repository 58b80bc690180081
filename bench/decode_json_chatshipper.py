"""Decode benchmark, json baseline for ChatShipper: ``json.loads`` + dict access, the contracts' rules."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from decode_common import (
    CONTROL_TYPES,
    RECEIVED_AT,
    ROLES,
    SOURCE,
    cs_ref_id,
    g,
    iso,
)

from contracts import domain as d
from contracts.chatshipper_events import MessageChanged, MessageCreated, ResourceEvent, parse_event_name
from contracts.envelope import Envelope
from contracts.origin import Origin


def d_receive_chatshipper(body: bytes) -> Envelope:
    obj = json.loads(body)
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("id"), str)
        or not isinstance(obj.get("event"), str)
    ):
        raise ValueError("bad body")
    timestamp = iso(obj.get("timestamp")) or iso(g(obj.get("activity"), "published")) or RECEIVED_AT
    data = obj.get("data") or {}
    url = g(g(obj.get("activity"), "object"), "id")
    conversation_id = g(data.get("conversation"), "id")
    if not conversation_id:
        conv = g(data.get("message"), "conversation")
        conversation_id = conv if isinstance(conv, str) else g(conv, "id")
    contact_id, user_id = g(data.get("contact"), "id"), g(data.get("user"), "id")
    resource = obj["event"].split(".", 1)[0]
    aggregate: Any = "other"
    key = obj["id"]
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
        event_id=obj["id"],
        provider="chatshipper",
        source=SOURCE,
        event_type=obj["event"],
        aggregate=aggregate,
        key=key,
        occurred_at=timestamp,
        received_at=RECEIVED_AT,
        body=msgspec.Raw(body),
    )


def d_events_chatshipper(env: Envelope) -> list[d.DomainEvent]:
    obj = json.loads(bytes(env.body))
    origin = Origin.of(env)
    eid, at, prov, src = origin
    data = obj.get("data") or {}
    url = g(g(obj.get("activity"), "object"), "id")
    name = parse_event_name(obj["event"])
    conversation, message = data.get("conversation"), data.get("message")
    chat_id = g(conversation, "id") or None
    if not chat_id and message is not None:
        conv = message.get("conversation")
        chat_id = (conv if isinstance(conv, str) else g(conv, "id")) or None
    match name:
        case MessageCreated(message_type=message_type):
            if chat_id is None:
                return []
            events: list[d.DomainEvent] = []
            if message is not None and message.get("id"):
                kind = message.get("type") or message_type
                user = message.get("user")
                events.append(
                    d.MessagePosted(
                        event_id=eid,
                        occurred_at=at,
                        provider=prov,
                        source=src,
                        chat_id=chat_id,
                        message_id=message["id"],
                        text=message.get("text"),
                        author=d.Author(
                            role=ROLES.get(message.get("role") or "", "system"),
                            name=d_cs_user_name(user) if isinstance(user, dict) else None,
                        ),
                        posted_at=iso(message.get("createdAt")) or origin.occurred_at,
                        internal=bool(message.get("isBackchannel")) or kind in CONTROL_TYPES,
                        message_type=kind,
                    )
                )
            if conversation is not None:
                events.extend(d_conversation_facts(origin, chat_id, conversation, "#chat"))
            return events
        case MessageChanged(action="update"):
            if chat_id is None or not g(message, "id"):
                return []
            edited_at = iso(message.get("updatedAt")) or origin.occurred_at
            return [
                d.MessageEdited(
                    event_id=eid,
                    occurred_at=at,
                    provider=prov,
                    source=src,
                    chat_id=chat_id,
                    message_id=message["id"],
                    text=message.get("text"),
                    edited_at=edited_at,
                )
            ]
        case MessageChanged(action="delete"):
            if chat_id is None or not g(message, "id"):
                return []
            return [
                d.MessageDeleted(
                    event_id=eid,
                    occurred_at=at,
                    provider=prov,
                    source=src,
                    chat_id=chat_id,
                    message_id=message["id"],
                    deleted_at=origin.occurred_at,
                )
            ]
        case ResourceEvent(resource="conversation", action="create" | "update" as action):
            conversation = conversation or {}
            chat_id = conversation.get("id") or cs_ref_id(url, "conversations")
            if not chat_id:
                return []
            if action == "update":
                return d_conversation_facts(origin, chat_id, conversation, "")
            initiated_at = iso(conversation.get("createdAt"))
            started = d.ChatStarted(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                initiated_at=initiated_at or origin.occurred_at,
            )
            return [started, *d_conversation_facts(origin, chat_id, conversation, "#chat", started=True)]
        case ResourceEvent(resource="contact", action=action) if action != "delete":
            contact = data.get("contact")
            contact_id = g(contact, "id") or cs_ref_id(url, "contacts")
            if not contact_id:
                return []
            return [d_cs_visitor_seen(origin, contact_id, contact, g(contact, "conversation") or None, "")]
        case ResourceEvent(resource="user"):
            user = data.get("user")
            status = d.parse_agent_status(g(user, "status"))
            if not g(user, "id") or status is None:
                return []
            return [
                d.AgentStatusChanged(
                    event_id=eid,
                    occurred_at=at,
                    provider=prov,
                    source=src,
                    agent_id=user["id"],
                    name=d_cs_user_name(user),
                    status=status,
                )
            ]
    return []


def d_cs_user_name(user: Any) -> str | None:
    return (user.get("displayName") or user.get("name") or None) if isinstance(user, dict) else None


def d_contact_name(contact: Any) -> str | None:
    if not isinstance(contact, dict):
        return None
    return contact.get("name") or g(contact.get("profile"), "name")


def d_cs_visitor_seen(
    origin: Origin, visitor_id: str, contact: Any, chat_id: Any, suffix: str
) -> d.VisitorSeen:
    eid, at, prov, src = origin
    email = g(contact, "email") or g(g(contact, "profile"), "email")
    return d.VisitorSeen(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov,
        source=src,
        visitor_id=visitor_id,
        name=d_contact_name(contact),
        email=email or None,
        chat_id=chat_id,
    )


def d_conversation_facts(
    origin: Origin, chat_id: str, conv: dict[str, Any], suffix: str, *, started: bool = False
) -> list[d.DomainEvent]:
    eid, at, prov, src = origin
    contact = conv.get("contact")
    contact_id = (contact if isinstance(contact, str) else g(contact, "id")) or None
    org = conv.get("organization")
    agent = None
    for participant in conv.get("participants") or ():
        if participant.get("accepted") and (participant.get("role") or "").casefold() == "agent":
            user = participant.get("user")
            user_id = (user if isinstance(user, str) else g(user, "id")) or None
            if user_id:
                agent = d.AgentRef(id=user_id, name=d_cs_user_name(user))
                break
    events: list[d.DomainEvent] = [
        d.ChatUpdated(
            event_id=eid + suffix,
            occurred_at=at,
            provider=prov,
            source=src,
            chat_id=chat_id,
            subject=conv.get("name"),
            site=d.SiteRef(id=org) if org else None,
            visitor=d.VisitorRef(id=contact_id, name=d_contact_name(contact)) if contact_id else None,
            initiated_at=iso(conv.get("createdAt")),
            provider_status=conv.get("status"),
            agent=agent,
        )
    ]
    status = (conv.get("status") or "").casefold()
    if status == "queued" and not started:
        events.append(
            d.ChatStarted(
                event_id=eid + "#started",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                initiated_at=iso(conv.get("createdAt")),
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
        closed_at = iso(conv.get("updatedAt")) or origin.occurred_at
        events.append(
            d.ChatClosed(
                event_id=eid + "#closed",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                closed_at=closed_at,
            )
        )
    if contact_id:
        events.append(d_cs_visitor_seen(origin, contact_id, contact, chat_id, "#visitor"))
    return events

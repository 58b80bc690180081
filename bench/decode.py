"""Decode benchmark (issue 3, point 9): typed msgspec vs json.loads + dicts vs pydantic v2.

Every golden webhook body (tests/fixtures/webhooks) goes through the receiver step (body to
Envelope: validate, read event, time and aggregate id, cut Natterly's token out of the raw
bytes, derive the event id) and the projector step (Envelope to domain events: decode the
stored body in full and map it). Three pipelines do exactly that work:

- ``msgspec``: ``contracts.ingest.parse_webhook`` + ``contracts.normalise.normalise``;
- ``json``: ``json.loads`` and dict access, mirroring the contracts' rules line by line;
- ``pydantic``: pydantic v2 models of the same shapes (``model_validate_json``), same rules.

All three build the same msgspec ``Envelope`` and domain-event Structs, and the run aborts
unless their outputs are equal for every body, so they provably do the same work. Work that
is not decoding uses the same code in all three: the token cut (``contracts.redact``; the
baselines cannot get byte offsets from their parsers, so they call it whole, which costs them
one extra msgspec pass that the typed pipeline shares with its own decode), SHA-256 of the
stored body, and the domain-event constructors.

Rounds alternate between pipelines; the best round of each counts.

    .venv/bin/python bench/decode.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import msgspec
import pydantic
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from contracts import domain as d
from contracts import ingest
from contracts.chatshipper import decode_chatshipper
from contracts.chatshipper_events import MessageChanged, MessageCreated, ResourceEvent, parse_event_name
from contracts.envelope import Envelope
from contracts.ingest import derive_event_id, parse_webhook
from contracts.natterly import decode_natterly
from contracts.normalise import normalise
from contracts.origin import Origin
from contracts.redact import strip_member

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "webhooks"
RECEIVED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SOURCE = "bench"
WS = b" \t\n\r"
Result = tuple[Envelope, list[d.DomainEvent]]


# --- msgspec (the contracts) -------------------------------------------------------------


def run_msgspec(provider: str, body: bytes) -> Result:
    env = parse_webhook(provider, SOURCE, body, received_at=RECEIVED_AT)
    return env, normalise(env)


# --- shared helpers for the baselines (same rules as contracts) --------------------------

N_CHAT_EVENTS = frozenset((
    "ChatInitiated", "ChatAccepted", "ChatAssigned", "ChatCompleted", "ChatClosed", "ChatIgnored",
    "ChatIdle", "ChatTranscriptSent", "ChatRated",
))  # fmt: skip
N_VISITOR_EVENTS = frozenset(("VisitorCreated", "SessionRegistration"))
ROLES: dict[str, d.AuthorRole] = {"contact": "visitor", "agent": "agent", "bot": "bot"}
CONTROL_TYPES = frozenset(("command", "status"))


def unix(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def iso(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def first_uuid(*holders: Any) -> str | None:
    for holder in holders:
        uuid = holder.get("uuid") if isinstance(holder, dict) else getattr(holder, "uuid", None)
        if uuid:
            return uuid  # type: ignore[no-any-return]
    return None


def n_author(event: Any, by_visitor: Any, kind: str, has_author: bool) -> d.AuthorRole:
    if event:
        return "system"
    if by_visitor is True:
        return "visitor"
    if by_visitor is False:
        return "bot" if "bot" in kind else "agent"
    if kind in ("user", "agent"):
        return "agent"
    if "bot" in kind:
        return "bot"
    return "visitor" if has_author else "system"


# --- json.loads + dict access -------------------------------------------------------------


def g(obj: Any, key: str) -> Any:
    """obj[key] when obj is a dict, else None (a missing object is "no data")."""
    return obj.get(key) if isinstance(obj, dict) else None


def d_visitor_id(visitor: Any, session: Any, session_id: Any, chat: Any) -> str | None:
    chat_session = g(chat, "session")
    uuid = first_uuid(
        *(x for x in (visitor, g(session, "visitor"), g(chat, "visitor"), g(chat_session, "visitor")) if x)
    )
    if uuid:
        return uuid
    for candidate in (g(session, "uuid"), session_id, g(chat_session, "uuid"), g(chat, "session_id")):
        if candidate:
            return "session:" + candidate
    return None


def d_chat_id(payload: Any) -> str | None:
    chat_uuid = g(g(payload, "chat"), "uuid")
    if chat_uuid:
        return chat_uuid  # type: ignore[no-any-return]
    for message in g(payload, "messages") or ():
        if g(message, "chat"):
            return message["chat"]  # type: ignore[no-any-return]
    return None


def d_receive_natterly(body: bytes) -> Envelope:
    obj = json.loads(body)
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str) or not obj["event"]:
        raise ValueError("bad body")
    event, timestamp, payload = obj["event"], obj.get("timestamp"), obj.get("payload")
    if timestamp is not None and (not isinstance(timestamp, int | float) or timestamp < 0):
        raise ValueError("bad timestamp")
    if payload is not None and not isinstance(payload, dict):
        raise ValueError("bad payload")
    stored = strip_member(body, "auth_token") if "auth_token" in obj else body
    event_id = derive_event_id(stored)
    aggregate: Any = "other"
    key = event_id
    if payload is not None:
        unknown = (
            event not in N_CHAT_EVENTS and event not in N_VISITOR_EVENTS and event != "UserStatusChanged"
        )
        chat_id = d_chat_id(payload) if event in N_CHAT_EVENTS or unknown else None
        visitor_id = (
            d_visitor_id(
                g(payload, "visitor"), g(payload, "session"), g(payload, "session_id"), g(payload, "chat")
            )
            if not chat_id and (event in N_VISITOR_EVENTS or unknown)
            else None
        )
        user_id = g(g(payload, "user"), "uuid") if event == "UserStatusChanged" or unknown else None
        if chat_id:
            aggregate, key = "chat", chat_id
        elif visitor_id:
            aggregate, key = "visitor", visitor_id
        elif user_id:
            aggregate, key = "agent", user_id
    return Envelope(
        event_id=event_id,
        provider="natterly",
        source=SOURCE,
        event_type=event,
        aggregate=aggregate,
        key=key,
        occurred_at=unix(timestamp) or RECEIVED_AT,
        received_at=RECEIVED_AT,
        body=msgspec.Raw(stored),
    )


def d_events_natterly(env: Envelope) -> list[d.DomainEvent]:
    obj = json.loads(bytes(env.body))
    origin = Origin.of(env)
    eid, at, prov, src = origin
    event, payload = obj["event"], obj.get("payload")
    if event == "UserStatusChanged":
        user = g(payload, "user")
        status = d.parse_agent_status(g(payload, "status")) or d.parse_agent_status(g(user, "status"))
        if not g(user, "uuid") or status is None:
            return []
        return [
            d.AgentStatusChanged(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                agent_id=user["uuid"],
                name=d_user_name(user),
                status=status,
            )
        ]
    if event in N_VISITOR_EVENTS:
        if payload is None:
            return []
        session, chat = payload.get("session"), payload.get("chat")
        visitor_id = d_visitor_id(payload.get("visitor"), session, payload.get("session_id"), chat)
        visitor = payload.get("visitor") or g(session, "visitor") or g(chat, "visitor")
        chat_id = g(chat, "uuid") or g(session, "active_chat_id") or None
        return [d_visitor_seen(origin, visitor_id, visitor, chat_id, "")] if visitor_id else []
    if event not in N_CHAT_EVENTS:
        return []
    chat_id = d_chat_id(payload)
    if payload is None or chat_id is None:
        return []
    chat = payload.get("chat") or {}
    primary: d.DomainEvent
    match event:
        case "ChatInitiated":
            primary = d.ChatStarted(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                initiated_at=unix(chat.get("initiated_at")) or origin.occurred_at,
            )
        case "ChatAccepted":
            primary = d.ChatAccepted(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                agent=d_agent(payload.get("user") or chat.get("user")),
            )
        case "ChatAssigned":
            primary = d.ChatAssigned(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                agent=d_agent(payload.get("user") or chat.get("user")),
            )
        case "ChatCompleted":
            primary = d.ChatCompleted(
                event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id
            )
        case "ChatClosed":
            primary = d.ChatClosed(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                closed_at=unix(chat.get("closed_at")) or origin.occurred_at,
            )
        case "ChatIgnored":
            primary = d.ChatIgnored(event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id)
        case "ChatIdle":
            primary = d.ChatIdle(event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id)
        case "ChatTranscriptSent":
            primary = d.TranscriptSent(
                event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id
            )
        case _:
            rating = chat.get("rating") if chat.get("rating") is not None else payload.get("rating")
            primary = d.ChatRated(
                event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id, rating=rating
            )
    events: list[d.DomainEvent] = [primary]
    if payload.get("chat") is not None:
        department, site, visitor = chat.get("department"), chat.get("site"), chat.get("visitor")
        visitor_id = d_visitor_id(None, None, None, chat)
        country, code, city = chat.get("country"), chat.get("country_code"), chat.get("city")
        events.append(
            d.ChatUpdated(
                event_id=eid + "#chat",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                subject=chat.get("subject"),
                department=d.DepartmentRef(id=department.get("uuid"), name=department.get("name"))
                if department
                else None,
                site=d.SiteRef(id=site.get("uuid"), name=site.get("name")) if site else None,
                visitor=(
                    d.VisitorRef(id=visitor_id, name=visitor.get("name"), anonymous=visitor.get("anonymous"))
                    if visitor is not None
                    else (d.VisitorRef(id=visitor_id) if visitor_id else None)
                ),
                location=d.Location(country=country, country_code=code, city=city)
                if country is not None or code is not None or city
                else None,
                browser=chat.get("browser"),
                platform=chat.get("platform"),
                initiated_at=unix(chat.get("initiated_at")),
                last_message_at=unix(chat.get("last_message_at")),
                provider_status=chat.get("status"),
            )
        )
    seen: set[str] = set()
    for message in payload.get("messages") or ():
        uuid = message.get("uuid")
        if not uuid or uuid in seen:
            continue
        seen.add(uuid)
        author = message.get("author")
        kind = (g(author, "type") or "").casefold()
        role = n_author(message.get("event"), message.get("posted_by_visitor"), kind, author is not None)
        events.append(
            d.MessagePosted(
                event_id=eid + f"#msg:{uuid}",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=message.get("chat") or chat_id,
                message_id=uuid,
                text=message.get("text"),
                author=d.Author(role=role, name=g(author, "name")),
                posted_at=unix(message.get("created_at")) or origin.occurred_at,
                internal=bool(message.get("whisper")),
            )
        )
    visitor_id = d_visitor_id(None, None, None, chat)
    if visitor_id:
        events.append(d_visitor_seen(origin, visitor_id, chat.get("visitor"), chat_id, "#visitor"))
    return events


def d_user_name(user: Any) -> str | None:
    if user.get("name"):
        return user["name"]  # type: ignore[no-any-return]
    return " ".join(p for p in (user.get("first_name"), user.get("last_name")) if p) or None


def d_agent(user: Any) -> d.AgentRef | None:
    return d.AgentRef(id=user["uuid"], name=d_user_name(user)) if user and user.get("uuid") else None


def d_visitor_seen(origin: Origin, visitor_id: str, visitor: Any, chat_id: Any, suffix: str) -> d.VisitorSeen:
    eid, at, prov, src = origin
    return d.VisitorSeen(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov,
        source=src,
        visitor_id=visitor_id,
        name=g(visitor, "name"),
        email=g(visitor, "email_address"),
        anonymous=g(visitor, "anonymous"),
        chat_id=chat_id,
    )


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


def cs_ref_id(url: str | None, collection: str) -> str | None:
    """The id in an activity URL of ``collection`` (parsed only when needed, as contracts does)."""
    ref = cs_ref(url)
    return ref[1] if ref and ref[0] == collection else None


def cs_ref(url: str | None) -> tuple[str, str] | None:
    from contracts.chatshipper import parse_resource_url

    ref = parse_resource_url(url)
    return (ref.collection, ref.id) if ref else None


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
    agent = None
    for participant in conv.get("participants") or ():
        if participant.get("accepted") and (participant.get("role") or "").casefold() == "agent":
            user = participant.get("user")
            user_id = (user if isinstance(user, str) else g(user, "id")) or None
            if user_id:
                agent = d.AgentRef(id=user_id, name=d_cs_user_name(user))
                break
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


def run_json(provider: str, body: bytes) -> Result:
    body = body.strip(WS)
    if provider == "natterly":
        env = d_receive_natterly(body)
        return env, d_events_natterly(env)
    env = d_receive_chatshipper(body)
    return env, d_events_chatshipper(env)


# --- pydantic v2: models of the same shapes -------------------------------------------------

Unix = Annotated[int, Field(ge=0, le=253_402_300_799)] | Annotated[float, Field(ge=0, le=253_402_300_799)]


class P(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class PDepartment(P):
    uuid: str | None = None
    name: str | None = None


class PSite(P):
    uuid: str | None = None
    name: str | None = None
    color: str | None = None
    initials: str | None = None


class PUser(P):
    uuid: str | None = None
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email_address: str | None = None
    avatar_url: str | None = None
    admin: bool | None = None
    status: str | None = None


class PVisitor(P):
    uuid: str | None = None
    name: str | None = None
    email_address: str | None = None
    avatar_url: str | None = None
    anonymous: bool | None = None


class PSession(P):
    uuid: str | None = None
    token: str | None = None
    page_url: str | None = None
    page_title: str | None = None
    language: str | None = None
    time_zone: str | None = None
    browser: str | None = None
    ip_address: str | None = None
    visitor: PVisitor | None = None
    site: PSite | None = None
    active_chat_id: str | None = None
    custom_data: dict[str, Any] | list[Any] | None = None


class PAuthorDetails(P):
    uuid: str | None = None
    name: str | None = None
    avatar_url: str | None = None
    anonymous: bool | None = None
    email_address: str | None = None


class PAuthor(P):
    type: str | None = None
    name: str | None = None
    avatar_url: str | None = None
    details: PAuthorDetails | None = None


class PAttachment(P):
    uuid: str | None = None
    name: str | None = None
    url: str | None = None
    size: int | None = None
    content_type: str | None = None


class PMessage(P):
    uuid: str | None = None
    chat: str | None = None
    text: str | None = None
    event: bool | None = None
    author: PAuthor | None = None
    posted_by_visitor: bool | None = None
    created_at: Unix | None = None
    updated_at: Unix | None = None
    file: PAttachment | None = None
    formatting: str | None = None
    whisper: bool | None = None


class PChat(P):
    uuid: str | None = None
    status: str | None = None
    subject: str | None = None
    initiated_at: Unix | None = None
    last_message_at: Unix | None = None
    prompt_for_transcript: bool | None = None
    prompt_for_rating: bool | None = None
    closed_at: Unix | None = None
    verified: bool | None = None
    trusted: bool | None = None
    pending_message: str | None = None
    pending_message_set_at: Unix | None = None
    ip_address: str | None = None
    city: str | None = None
    country: str | None = None
    country_code: str | None = None
    browser: str | None = None
    platform: str | None = None
    stale: bool | None = None
    time_zone: str | None = None
    rating: bool | int | float | str | None = None
    department: PDepartment | None = None
    user: PUser | None = None
    visitor: PVisitor | None = None
    visitor_custom_data: dict[str, Any] | list[Any] | None = None
    session: PSession | None = None
    session_id: str | None = None
    last_message: PMessage | None = None
    site: PSite | None = None


class PChatPayload(P):
    chat: PChat | None = None
    messages: list[PMessage] | None = None
    user: PUser | None = None
    rating: bool | int | float | str | None = None


class PVisitorPayload(P):
    visitor: PVisitor | None = None
    session: PSession | None = None
    session_id: str | None = None
    site: PSite | None = None
    chat: PChat | None = None


class PUserPayload(P):
    user: PUser | None = None
    status: str | None = None


def _chat_webhook(name: str) -> type[P]:
    return type(
        name,
        (P,),
        {
            "__annotations__": {
                "event": Literal[name],
                "timestamp": Unix | None,
                "payload": PChatPayload | None,
            },
            "timestamp": None,
            "payload": None,
        },
    )


class PVisitorCreated(P):
    event: Literal["VisitorCreated"]
    timestamp: Unix | None = None
    payload: PVisitorPayload | None = None


class PSessionRegistration(P):
    event: Literal["SessionRegistration"]
    timestamp: Unix | None = None
    payload: PVisitorPayload | None = None


class PUserStatusChanged(P):
    event: Literal["UserStatusChanged"]
    timestamp: Unix | None = None
    payload: PUserPayload | None = None


class PUnknown(P):
    event: str = Field(min_length=1)
    timestamp: Unix | None = None
    payload: dict[str, Any] | None = None


P_CHAT_WEBHOOKS = {name: _chat_webhook(name) for name in sorted(N_CHAT_EVENTS)}
P_NATTERLY_UNION: Any = Union[
    (*P_CHAT_WEBHOOKS.values(), PVisitorCreated, PSessionRegistration, PUserStatusChanged)
]
P_NATTERLY: TypeAdapter[Any] = TypeAdapter(Annotated[P_NATTERLY_UNION, Field(discriminator="event")])


class PId(P):
    uuid: str | None = None


class PNSession(P):
    uuid: str | None = None
    visitor: PId | None = None


class PNChat(P):
    uuid: str | None = None
    visitor: PId | None = None
    session: PNSession | None = None
    session_id: str | None = None


class PNMessage(P):
    chat: str | None = None


class PNPayload(P):
    chat: PNChat | None = None
    messages: list[PNMessage] | None = None
    visitor: PId | None = None
    session: PNSession | None = None
    session_id: str | None = None
    user: PId | None = None


class PNIngest(P):
    event: str = Field(min_length=1)
    timestamp: Unix | None = None
    payload: PNPayload | None = None
    auth_token: str | None = None


def p_receive_natterly(body: bytes) -> Envelope:
    webhook = PNIngest.model_validate_json(body)
    stored = strip_member(body, "auth_token") if "auth_token" in webhook.model_fields_set else body
    event_id = derive_event_id(stored)
    payload, event = webhook.payload, webhook.event
    aggregate: Any = "other"
    key = event_id
    if payload is not None:
        unknown = (
            event not in N_CHAT_EVENTS and event not in N_VISITOR_EVENTS and event != "UserStatusChanged"
        )
        chat_id = p_chat_id(payload.chat, payload.messages) if event in N_CHAT_EVENTS or unknown else None
        visitor_id = (
            p_visitor_id(payload.visitor, payload.session, payload.session_id, payload.chat)
            if not chat_id and (event in N_VISITOR_EVENTS or unknown)
            else None
        )
        user_id = payload.user.uuid if payload.user and (event == "UserStatusChanged" or unknown) else None
        if chat_id:
            aggregate, key = "chat", chat_id
        elif visitor_id:
            aggregate, key = "visitor", visitor_id
        elif user_id:
            aggregate, key = "agent", user_id
    return Envelope(
        event_id=event_id,
        provider="natterly",
        source=SOURCE,
        event_type=event,
        aggregate=aggregate,
        key=key,
        occurred_at=unix(webhook.timestamp) or RECEIVED_AT,
        received_at=RECEIVED_AT,
        body=msgspec.Raw(stored),
    )


def p_chat_id(chat: Any, messages: Any) -> str | None:
    if chat is not None and chat.uuid:
        return chat.uuid  # type: ignore[no-any-return]
    for message in messages or ():
        if message.chat:
            return message.chat  # type: ignore[no-any-return]
    return None


def p_visitor_id(visitor: Any, session: Any, session_id: Any, chat: Any) -> str | None:
    chat_session = chat.session if chat is not None else None
    uuid = first_uuid(
        *(
            x
            for x in (
                visitor,
                session and session.visitor,
                chat and chat.visitor,
                chat_session and chat_session.visitor,
            )
            if x
        )
    )
    if uuid:
        return uuid
    for candidate in (
        session and session.uuid,
        session_id,
        chat_session and chat_session.uuid,
        chat and chat.session_id,
    ):
        if candidate:
            return "session:" + candidate  # type: ignore[no-any-return]
    return None


def p_user_name(user: PUser) -> str | None:
    if user.name:
        return user.name
    return " ".join(p for p in (user.first_name, user.last_name) if p) or None


def p_agent(user: PUser | None) -> d.AgentRef | None:
    return d.AgentRef(id=user.uuid, name=p_user_name(user)) if user is not None and user.uuid else None


def p_visitor_seen(
    origin: Origin, visitor_id: str, visitor: PVisitor | None, chat_id: Any, suffix: str
) -> d.VisitorSeen:
    eid, at, prov, src = origin
    return d.VisitorSeen(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov,
        source=src,
        visitor_id=visitor_id,
        name=visitor.name if visitor else None,
        email=visitor.email_address if visitor else None,
        anonymous=visitor.anonymous if visitor else None,
        chat_id=chat_id,
    )


def p_decode_natterly(raw: bytes) -> Any:
    """The tagged union, or (for an event name it does not know) PUnknown."""
    try:
        return P_NATTERLY.validate_json(raw)
    except ValidationError:
        return PUnknown.model_validate_json(raw)


def p_events_natterly(env: Envelope) -> list[d.DomainEvent]:
    webhook = p_decode_natterly(bytes(env.body))
    if isinstance(webhook, PUnknown):
        return []
    origin = Origin.of(env)
    eid, at, prov, src = origin
    if isinstance(webhook, PUserStatusChanged):
        payload = webhook.payload
        user = payload.user if payload else None
        if payload is None or user is None or not user.uuid:
            return []
        status = d.parse_agent_status(payload.status) or d.parse_agent_status(user.status)
        if status is None:
            return []
        return [
            d.AgentStatusChanged(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                agent_id=user.uuid,
                name=p_user_name(user),
                status=status,
            )
        ]
    if isinstance(webhook, PVisitorCreated | PSessionRegistration):
        vp = webhook.payload
        if vp is None:
            return []
        visitor_id = p_visitor_id(vp.visitor, vp.session, vp.session_id, vp.chat)
        visitor = (
            vp.visitor
            or (vp.session.visitor if vp.session else None)
            or (vp.chat.visitor if vp.chat else None)
        )
        chat_id = (
            (vp.chat.uuid if vp.chat else None) or (vp.session.active_chat_id if vp.session else None) or None
        )
        return [p_visitor_seen(origin, visitor_id, visitor, chat_id, "")] if visitor_id else []
    payload = webhook.payload
    chat_id = p_chat_id(payload.chat, payload.messages) if payload else None
    if payload is None or chat_id is None:
        return []
    chat = payload.chat or PChat()
    primary: d.DomainEvent
    match webhook.event:
        case "ChatInitiated":
            primary = d.ChatStarted(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                initiated_at=unix(chat.initiated_at) or origin.occurred_at,
            )
        case "ChatAccepted":
            primary = d.ChatAccepted(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                agent=p_agent(payload.user or chat.user),
            )
        case "ChatAssigned":
            primary = d.ChatAssigned(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                agent=p_agent(payload.user or chat.user),
            )
        case "ChatCompleted":
            primary = d.ChatCompleted(
                event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id
            )
        case "ChatClosed":
            primary = d.ChatClosed(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                closed_at=unix(chat.closed_at) or origin.occurred_at,
            )
        case "ChatIgnored":
            primary = d.ChatIgnored(event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id)
        case "ChatIdle":
            primary = d.ChatIdle(event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id)
        case "ChatTranscriptSent":
            primary = d.TranscriptSent(
                event_id=eid, occurred_at=at, provider=prov, source=src, chat_id=chat_id
            )
        case _:
            primary = d.ChatRated(
                event_id=eid,
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                rating=chat.rating if chat.rating is not None else payload.rating,
            )
    events: list[d.DomainEvent] = [primary]
    if payload.chat is not None:
        visitor_id = p_visitor_id(None, None, None, chat)
        dep, site, visitor = chat.department, chat.site, chat.visitor
        events.append(
            d.ChatUpdated(
                event_id=eid + "#chat",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=chat_id,
                subject=chat.subject,
                department=d.DepartmentRef(id=dep.uuid, name=dep.name) if dep else None,
                site=d.SiteRef(id=site.uuid, name=site.name) if site else None,
                visitor=(
                    d.VisitorRef(id=visitor_id, name=visitor.name, anonymous=visitor.anonymous)
                    if visitor is not None
                    else (d.VisitorRef(id=visitor_id) if visitor_id else None)
                ),
                location=d.Location(country=chat.country, country_code=chat.country_code, city=chat.city)
                if chat.country is not None or chat.country_code is not None or chat.city
                else None,
                browser=chat.browser,
                platform=chat.platform,
                initiated_at=unix(chat.initiated_at),
                last_message_at=unix(chat.last_message_at),
                provider_status=chat.status,
            )
        )
    seen: set[str] = set()
    for message in payload.messages or ():
        if not message.uuid or message.uuid in seen:
            continue
        seen.add(message.uuid)
        author = message.author
        kind = ((author.type if author else None) or "").casefold()
        role = n_author(message.event, message.posted_by_visitor, kind, author is not None)
        events.append(
            d.MessagePosted(
                event_id=eid + f"#msg:{message.uuid}",
                occurred_at=at,
                provider=prov,
                source=src,
                chat_id=message.chat or chat_id,
                message_id=message.uuid,
                text=message.text,
                author=d.Author(role=role, name=author.name if author else None),
                posted_at=unix(message.created_at) or origin.occurred_at,
                internal=bool(message.whisper),
            )
        )
    visitor_id = p_visitor_id(None, None, None, chat)
    if visitor_id:
        events.append(p_visitor_seen(origin, visitor_id, chat.visitor, chat_id, "#visitor"))
    return events


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
    agent = None
    for participant in conv.participants or ():
        if participant.accepted and (participant.role or "").casefold() == "agent":
            user_id = p_ref_id(participant.user)
            if user_id:
                agent = d.AgentRef(id=user_id, name=p_cs_user_name(participant.user))
                break
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


def run_pydantic(provider: str, body: bytes) -> Result:
    body = body.strip(WS)
    if provider == "natterly":
        env = p_receive_natterly(body)
        return env, p_events_natterly(env)
    env = p_receive_chatshipper(body)
    return env, p_events_chatshipper(env)


# --- the run ---------------------------------------------------------------------------------

PIPELINES: dict[str, Callable[[str, bytes], Result]] = {
    "msgspec": run_msgspec,
    "json": run_json,
    "pydantic": run_pydantic,
}


def decode_msgspec(provider: str, body: bytes) -> object:
    """Only the decoding the msgspec pipeline does: its ingest Struct, then the full Struct."""
    if provider == "natterly":
        return ingest._N_WEBHOOK.decode(body), decode_natterly(body)  # the receiver's private decoder
    return ingest._C_WEBHOOK.decode(body), decode_chatshipper(body)


def decode_json(provider: str, body: bytes) -> object:
    """Only the decoding the json pipeline does: json.loads in the receiver and in the projector."""
    return json.loads(body), json.loads(body)


def decode_pydantic(provider: str, body: bytes) -> object:
    """Only the decoding the pydantic pipeline does: its ingest model, then the full model."""
    if provider == "natterly":
        return PNIngest.model_validate_json(body), p_decode_natterly(body)
    return CIngest.model_validate_json(body), CWebhook.model_validate_json(body)


DECODERS: dict[str, Callable[[str, bytes], object]] = {
    "msgspec": decode_msgspec,
    "json": decode_json,
    "pydantic": decode_pydantic,
}


def load_goldens() -> list[tuple[str, str, bytes]]:
    return [
        (provider, path.name, path.read_bytes())
        for provider in ("natterly", "chatshipper")
        for path in sorted((FIXTURES / provider).glob("*.json"))
    ]


def verify(goldens: list[tuple[str, str, bytes]]) -> int:
    """Abort unless every pipeline produces identical envelopes and events; count events."""
    total = 0
    for provider, name, body in goldens:
        expected = run_msgspec(provider, body)
        for label, pipeline in PIPELINES.items():
            got = pipeline(provider, body)
            if got != expected:
                sys.exit(f"{label} differs from msgspec on {provider}/{name}:\n{got}\n{expected}")
        total += len(expected[1])
    return total


def time_pass(pipeline: Callable[[str, bytes], object], bodies: list[tuple[str, str, bytes]]) -> float:
    start = time.perf_counter()
    for provider, _, body in bodies:
        pipeline(provider, body)
    return time.perf_counter() - start


def measure(
    bodies: list[tuple[str, str, bytes]],
    seconds: float,
    pipelines: dict[str, Callable[[str, bytes], object]] = PIPELINES,  # type: ignore[assignment]
) -> dict[str, float]:
    """Best pass time per pipeline, rounds alternating between pipelines."""
    best = dict.fromkeys(pipelines, float("inf"))
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 5 or time.perf_counter() < deadline:
        for label, pipeline in pipelines.items():
            best[label] = min(best[label], time_pass(pipeline, bodies))
        rounds += 1
    return best


def report(title: str, bodies: list[tuple[str, str, bytes]], events: int, best: dict[str, float]) -> None:
    size = sum(len(body) for _, _, body in bodies)
    print(f"\n{title}: {len(bodies)} bodies, {size / 1024:.0f} KiB, {events} domain events per pass")
    print(f"  {'pipeline':<9} {'webhooks/s':>11} {'domain ev/s':>12} {'us/webhook':>11} {'msgspec is':>11}")
    for label, seconds in best.items():
        ratio = seconds / best["msgspec"]
        print(
            f"  {label:<9} {len(bodies) / seconds:>11,.0f} {events / seconds:>12,.0f} "
            f"{seconds / len(bodies) * 1e6:>11.1f} {ratio:>10.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="total timing budget (default 20)")
    args = parser.parse_args()
    goldens = load_goldens()
    large = [g for g in goldens if len(g[2]) > 64 * 1024]
    typical = [g for g in goldens if len(g[2]) <= 64 * 1024]
    print(f"Python {sys.version.split()[0]}, msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}")
    budget = args.seconds / 6
    sets = (
        ("all goldens", goldens),
        ("typical bodies (<= 64 KiB)", typical),
        ("large bodies (~100 kB)", large),
    )
    for title, bodies in sets:
        events = verify(bodies)
        report(f"End to end, {title}", bodies, events, measure(bodies, budget))
    for title, bodies in sets:
        events = verify(bodies)
        report(f"Decoding only (the pipelines' own decode calls), {title}", bodies, events,
               measure(bodies, budget, DECODERS))  # fmt: skip
    print("\nVerified before timing: all three pipelines produced identical envelopes and events.")


if __name__ == "__main__":
    main()

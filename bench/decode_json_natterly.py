"""Decode benchmark, json baseline for Natterly: ``json.loads`` + dict access, the contracts' rules."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from decode_common import (
    N_CHAT_EVENTS,
    N_VISITOR_EVENTS,
    RECEIVED_AT,
    SOURCE,
    first_uuid,
    g,
    n_author,
    unix,
)

from contracts import domain as d
from contracts.envelope import Envelope
from contracts.ingest import derive_event_id
from contracts.member_cut import cut_trailing_string, strip_member
from contracts.origin import Origin


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


def d_loads_stored(body: bytes) -> tuple[Any, bytes]:
    """The decoded body and the body minus its token: the same cut as contracts.ingest."""
    # A trailing plain-string token is cut by text; decoding what is left proves the cut right.
    stored = cut_trailing_string(body, "auth_token")
    if stored is not None:
        try:
            obj = json.loads(stored)
        except ValueError:
            pass
        else:
            if isinstance(obj, dict) and "auth_token" not in obj:
                return obj, stored
    obj = json.loads(body)
    return obj, strip_member(body, "auth_token") if isinstance(obj, dict) and "auth_token" in obj else body


def d_receive_natterly(body: bytes) -> Envelope:
    obj, stored = d_loads_stored(body)
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str) or not obj["event"]:
        raise ValueError("bad body")
    event, timestamp, payload = obj["event"], obj.get("timestamp"), obj.get("payload")
    if timestamp is not None and (not isinstance(timestamp, int | float) or timestamp < 0):
        raise ValueError("bad timestamp")
    if payload is not None and not isinstance(payload, dict):
        raise ValueError("bad payload")
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
                agent=d_agent(chat.get("user")),
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

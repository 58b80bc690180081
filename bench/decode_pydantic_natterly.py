"""Decode benchmark, pydantic v2 baseline for Natterly: models of the contracts' shapes, same rules."""

from __future__ import annotations

from typing import Any

import msgspec
from decode_common import (
    N_CHAT_EVENTS,
    N_VISITOR_EVENTS,
    RECEIVED_AT,
    SOURCE,
    first_uuid,
    n_author,
    unix,
)
from decode_pydantic_natterly_models import (
    P_NATTERLY,
    PChat,
    PNIngest,
    PSessionRegistration,
    PUser,
    PUserStatusChanged,
    PVisitor,
    PVisitorCreated,
)
from pydantic import ValidationError

from contracts import domain as d
from contracts.envelope import Envelope
from contracts.ingest import derive_event_id
from contracts.member_cut import cut_trailing_string, strip_member
from contracts.origin import Origin


def p_ingest_stored(body: bytes) -> tuple[PNIngest, bytes]:
    """The ingest model and the body minus its token: the same cut as contracts.ingest."""
    # A trailing plain-string token is cut by text; validating what is left proves the cut right.
    stored = cut_trailing_string(body, "auth_token")
    if stored is not None:
        try:
            webhook = PNIngest.model_validate_json(stored)
        except ValidationError:
            pass
        else:
            if "auth_token" not in webhook.model_fields_set:
                return webhook, stored
    webhook = PNIngest.model_validate_json(body)
    return webhook, strip_member(body, "auth_token") if "auth_token" in webhook.model_fields_set else body


def p_receive_natterly(body: bytes) -> Envelope:
    webhook, stored = p_ingest_stored(body)
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
    """The tagged union of the documented events, or None: an unknown event name or a
    body that fails validation, which the normaliser maps to no events (as contracts does)."""
    try:
        return P_NATTERLY.validate_json(raw)
    except ValidationError:
        return None


def p_events_natterly(env: Envelope) -> list[d.DomainEvent]:
    webhook = p_decode_natterly(bytes(env.body))
    if webhook is None:
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
                agent=p_agent(chat.user),
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

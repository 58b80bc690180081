"""Natterly webhooks → domain events (pure; see docs/contracts.md for the table).

Every ``Chat…`` event yields its own event (bare envelope id), then a
``ChatUpdated`` snapshot of the chat (``#chat``), a ``MessagePosted`` per
message in ``payload.messages`` (``#msg:<uuid>``) and a ``VisitorSeen`` when the
chat names a visitor (``#visitor``). Anything missing means fewer events, never
an error.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from contracts import natterly as n
from contracts.domain import (
    AgentRef,
    AgentStatusChanged,
    Author,
    AuthorRole,
    ChatAccepted,
    ChatAssigned,
    ChatClosed,
    ChatCompleted,
    ChatIdle,
    ChatIgnored,
    ChatRated,
    ChatStarted,
    ChatUpdated,
    DepartmentRef,
    DomainEvent,
    Location,
    MessagePosted,
    PageView,
    SiteRef,
    TranscriptSent,
    VisitorRef,
    VisitorSeen,
    parse_agent_status,
)
from contracts.natterly_ids import is_session_visitor, session_visitor_id_of, visitor_id_of
from contracts.origin import Origin
from contracts.timestamps import from_unix_or_none

__all__ = ["natterly_events"]

_ChatWebhook = (
    n.ChatInitiatedWebhook
    | n.ChatAcceptedWebhook
    | n.ChatAssignedWebhook
    | n.ChatCompletedWebhook
    | n.ChatClosedWebhook
    | n.ChatIgnoredWebhook
    | n.ChatIdleWebhook
    | n.ChatTranscriptSentWebhook
    | n.ChatRatedWebhook
)


def natterly_events(
    origin: Origin, webhook: n.NatterlyWebhook | n.UnknownNatterlyWebhook
) -> list[DomainEvent]:
    """The domain events a decoded Natterly webhook means (unknown events: none)."""
    # Dispatch on the exact type: isinstance() against a msgspec Struct class (what a
    # ``match`` class pattern does) takes the slow metaclass path on every miss.
    kind = type(webhook)
    if kind in _CHAT_WEBHOOKS:
        return _chat(origin, webhook)  # type: ignore[arg-type]
    if kind is n.UserStatusChangedWebhook:
        return _agent_status(origin, webhook.payload)  # type: ignore[arg-type]
    if kind is n.VisitorCreatedWebhook or kind is n.SessionRegistrationWebhook:
        return _visitor(origin, webhook.payload)  # type: ignore[arg-type]
    return []


def _chat(origin: Origin, webhook: _ChatWebhook) -> list[DomainEvent]:
    eid, at, prov, src, rcv, off, _ = origin
    payload = webhook.payload
    chat_id = webhook.chat_id
    if payload is None or chat_id is None:
        return []
    chat = payload.chat or n.Chat()
    visitor_id = visitor_id_of(chat=chat)
    alias = _alias(visitor_id, session_visitor_id_of(chat=chat))
    events: list[DomainEvent] = [_PRIMARY[type(webhook)](origin, chat_id, chat, payload)]
    if payload.chat is not None:
        events.append(_snapshot(origin, chat_id, chat, visitor_id, payload.user))
    seen: set[str] = set()
    for message in payload.messages or ():
        uuid = message.uuid
        if not uuid or uuid in seen:
            continue  # without a uuid a message cannot be deduplicated
        seen.add(uuid)
        events.append(
            MessagePosted(
                event_id=eid + "#msg:" + uuid,
                occurred_at=at,
                provider=prov,
                source=src, received_at=rcv, log_offset=off,
                chat_id=message.chat or chat_id,
                message_id=uuid,
                text=message.text,
                author=_author(message),
                posted_at=from_unix_or_none(message.created_at) or at,
                internal=bool(message.whisper),
            )
        )
    visitor = _visitor_seen(origin, visitor_id, chat.visitor, chat_id, alias=alias)
    if visitor is not None:
        events.append(visitor)
    return events


# The primary event of each chat webhook, from (origin, chat id, chat, payload).
_Primary = Callable[[Origin, str, n.Chat, n.ChatPayload], DomainEvent]


def _started(origin: Origin, chat_id: str, chat: n.Chat, payload: n.ChatPayload) -> DomainEvent:
    eid, at, prov, src, rcv, off, _ = origin
    started = from_unix_or_none(chat.initiated_at) or at
    return ChatStarted(
        event_id=eid, occurred_at=at, provider=prov, source=src, received_at=rcv,
        log_offset=off, chat_id=chat_id, initiated_at=started
    )


def _accepted(origin: Origin, chat_id: str, chat: n.Chat, payload: n.ChatPayload) -> DomainEvent:
    eid, at, prov, src, rcv, off, _ = origin
    agent = _agent(payload.user or chat.user)
    return ChatAccepted(
        event_id=eid, occurred_at=at, provider=prov, source=src, received_at=rcv,
        log_offset=off, chat_id=chat_id, agent=agent,
    )


def _assigned(origin: Origin, chat_id: str, chat: n.Chat, payload: n.ChatPayload) -> DomainEvent:
    eid, at, prov, src, rcv, off, _ = origin
    agent = _agent(payload.user or chat.user)
    return ChatAssigned(
        event_id=eid, occurred_at=at, provider=prov, source=src, received_at=rcv,
        log_offset=off, chat_id=chat_id, agent=agent,
    )


def _closed(origin: Origin, chat_id: str, chat: n.Chat, payload: n.ChatPayload) -> DomainEvent:
    eid, at, prov, src, rcv, off, _ = origin
    closed = from_unix_or_none(chat.closed_at) or at
    return ChatClosed(
        event_id=eid, occurred_at=at, provider=prov, source=src, received_at=rcv,
        log_offset=off, chat_id=chat_id, closed_at=closed
    )


def _rated(origin: Origin, chat_id: str, chat: n.Chat, payload: n.ChatPayload) -> DomainEvent:
    eid, at, prov, src, rcv, off, _ = origin
    rating = chat.rating if chat.rating is not None else payload.rating
    return ChatRated(
        event_id=eid, occurred_at=at, provider=prov, source=src, received_at=rcv,
        log_offset=off, chat_id=chat_id, rating=rating,
    )


def _bare(event: type[ChatCompleted | ChatIgnored | ChatIdle | TranscriptSent]) -> _Primary:
    """Chat events whose only fact is that they happened."""

    def primary(origin: Origin, chat_id: str, chat: n.Chat, payload: n.ChatPayload) -> DomainEvent:
        eid, at, prov, src, rcv, off, _ = origin
        return event(
        event_id=eid, occurred_at=at, provider=prov, source=src, received_at=rcv,
        log_offset=off, chat_id=chat_id,
    )

    return primary


_PRIMARY: dict[type, _Primary] = {
    n.ChatInitiatedWebhook: _started,
    n.ChatAcceptedWebhook: _accepted,
    n.ChatAssignedWebhook: _assigned,
    n.ChatClosedWebhook: _closed,
    n.ChatRatedWebhook: _rated,
    n.ChatCompletedWebhook: _bare(ChatCompleted),
    n.ChatIgnoredWebhook: _bare(ChatIgnored),
    n.ChatIdleWebhook: _bare(ChatIdle),
    n.ChatTranscriptSentWebhook: _bare(TranscriptSent),
}
_CHAT_WEBHOOKS = frozenset(_PRIMARY)


def _snapshot(origin: Origin, chat_id: str, chat: n.Chat, visitor_id: str | None,
              beside: n.User | None) -> ChatUpdated:
    """The chat data as a snapshot; ``beside`` is a ``payload.user`` next to the chat, which
    names that agent too (its row takes the name; the chat's agent is the primary event's)."""
    eid, at, prov, src, rcv, off, _ = origin
    department = chat.department
    site = chat.site
    visitor = chat.visitor
    country, country_code, city = chat.country, chat.country_code, chat.city
    return ChatUpdated(
        event_id=eid + "#chat",
        occurred_at=at,
        provider=prov,
        source=src, received_at=rcv, log_offset=off,
        chat_id=chat_id,
        subject=chat.subject,
        department=DepartmentRef(id=department.uuid, name=department.name) if department else None,
        site=SiteRef(id=site.uuid, name=site.name) if site else None,
        visitor=(
            VisitorRef(id=visitor_id, name=visitor.name, anonymous=visitor.anonymous)
            if visitor is not None
            else (VisitorRef(id=visitor_id) if visitor_id else None)
        ),
        location=(
            Location(country=country, country_code=country_code, city=city)
            if country is not None or country_code is not None or city
            else None
        ),
        browser=chat.browser,
        platform=chat.platform,
        initiated_at=from_unix_or_none(chat.initiated_at),
        last_message_at=from_unix_or_none(chat.last_message_at),
        provider_status=chat.status,
        # The chat's agent as of this webhook: so a chat whose later webhooks (completed,
        # closed, rated…) name its agent ends with that agent, whatever came before.
        agent=_agent(chat.user),
        closed_at=from_unix_or_none(chat.closed_at),
        rating=chat.rating,
        agents=_other(_agent(beside), chat.user),
    )


def _other(agent: AgentRef | None, user: n.User | None) -> tuple[AgentRef, ...]:
    """``agent`` unless it is nobody, or ``user`` (already the snapshot's agent)."""
    if agent is None or (user is not None and user.uuid == agent.id):
        return ()
    return (agent,)


def _author(message: n.Message) -> Author:
    author = message.author
    kind = (author.type or "").casefold() if author is not None else ""
    role: AuthorRole
    if message.event:
        role = "system"  # a system line ("Chat accepted by …"), not typed text
    elif message.posted_by_visitor is True:
        role = "visitor"
    elif message.posted_by_visitor is False:
        role = "bot" if "bot" in kind else "agent"
    elif kind in ("user", "agent"):
        role = "agent"
    elif "bot" in kind:
        role = "bot"
    elif author is not None:
        role = "visitor"
    else:
        role = "system"
    if author is None:
        return Author(role=role)
    details = author.details
    return Author(role=role, name=author.name, id=details.uuid if details is not None else None)


def _agent(user: n.User | None) -> AgentRef | None:
    if user is None or not user.uuid:
        return None
    return AgentRef(id=user.uuid, name=user.display_name)


def _visitor_seen(
    origin: Origin,
    visitor_id: str | None,
    visitor: n.Visitor | None,
    chat_id: str | None,
    suffix: str = "#visitor",
    alias: str | None = None,
) -> VisitorSeen | None:
    eid, at, prov, src, rcv, off, _ = origin
    if not visitor_id:
        return None
    return VisitorSeen(
        event_id=eid + suffix,
        occurred_at=at,
        provider=prov,
        source=src, received_at=rcv, log_offset=off,
        visitor_id=visitor_id,
        name=visitor.name if visitor is not None else None,
        email=visitor.email_address if visitor is not None else None,
        anonymous=visitor.anonymous if visitor is not None else None,
        chat_id=chat_id,
        alias=alias,
    )


def _alias(visitor_id: str | None, session_visitor: str | None) -> str | None:
    """The session visitor id the same webhook names beside a real visitor id (the two are
    one visitor), else None."""
    if visitor_id is None or session_visitor is None or is_session_visitor(visitor_id):
        return None
    return session_visitor


def _visitor(origin: Origin, payload: n.VisitorPayload | None) -> list[DomainEvent]:
    if payload is None:
        return []
    session = payload.session
    chat = payload.chat
    visitor_id = visitor_id_of(
        visitor=payload.visitor, session=session, session_id=payload.session_id, chat=chat
    )
    visitor = payload.visitor
    if visitor is None and session is not None:
        visitor = session.visitor
    if visitor is None and chat is not None:
        visitor = chat.visitor
    chat_id = chat.uuid if chat is not None and chat.uuid else None
    if chat_id is None and session is not None:
        chat_id = session.active_chat_id or None
    alias = _alias(visitor_id, session_visitor_id_of(
        session=session, session_id=payload.session_id, chat=chat))
    seen = _visitor_seen(origin, visitor_id, visitor, chat_id, suffix="", alias=alias)
    if seen is None:
        return []
    if session is not None and session.page_url:
        # SessionRegistration: the page the visitor loaded, at the webhook's time.
        page = PageView(url=session.page_url, title=session.page_title, at=origin.occurred_at)
        seen = msgspec.structs.replace(seen, page=page)
    return [seen]


def _agent_status(origin: Origin, payload: n.UserPayload | None) -> list[DomainEvent]:
    eid, at, prov, src, rcv, off, _ = origin
    user = payload.user if payload is not None else None
    if payload is None or user is None or not user.uuid:
        return []
    status = parse_agent_status(payload.status) or parse_agent_status(user.status)
    if status is None:
        return []
    return [
        AgentStatusChanged(
            event_id=eid,
            occurred_at=at,
            provider=prov,
            source=src, received_at=rcv, log_offset=off,
            agent_id=user.uuid,
            name=user.display_name,
            status=status,
        )
    ]

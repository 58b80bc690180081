"""The state behind the query API's JSON: chat, message, visitor and agent.

Field names are part of Parley's public interface (docs/architecture.md, "Public
interface"). These are shapes only; the projector owns the fold that produces them.
``None`` means unknown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from contracts.domain import (
    AgentRef,
    AgentStatus,
    Author,
    DepartmentRef,
    Location,
    PageView,
    Rating,
    SiteRef,
    VisitorRef,
)

__all__ = ["AgentState", "ChatState", "ChatStatus", "MessageState", "VisitorState"]

#: A chat moves waiting → active → idle → closed.
ChatStatus = Literal["waiting", "active", "idle", "closed"]


class ChatState(msgspec.Struct, frozen=True, kw_only=True):
    """One chat (``GET /api/chats/{id}``); times are UTC, ``message_count`` counts
    distinct messages the visitor can see, ``internal_count`` the agent-only notes (and
    control messages). ``provider_status`` is the provider's own status word, ``type``
    ChatShipper's conversation type (``contact``, ``bot``, ``agent``, ``system``).
    ``agents``: every agent any webhook of this chat named (its agent, participants,
    authors), by id, each with the name the latest of them gave."""

    id: str
    provider: str | None = None
    source: str | None = None
    status: ChatStatus | None = None
    ignored: bool = False
    completed: bool = False
    transcript_sent: bool = False
    subject: str | None = None
    department: DepartmentRef | None = None
    agent: AgentRef | None = None
    visitor: VisitorRef | None = None
    site: SiteRef | None = None
    initiated_at: datetime | None = None
    accepted_at: datetime | None = None
    closed_at: datetime | None = None
    last_message_at: datetime | None = None
    message_count: int = 0
    rating: Rating | None = None
    location: Location | None = None
    browser: str | None = None
    platform: str | None = None
    provider_status: str | None = None
    type: str | None = None
    internal_count: int = 0
    agents: tuple[AgentRef, ...] = ()


class MessageState(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a chat (``GET /api/chats/{id}/messages``); ``internal``: an agent-only
    note or control message, never shown to the visitor; ``message_type``: ChatShipper's."""

    id: str
    chat_id: str
    text: str | None = None
    author: Author | None = None
    posted_at: datetime | None = None
    edited_at: datetime | None = None
    deleted: bool = False
    internal: bool = False
    message_type: str | None = None


class VisitorState(msgspec.Struct, frozen=True, kw_only=True):
    """One visitor (``GET /api/visitors/{id}``); ``chats`` are chat ids, ``pages`` the
    pages they registered, oldest first (the newest 50 are kept).

    ``sessions``: the provisional ids (``session:…``) this visitor was known by before it
    was identified; the API shows their chats and pages as this visitor's.
    ``identified_as``: on such a provisional visitor, the visitor it turned out to be."""

    id: str
    name: str | None = None
    email: str | None = None
    anonymous: bool | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    chats: tuple[str, ...] = ()
    pages: tuple[PageView, ...] = ()
    sessions: tuple[str, ...] = ()
    identified_as: str | None = None


class AgentState(msgspec.Struct, frozen=True, kw_only=True):
    """One agent (``GET /api/agents``); ``since`` is when ``status`` began."""

    id: str
    name: str | None = None
    status: AgentStatus | None = None
    since: datetime | None = None

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

__all__ = ["AgentMetrics", "AgentState", "AgentTime", "ChatMetrics", "ChatState", "ChatStatus", "Erasure",
           "MessageState", "VisitorState"]

#: A chat moves waiting → active → idle → closed.
ChatStatus = Literal["waiting", "active", "idle", "closed"]


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    """On an erased chat, message or visitor (docs/privacy.md): the erasure that removed its
    personal fields, and when it was asked (``at``: the same on every replay)."""

    id: str
    at: datetime


class ChatMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """A chat's analytics measures (docs/analytics.md states each exactly, with its version).

    Durations are seconds; ``None``: not (yet) defined, e.g. ``handle_s`` of a chat not
    closed. ``responses`` counts the agent replies the response times are taken over;
    ``excluded`` names the measures left ``None`` because their times were impossible (an
    end before its start). ``version`` is the version of the set of definitions."""

    version: int
    wait_s: float | None = None
    first_response_s: float | None = None
    response_avg_s: float | None = None
    response_max_s: float | None = None
    responses: int = 0
    handle_s: float | None = None
    visitor_messages: int = 0
    agent_messages: int = 0
    bot_messages: int = 0
    system_messages: int = 0
    missed: bool = False
    abandoned: bool = False
    transfers: int = 0
    excluded: tuple[str, ...] = ()


class AgentTime(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's time over a range of whole UTC days (docs/analytics.md, "Occupancy and
    concurrency"), from the agents' day roll-ups: seconds ``online``, ``busy`` (at least one
    chat active), ``occupied`` (online with at least one chat active); ``occupancy``,
    occupied ÷ online; ``concurrency_avg``, the mean number of chats active while online;
    ``concurrency_max``, the most at once; ``concurrency_s``, seconds with exactly n chats
    active (by n, as a string)."""

    online_s: float = 0.0
    busy_s: float = 0.0
    occupied_s: float = 0.0
    occupancy: float | None = None
    concurrency_avg: float | None = None
    concurrency_max: int = 0
    concurrency_s: dict[str, float] = {}


class AgentMetrics(msgspec.Struct, frozen=True, kw_only=True):
    """An agent's analytics measures (docs/analytics.md states each exactly, with its
    version). ``online_s`` and ``invisible_s``: seconds in that status between the first
    status change (``measured_from``) and the last (``measured_to``); ``last_status`` runs on
    from ``measured_to`` (add the time since, while it is current). ``chats_handled``: the
    chats this agent held (counted by the query API from the report roll-ups; None in the
    stored view, which state consumers read). ``time``: its online time, occupancy and
    concurrency over its whole history (likewise from the roll-ups; None in the stored
    view). ``version`` is the version of the set of agent definitions."""

    version: int
    online_s: float = 0.0
    invisible_s: float = 0.0
    status_changes: int = 0
    measured_from: datetime | None = None
    measured_to: datetime | None = None
    last_status: AgentStatus | None = None
    chats_handled: int | None = None
    time: AgentTime | None = None


class ChatState(msgspec.Struct, frozen=True, kw_only=True):
    """One chat (``GET /api/chats/{id}``); times are UTC, ``message_count`` counts
    distinct messages the visitor can see, ``internal_count`` the agent-only notes (and
    control messages). ``provider_status`` is the provider's own status word, ``type``
    ChatShipper's conversation type (``contact``, ``bot``, ``agent``, ``system``).
    ``agents``: every agent any webhook of this chat named (its agent, participants,
    authors), by id, each with the name the latest of them gave. ``metrics``: the chat's
    analytics measures (None in a view stored before they existed: a rebuild fills it)."""

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
    metrics: ChatMetrics | None = None
    erasure: Erasure | None = None


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
    erasure: Erasure | None = None


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
    erasure: Erasure | None = None


class AgentState(msgspec.Struct, frozen=True, kw_only=True):
    """One agent (``GET /api/agents``); ``since`` is when ``status`` began. ``metrics``: the
    agent's analytics measures (None in a view stored before they existed: a rebuild fills
    it)."""

    id: str
    name: str | None = None
    status: AgentStatus | None = None
    since: datetime | None = None
    metrics: AgentMetrics | None = None

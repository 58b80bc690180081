"""The query API: current state of chats, messages, visitors and agents, over HTTP.

Every endpoint reads whichever projection copy is live at the time of the request, so a
rebuild switching reads is invisible to clients. Views are served as the stored bytes (no
decode/encode round trip); lists are assembled around them.

Read-your-writes: every endpoint accepts ``min_position=<topic:partition:offset>`` (the
``position`` of the receiver's 2xx). The request waits until the live projection's next
offset for that partition is greater than ``offset`` — woken by the runner after each store
commit; partitions another process applies are read by one shared poller every ``recheck_s``
(:mod:`projector.waits`) — and answers 504 ``{"error": "timeout"}`` if that takes longer than
``min_position_timeout_s``; a partition the topic does not have is a 400 at once, when the
running runner's consumer can tell (:mod:`projector.waits`, 4). At most
``http.max_position_waiters`` requests wait at once; one more is answered 503
``{"error": "overloaded"}`` with ``Retry-After``.

Reads are bounded too: the store serves them on connections of their own, and when the
store's bound of reads waiting for one is reached (SQLite ``?read_queue=``, PostgreSQL
``?read_queue=``) one more is answered the same 503 ``overloaded``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec
from aiohttp import web

from contracts.chatshipper_events import CONVERSATION_TYPES
from contracts.errors import ContractError
from contracts.params import parse_uint
from contracts.position import Position
from contracts.state import AgentState, ChatState, MessageState, VisitorState
from contracts.topics import Topics
from parley.errors import StoreError
from parley.http import error_response
from projector import reports
from projector.errors import InvalidCursor, Overloaded, UnknownPartition, UnknownProjection
from projector.metrics import ProjectorMetrics
from projector.store import CUSTOMER_TYPE, Store
from projector.views import merged_visitor, named_authors
from projector.waits import PositionWaits

__all__ = ["ApiOptions", "Page", "QueryApi", "with_sessions"]

CHAT_STATUSES = frozenset({"waiting", "active", "idle", "closed"})
#: ``type`` of ``GET /api/chats``: ChatShipper's conversation types, or ``all`` (a type
#: ChatShipper may add later is listed by ``all`` only).
CHAT_TYPES = frozenset({*CONVERSATION_TYPES, "all"})
DEFAULT_CHATS_LIMIT = 50
DEFAULT_MESSAGES_LIMIT = 100
#: A visitor's provisional (session) visitors merged into it on read, at most.
MAX_MERGED_SESSIONS = 200
T = TypeVar("T")
_JSON = msgspec.json.Encoder()
_VISITOR = msgspec.json.Decoder(VisitorState)
_AGENT = msgspec.json.Decoder(AgentState)
_CHAT = msgspec.json.Decoder(ChatState)
_MESSAGES = msgspec.json.Decoder(list[MessageState])


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next one
    (null on the last page)."""

    items: list[T]
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True)
class ApiOptions:
    min_position_timeout_s: float = 5.0
    recheck_s: float = 0.5  # the shared store poll while waits on other processes' partitions run
    max_chats_limit: int = 200
    max_messages_limit: int = 500


class _BadRequest(Exception):
    pass


class QueryApi:
    """The ``/api/...`` read endpoints over a :class:`Store` (opened by the role)."""

    def __init__(self, store: Store, topics: Topics, waits: PositionWaits,
                 options: ApiOptions = ApiOptions(), metrics: ProjectorMetrics | None = None
                 ) -> None:
        self._store = store
        self._topics = topics
        self._waits = waits
        self._options = options
        self._metrics = metrics

    def install(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/chats", self._guard(self.list_chats))
        r.add_get("/api/chats/{id}", self._guard(self.get_chat))
        r.add_get("/api/chats/{id}/messages", self._guard(self.list_messages))
        r.add_get("/api/visitors/{id}", self._guard(self.get_visitor))
        r.add_get("/api/agents", self._guard(self.list_agents))
        r.add_get("/api/agents/{id}", self._guard(self.get_agent))
        r.add_get("/api/reports/chats", self._guard(self.report_chats))
        r.add_get("/api/reports/agents", self._guard(self.report_agents))
        r.add_get("/api/reports/live", self._guard(self.report_live))

    # ------------------------------------------------------------------------ handlers
    async def get_chat(self, request: web.Request, projection: str) -> web.Response:
        return await self._one(projection, "chat", request.match_info["id"])

    async def get_visitor(self, request: web.Request, projection: str) -> web.Response:
        """The visitor, merged with the provisional (session) visitors it was known by
        before it was identified (their chats and pages are its own)."""
        id_ = request.match_info["id"]
        view = await self._store.get_view(projection, "visitor", id_)
        if view is None:
            return error_response(404, "not_found", f"no visitor {id_!r}")
        visitor = _VISITOR.decode(view)
        if not visitor.sessions:
            return _raw(view)
        return _raw(_JSON.encode(await with_sessions(self._store, projection, visitor)))

    async def list_chats(self, request: web.Request, projection: str) -> web.Response:
        q = request.query
        status = q.get("status") or None
        if status is not None and status not in CHAT_STATUSES:
            raise _BadRequest(f"status must be one of {', '.join(sorted(CHAT_STATUSES))}")
        # Customers' conversations by default; ``type=all`` lists bot, agent and system ones too.
        chat_type = q.get("type") or CUSTOMER_TYPE
        if chat_type not in CHAT_TYPES:
            raise _BadRequest(f"type must be one of {', '.join(sorted(CHAT_TYPES))}")
        views, cursor = await self._store.list_chats(
            projection, status=status, source=q.get("source") or None,
            agent=q.get("agent") or None, chat_type=None if chat_type == "all" else chat_type,
            limit=_limit(q.get("limit"), DEFAULT_CHATS_LIMIT, self._options.max_chats_limit),
            cursor=q.get("cursor") or None)
        return _page(views, cursor)

    async def list_messages(self, request: web.Request, projection: str) -> web.Response:
        chat_id = request.match_info["id"]
        cursor_in = request.query.get("cursor") or None
        views, cursor = await self._store.list_messages(
            projection, chat_id, cursor=cursor_in,
            limit=_limit(request.query.get("limit"), DEFAULT_MESSAGES_LIMIT,
                         self._options.max_messages_limit))
        if not views and cursor_in is None and (
                await self._store.get_view(projection, "chat", chat_id)) is None:
            return error_response(404, "not_found", f"no chat {chat_id!r}")
        messages = _MESSAGES.decode(b"[" + b",".join(views) + b"]")
        if not any(m.author is not None and m.author.name is None and m.author.id is not None
                   for m in messages):
            return _page(views, cursor)
        # Some author is named by id only: the chat knows the names its webhooks gave.
        chat = await self._store.get_view(projection, "chat", chat_id)
        agents = () if chat is None else _CHAT.decode(chat).agents
        named = named_authors(messages, agents)
        return _raw(_JSON.encode(Page(items=named, next_cursor=cursor)))

    async def list_agents(self, request: web.Request, projection: str) -> web.Response:
        """Every agent, its ``metrics.chats_handled`` counted from the report roll-ups (the
        agent's row does not keep its chats: docs/analytics.md)."""
        agents = [_AGENT.decode(view) for view in await self._store.list_agents(projection)]
        # Open spells count up to now (docs/analytics.md).
        served = await reports.served_metrics(self._store, projection, agents, datetime.now(UTC))
        items = [msgspec.structs.replace(a, metrics=served[a.id]) if a.id in served else a
                 for a in agents]
        return _raw(_JSON.encode(Page(items=items, next_cursor=None)))

    async def get_agent(self, request: web.Request, projection: str) -> web.Response:
        """One agent, with its measures over its whole history (as ``GET /api/agents``)."""
        agent_id = request.match_info["id"]
        view = await self._store.get_view(projection, "agent", agent_id)
        if view is None:
            return error_response(404, "not_found", f"no agent {agent_id!r}")
        agent = _AGENT.decode(view)
        served = await reports.served_metrics(self._store, projection, [agent], datetime.now(UTC))
        if agent.id in served:
            agent = msgspec.structs.replace(agent, metrics=served[agent.id])
        return _raw(_JSON.encode(agent))

    async def report_chats(self, request: web.Request, projection: str) -> web.Response:
        q = request.query
        days = reports.parse_range(q.get("from"), q.get("to"), datetime.now(UTC).date())
        return _raw(await reports.chats_report(self._store, projection, days,
                                               q.get("group_by") or None))

    async def report_agents(self, request: web.Request, projection: str) -> web.Response:
        q = request.query
        days = reports.parse_range(q.get("from"), q.get("to"), datetime.now(UTC).date())
        return _raw(await reports.agents_report(self._store, projection, days, datetime.now(UTC)))

    async def report_live(self, request: web.Request, projection: str) -> web.Response:
        return _raw(await reports.live_report(self._store, projection, datetime.now(UTC)))

    # ------------------------------------------------------------------------- helpers
    async def _one(self, projection: str, kind: str, id: str) -> web.Response:
        view = await self._store.get_view(projection, kind, id)
        if view is None:
            return error_response(404, "not_found", f"no {kind} {id!r}")
        return _raw(view)

    def _guard(self, handler: Callable[[web.Request, str], Awaitable[web.Response]]
               ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Common part of every endpoint: min_position wait, live projection, error mapping."""

        async def endpoint(request: web.Request) -> web.Response:
            try:
                raw_position = request.query.get("min_position")
                if raw_position:
                    position = self._position(raw_position)
                    if not await self.wait_applied(position):
                        return error_response(
                            504, "timeout",
                            f"position {position} not applied within "
                            f"{self._options.min_position_timeout_s:g} s; retry later")
                for attempt in (1, 2):
                    projection = await self._store.live_projection(query=True)
                    if projection is None:
                        return error_response(503, "unavailable", "no projection yet; retry shortly",
                                              headers={"Retry-After": "1"})
                    try:
                        response = await handler(request, projection)
                    except UnknownProjection:
                        if attempt == 2:
                            raise
                        continue  # a rebuild switched reads between the two calls: read again
                    response.headers["X-Parley-Projection"] = projection
                    return response
            except (_BadRequest, reports.BadQuery) as exc:
                return error_response(400, "bad_request", str(exc))
            except Overloaded as exc:
                return error_response(503, "overloaded", str(exc),
                                      headers={"Retry-After": "1"})
            except (InvalidCursor, UnknownPartition) as exc:
                return error_response(400, "bad_request", str(exc))
            except UnknownProjection:
                return error_response(503, "unavailable", "projection switching; retry",
                                      headers={"Retry-After": "1"})
            except StoreError as exc:  # busy past its timeout, or closed during shutdown
                return error_response(503, "unavailable", f"state store: {type(exc).__name__}",
                                      headers={"Retry-After": "1"})
            raise AssertionError("unreachable")

        return endpoint

    def _position(self, text: str) -> Position:
        try:
            position = Position.parse(text)
        except ContractError as exc:
            raise _BadRequest(f"min_position: {exc.detail}") from None
        if position.topic not in self._topics.event_topics:
            raise _BadRequest(f"min_position: {position.topic!r} is not an event topic")
        return position

    async def wait_applied(self, position: Position) -> bool:
        """True once the live projection applied ``position``; False after the timeout.
        Raises :class:`~projector.errors.Overloaded` when too many requests wait already, and
        :class:`~projector.errors.UnknownPartition` for a partition the topic does not have."""
        if self._metrics is not None:
            self._metrics.waiting.inc()
        try:
            applied = await self._waits.wait(position, self._options.min_position_timeout_s)
        finally:
            if self._metrics is not None:
                self._metrics.waiting.dec()
        if self._metrics is not None:
            self._metrics.waits.labels("applied" if applied else "timeout").inc()
        return applied


async def with_sessions(store: Store, projection: str, visitor: VisitorState) -> VisitorState:
    """``visitor`` merged with the provisional (session) visitors it was known by before it
    was identified (at most :data:`MAX_MERGED_SESSIONS`; their chats and pages are its own),
    as ``GET /api/visitors/{id}`` serves it."""
    if not visitor.sessions:
        return visitor
    linked = []
    for session_id in visitor.sessions[:MAX_MERGED_SESSIONS]:
        session_view = await store.get_view(projection, "visitor", session_id)
        if session_view is not None:
            linked.append(_VISITOR.decode(session_view))
    return merged_visitor(visitor, linked)


def _limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return parse_uint(raw, "limit", minimum=1, maximum=maximum)
    except ContractError as exc:
        raise _BadRequest(exc.detail) from None


def _page(views: list[bytes], cursor: str | None) -> web.Response:
    # The views are stored JSON: msgspec.Raw places them in the page without a decode.
    return _raw(_JSON.encode(Page(items=[msgspec.Raw(v) for v in views], next_cursor=cursor)))


def _raw(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")

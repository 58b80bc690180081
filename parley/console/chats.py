"""Chats: the list (the query API's filters, and full-text search where this process runs the
search consumer) and one chat's page (state, messages, and its timeline: see
:mod:`parley.console.timeline`), each kept current by the chat streams (EventSource)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import orjson
from aiohttp import web

from consumers.search.http import SEARCH_INDEX
from consumers.search.queries import SearchQuery, query_words
from consumers.search.queries import decode_cursor as decode_search_cursor
from contracts.errors import ContractError
from contracts.params import parse_uint
from parley.console.app import Console, NavItem, PageError, Route, Section, console_of, page_number
from parley.console.timeline import MAX_FOLDED, WatchedLog, chat_timeline
from projector.api import CHAT_STATUSES
from projector.errors import InvalidCursor
from projector.log_index import position_of
from projector.store import CUSTOMER_TYPE

__all__ = ["SECTION"]

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MESSAGES_SHOWN = 200
_FILTERS = ("q", "status", "source", "agent", "type", "limit")


def _filters(request: web.Request) -> dict[str, str]:
    """The list's query parameters, checked (a :class:`PageError` 400 names the bad one)."""
    q = request.query
    got = {name: q[name].strip() for name in _FILTERS if q.get(name, "").strip()}
    if "status" in got and got["status"] not in CHAT_STATUSES:
        raise PageError(400, f"status must be one of {', '.join(sorted(CHAT_STATUSES))}")
    if "limit" in got:
        try:
            parse_uint(got["limit"], "limit", minimum=1, maximum=MAX_LIMIT)
        except ContractError as exc:
            raise PageError(400, exc.detail) from None
    if "q" in got:
        try:
            query_words(got["q"])
        except ContractError as exc:
            raise PageError(400, f"search: {exc.detail}") from None
    return got


async def _rows(request: web.Request, console: Console, got: dict[str, str]
                ) -> tuple[list[dict[str, Any]], str | None, bool]:
    """The chats to list (decoded views, or search hits), the next cursor, and whether
    search is served here."""
    cursor = request.query.get("cursor") or None
    limit = int(got.get("limit", DEFAULT_LIMIT))
    index = request.app.get(SEARCH_INDEX)
    if "q" in got:
        if index is None:
            return [], None, False
        try:
            offset = decode_search_cursor(cursor) if cursor else 0
        except ContractError as exc:
            raise PageError(400, exc.detail) from None
        page = await index.search(SearchQuery(
            q=got["q"], source=got.get("source"), agent=got.get("agent"),
            status=got.get("status"), limit=min(limit, 100), offset=offset))
        hits = [{"id": h.chat_id, "status": h.status, "source": h.source,
                 "subject": h.subject, "agent": {"name": h.agent} if h.agent else None,
                 "visitor": {"name": h.visitor} if h.visitor else None,
                 "last_message_at": h.last_activity_at, "snippet": h.snippet}
                for h in page.hits]
        return hits, page.next_cursor, True
    projection = await console.live_projection()
    chat_type = got.get("type", CUSTOMER_TYPE)
    try:
        views, next_cursor = await console.store.list_chats(
            projection, status=got.get("status"), source=got.get("source"),
            agent=got.get("agent"), chat_type=None if chat_type == "all" else chat_type,
            limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise PageError(400, str(exc)) from None
    return [orjson.loads(v) for v in views], next_cursor, index is not None


def _list_context(request: web.Request, got: dict[str, str], rows: list[dict[str, Any]],
                  next_cursor: str | None, searchable: bool) -> dict[str, Any]:
    stream = [("kind", "chat"), *((k, got[k]) for k in ("status", "source") if k in got)]
    return {
        "chats": rows, "filters": got, "searchable": searchable,
        "statuses": sorted(CHAT_STATUSES),
        "next_url": (f"/console/chats?{urlencode([*got.items(), ('cursor', next_cursor)])}"
                     if next_cursor else None),
        "stream_url": "/api/stream?" + urlencode(stream),
        "fragment_url": f"/console/fragments/chats?{request.query_string}",
    }


async def chat_list(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    got = _filters(request)
    rows, next_cursor, searchable = await _rows(request, console, got)
    return console.render(request, "chats.html", title="Chats",
                          **_list_context(request, got, rows, next_cursor, searchable))


async def chat_list_fragment(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    got = _filters(request)
    rows, next_cursor, searchable = await _rows(request, console, got)
    context = _list_context(request, got, rows, next_cursor, searchable)
    return web.Response(text=console.fragment("chats_table.html", **context),
                        content_type="text/html")


async def chat_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    chat_id = request.match_info["id"]
    page = page_number(request)
    projection = await console.live_projection()
    view = await console.store.get_view(projection, "chat", chat_id)
    if view is None:
        raise PageError(404, f"there is no chat {chat_id!r}")
    messages, more = await console.store.list_messages(projection, chat_id,
                                                       limit=MESSAGES_SHOWN)
    quoted = quote(chat_id, safe="")
    return console.render(
        request, "chat.html", title=f"Chat {chat_id}", chat=orjson.loads(view),
        state=orjson.dumps(orjson.loads(view), option=orjson.OPT_INDENT_2).decode(),
        messages=[orjson.loads(m) for m in messages], more_messages=more is not None,
        stream_url=f"/api/chats/{quoted}/stream",
        timeline_url=f"/console/chats/{quoted}/timeline?page={page}")


async def timeline_fragment(request: web.Request) -> web.StreamResponse:
    """One page of the chat's timeline (oldest first), with links to the pages around it."""
    console = console_of(request)
    chat_id = request.match_info["id"]
    page = page_number(request)
    projection = await console.live_projection()
    if await console.store.get_view(projection, "chat", chat_id) is None:
        raise PageError(404, f"there is no chat {chat_id!r}")
    size = console.timeline_page
    # The positions up to the page's end: the records before it are folded for its states.
    views, more = await console.store.list_log(projection, "chat", chat_id, limit=page * size)
    shown_from = (page - 1) * size
    if page > 1 and len(views) <= shown_from:
        raise PageError(404, f"the timeline of chat {chat_id!r} has no page {page}")
    positions = [position_of(v) for v in views]
    watched = [WatchedLog(g.name, g.group, g.topics, g.dlq) for g in console.groups]
    entries = await chat_timeline(console.kafka, positions, chat_id, watched,
                                  console.rt.key_ring(), shown_from=shown_from)
    quoted = quote(chat_id, safe="")
    return web.Response(text=console.fragment(
        "timeline.html", entries=entries, first=shown_from + 1, page=page,
        states=shown_from <= MAX_FOLDED, max_folded=MAX_FOLDED,
        earlier_url=f"/console/chats/{quoted}?page={page - 1}" if page > 1 else None,
        later_url=f"/console/chats/{quoted}?page={page + 1}" if more is not None else None,
        groups=[g.name for g in console.groups]), content_type="text/html")


SECTION = Section(
    nav=(NavItem("Chats", "/console/chats"),),
    routes=(Route("GET", "/chats", chat_list),
            Route("GET", "/fragments/chats", chat_list_fragment, page=False),
            Route("GET", "/chats/{id}", chat_page),
            Route("GET", "/chats/{id}/timeline", timeline_fragment, page=False)),
)

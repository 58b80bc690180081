"""``GET /api/search?q=…``: ranked chats with highlighted snippets.

Query parameters: ``q`` (required; every word must match, the last as a prefix of at least
two characters: ``q=r`` is a 400), ``source``,
``agent`` (id or name), ``status``, ``from`` and ``to`` (ISO-8601; the chat's last activity
is in ``[from, to)``), ``limit`` (1-100, default 20) and ``cursor`` (from ``next_cursor``).
Answer: ``{"hits": [...], "next_cursor": "..."|null}``.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from consumers.search.index import SearchIndex
from consumers.search.queries import MAX_LIMIT, SearchQuery, decode_cursor, query_words
from contracts.errors import ContractError
from contracts.params import parse_time, parse_uint
from parley.http import error_response, json_response

__all__ = ["install_search_api"]

SEARCH_INDEX = web.AppKey("search_index", SearchIndex)


def _time(value: str | None, name: str) -> datetime | None:
    return parse_time(value, name) if value else None


async def search(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    if not q:
        return error_response(400, "bad_request", "q is required")
    try:
        limit = parse_uint(request.query.get("limit", "20"), "limit", minimum=1,
                           maximum=MAX_LIMIT)
        cursor = request.query.get("cursor")
        query = SearchQuery(
            q=q, source=request.query.get("source") or None,
            agent=request.query.get("agent") or None,
            status=request.query.get("status") or None,
            from_=_time(request.query.get("from"), "from"), to=_time(request.query.get("to"), "to"),
            limit=limit, offset=decode_cursor(cursor) if cursor else 0)
        query_words(q)  # a one-letter prefix would match nearly everything: 400
    except ContractError as exc:
        return error_response(400, "bad_request", exc.detail)
    page = await request.app[SEARCH_INDEX].search(query)
    return json_response(page)


def install_search_api(app: web.Application, index: SearchIndex) -> None:
    """Serve ``GET /api/search`` from ``index`` (which the caller opens and closes)."""
    app[SEARCH_INDEX] = index
    app.router.add_get("/api/search", search)

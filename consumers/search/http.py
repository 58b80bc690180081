"""``GET /api/search?q=…``: ranked chats with highlighted snippets.

Query parameters: ``q`` (required; every word must match, the last as a prefix), ``source``,
``agent`` (id or name), ``status``, ``from`` and ``to`` (ISO-8601; the chat's last activity
is in ``[from, to)``), ``limit`` (1-100, default 20) and ``cursor`` (from ``next_cursor``).
Answer: ``{"hits": [...], "next_cursor": "..."|null}``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from consumers.search.index import SearchIndex
from consumers.search.queries import MAX_LIMIT, SearchQuery, decode_cursor
from parley.http import error_response, json_response

__all__ = ["install_search_api"]

SEARCH_INDEX = web.AppKey("search_index", SearchIndex)


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO-8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def search(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    if not q:
        return error_response(400, "bad_request", "q is required")
    try:
        limit = int(request.query.get("limit", "20"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        cursor = request.query.get("cursor")
        query = SearchQuery(
            q=q, source=request.query.get("source") or None,
            agent=request.query.get("agent") or None,
            status=request.query.get("status") or None,
            from_=_time(request.query.get("from"), "from"), to=_time(request.query.get("to"), "to"),
            limit=limit, offset=decode_cursor(cursor) if cursor else 0)
    except ValueError as exc:
        return error_response(400, "bad_request", str(exc))
    page = await request.app[SEARCH_INDEX].search(query)
    return json_response(page)


def install_search_api(app: web.Application, index: SearchIndex) -> None:
    """Serve ``GET /api/search`` from ``index`` (which the caller opens and closes)."""
    app[SEARCH_INDEX] = index
    app.router.add_get("/api/search", search)

"""Visitors and agents: each one's current state (as the query API serves it), its chats,
and an agent's status history (its webhooks read by offset from its log index and folded,
as a chat's timeline is: :mod:`parley.console.timeline`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
import orjson
from aiohttp import web
from markupsafe import Markup

from contracts.state import VisitorState
from parley.console.app import Console, NavItem, PageError, Route, Section, console_of, page_number
from parley.console.timeline import fold_entries, opener_for
from projector.api import with_sessions
from projector.log_index import position_of
from projector.states import AggregateRef

__all__ = ["SECTION"]

CHATS_SHOWN = 50
#: An agent's latest chats on its page: the chat listing filtered by agent walks the listing's
#: index until it has this many of the agent's (the whole list: /console/chats?agent=ID).
AGENT_CHATS_SHOWN = 20
_VISITOR = msgspec.json.Decoder(VisitorState)


async def _chats(console: Console, projection: str, ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for chat_id in ids[:CHATS_SHOWN]:
        view = await console.store.get_view(projection, "chat", chat_id)
        if view is not None:
            out.append(orjson.loads(view))
    return out


async def _visitor_body(console: Console, visitor_id: str) -> str:
    """The visitor's state, pages and chats (the part of its page that follows the stream)."""
    projection = await console.live_projection()
    view = await console.store.get_view(projection, "visitor", visitor_id)
    if view is None:
        raise PageError(404, f"there is no visitor {visitor_id!r}")
    # As the API shows it: with the provisional visitors it was.
    visitor = await with_sessions(console.store, projection, _VISITOR.decode(view))
    data = orjson.loads(msgspec.json.encode(visitor))
    chats = await _chats(console, projection, list(reversed(visitor.chats)))
    return console.fragment(
        "visitor_body.html", visitor=data, chats=chats, more_chats=len(visitor.chats) > CHATS_SHOWN,
        state=orjson.dumps(data, option=orjson.OPT_INDENT_2).decode(),
        # Whose changes reload it: the visitor's, and those of the sessions it was known by.
        ids=[visitor_id, *visitor.sessions], filters={}, searchable=True, next_url=None)


async def visitor_page(request: web.Request) -> web.StreamResponse:
    """A visitor, updated live from the visitor state stream (its own changes only)."""
    console = console_of(request)
    visitor_id = request.match_info["id"]
    body = Markup(await _visitor_body(console, visitor_id))  # noqa: S704 - rendered autoescaped
    return console.render(request, "visitor.html", title=f"Visitor {visitor_id}", body=body,
                          stream_url="/api/stream?kind=visitor",
                          live_url=f"/console/visitors/{quote(visitor_id, safe='')}/live")


async def visitor_fragment(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    return web.Response(text=await _visitor_body(console, request.match_info["id"]),
                        content_type="text/html")


async def visitor_lookup(request: web.Request) -> web.StreamResponse:
    """The visitors page: a visitor is found by id (there is no listing of every visitor)."""
    console = console_of(request)
    wanted = request.query.get("id", "").strip()
    if wanted:
        return web.Response(status=303,
                            headers={"Location": f"/console/visitors/{quote(wanted, safe='')}"})
    return console.render(request, "visitors.html", title="Visitors")


async def agent_list(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    projection = await console.live_projection()
    agents = [orjson.loads(v) for v in await console.store.list_agents(projection)]
    return console.render(request, "agents.html", title="Agents", agents=agents,
                          stream_url="/api/stream?kind=agent",
                          fragment_url="/console/fragments/agents")


async def agent_list_fragment(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    projection = await console.live_projection()
    agents = [orjson.loads(v) for v in await console.store.list_agents(projection)]
    return web.Response(text=console.fragment("agents_table.html", agents=agents),
                        content_type="text/html")


async def agent_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    agent_id = request.match_info["id"]
    page = page_number(request)
    projection = await console.live_projection()
    view = await console.store.get_view(projection, "agent", agent_id)
    if view is None:
        raise PageError(404, f"there is no agent {agent_id!r}")
    views, more = await console.store.list_chats(projection, agent=agent_id, chat_type=None,
                                                 limit=AGENT_CHATS_SHOWN)
    return console.render(request, "agent.html", title=f"Agent {agent_id}",
                          agent=orjson.loads(view), chats=[orjson.loads(v) for v in views],
                          filters={}, searchable=True,
                          next_url=(f"/console/chats?type=all&agent={quote(agent_id, safe='')}"
                                    if more else None),
                          stream_url="/api/stream?kind=agent",
                          history_url=f"/console/agents/{quote(agent_id, safe='')}/history?page={page}")


async def agent_history(request: web.Request) -> web.StreamResponse:
    """One page of the agent's status history (oldest first, ``console.timeline_page``
    webhooks a page): each change of its status, from its webhooks. A status webhook carries
    the status it sets, so a page is folded from its own first webhook, not the prefix."""
    console = console_of(request)
    agent_id = request.match_info["id"]
    page = page_number(request)
    size = console.timeline_page
    projection = await console.live_projection()
    views, more = await console.store.list_log(projection, "agent", agent_id, limit=page * size)
    shown_from = (page - 1) * size
    if page > 1 and len(views) <= shown_from:
        raise PageError(404, f"the status history of agent {agent_id!r} has no page {page}")
    positions = [position_of(v) for v in views[shown_from:]]
    quoted = quote(agent_id, safe="")
    pages = {"first": shown_from + 1, "seen": len(positions),
             "earlier_url": f"/console/agents/{quoted}?page={page - 1}" if page > 1 else None,
             "later_url": f"/console/agents/{quoted}?page={page + 1}" if more else None}
    try:
        records = await console.kafka.records(positions)
    except Exception:  # noqa: BLE001 - Kafka away: the history says it could not be read
        return web.Response(text=console.fragment("agent_history.html", changes=[], down=True,
                                                  **pages), content_type="text/html")
    changes = []
    last: object = None
    opener = await opener_for(console.rt.key_ring(), records.values())
    for entry in fold_entries(AggregateRef("agent", agent_id), positions, records, opener):
        status = (entry.view or {}).get("status")
        if entry.view is not None and status != last:
            changes.append({"status": status, "since": entry.view.get("since"),
                            "event_type": entry.event_type, "position": str(entry.position),
                            "received_at": entry.received_at})
            last = status
    return web.Response(text=console.fragment("agent_history.html", changes=changes, down=False,
                                              **pages), content_type="text/html")


SECTION = Section(
    nav=(NavItem("Agents", "/console/agents"), NavItem("Visitors", "/console/visitors")),
    routes=(Route("GET", "/agents", agent_list),
            Route("GET", "/fragments/agents", agent_list_fragment, page=False),
            Route("GET", "/agents/{id}", agent_page),
            Route("GET", "/agents/{id}/history", agent_history, page=False),
            Route("GET", "/visitors", visitor_lookup),
            Route("GET", "/visitors/{id}", visitor_page),
            Route("GET", "/visitors/{id}/live", visitor_fragment, page=False)),
)

"""The reports page: the reports API's figures (:mod:`projector.reports`, read from the
roll-ups) drawn over time and per agent, in a table, and the live figures.

The page and its charts call the functions the API's handlers call, with the same
parameters, so what the page shows is what ``GET /api/reports/…`` answers. Charts are SVG
images drawn on the server (:mod:`parley.console.charts`), each at its own URL; the live
figures are a fragment the page re-fetches, as the overview's panels are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from parley.console import charts
from parley.console.app import Console, NavItem, PageError, Route, Section, console_of
from projector import reports as api

__all__ = ["CHARTS", "SECTION"]

#: The table's grouping when the query names none.
DEFAULT_GROUP = "day"
#: The duration measures the page shows (docs/analytics.md), with their labels.
MEASURES = {"wait_s": "Wait", "first_response_s": "First response", "handle_s": "Handle"}


@dataclass(frozen=True)
class Query:
    """The page's parameters, checked: the UTC days from ``start`` to ``end`` (both
    included) and the table's ``group_by``."""

    start: date
    end: date
    group_by: str

    def params(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def parse_query(request: web.Request) -> Query:
    """The request's ``from``, ``to`` and ``group_by`` as the reports API reads them (empty
    means the default); a bad one is a 400 page naming it."""
    q = request.query
    group_by = q.get("group_by") or DEFAULT_GROUP
    if group_by not in api.GROUPS:
        raise PageError(400, f"group_by must be one of {', '.join(api.GROUPS)}, "
                        f"not {group_by[:40]!r}")
    try:
        start, end = api.parse_range(q.get("from") or None, q.get("to") or None,
                                     datetime.now(UTC).date())
    except api.BadQuery as exc:
        raise PageError(400, str(exc)) from None
    return Query(start, end, group_by)


async def _chats(console: Console, query: Query, group_by: str) -> list[dict[str, Any]]:
    projection = await console.live_projection()
    report = orjson.loads(await api.chats_report(console.store, projection,
                                                 (query.start, query.end), group_by))
    groups: list[dict[str, Any]] = report["groups"]
    return groups


Draw = Callable[[Console, Query], Awaitable[bytes]]


def _measure(group: dict[str, Any], name: str, stat: str) -> float | None:
    value = group.get("measures", {}).get(name, {}).get(stat)
    return None if value is None else float(value)


def _days(query: Query) -> list[str]:
    return [(query.start + timedelta(days=n)).isoformat()
            for n in range((query.end - query.start).days + 1)]


def _daily(query: Query, groups: list[dict[str, Any]],
           value: Callable[[dict[str, Any]], float | None], missing: float | None
           ) -> list[float | None]:
    by_day = {g["key"]: g for g in groups}
    return [value(by_day[day]) if day in by_day else missing for day in _days(query)]


async def _chats_chart(console: Console, query: Query) -> bytes:
    groups = await _chats(console, query, "day")
    return charts.over_time("Chats per day", "chats", _days(query), {
        "chats": _daily(query, groups, lambda g: float(g["chats"]), 0.0)}, counts=True)


def _stat(name: str, stat: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda group: _measure(group, name, stat)


def _times_chart(name: str) -> Draw:
    async def draw(console: Console, query: Query) -> bytes:
        groups = await _chats(console, query, "day")
        return charts.over_time(f"{MEASURES[name]} per day", "seconds", _days(query), {
            stat: _daily(query, groups, _stat(name, stat), None) for stat in ("median", "p90")})
    return draw


async def agent_names(console: Console, keys: list[str]) -> dict[str, str]:
    """The names of the agents ``keys`` (a report grouped by agent has their ids), from
    their views in the live copy; an agent without a view or a name is left out."""
    projection = await console.live_projection()
    names: dict[str, str] = {}
    for key in keys:
        view = await console.store.get_view(projection, "agent", key)
        name = orjson.loads(view).get("name") if view is not None else None
        if isinstance(name, str) and name:
            names[key] = name
    return names


async def _agent_labels(console: Console, groups: list[dict[str, Any]]) -> list[str]:
    keys = [g["key"] for g in groups]
    names = await agent_names(console, keys)
    return [names.get(k, k) for k in keys]


async def _agent_chats_chart(console: Console, query: Query) -> bytes:
    groups = await _chats(console, query, "agent")
    return charts.bars("Chats per agent", "chats", await _agent_labels(console, groups), {
        "chats": [float(g["chats"]) for g in groups],
        "missed": [float(g["missed"]) for g in groups]}, counts=True)


async def _agent_times_chart(console: Console, query: Query) -> bytes:
    groups = await _chats(console, query, "agent")
    return charts.bars("Median wait and first response per agent", "seconds",
                       await _agent_labels(console, groups), {
                           f"{MEASURES[m].lower()}, median": [_measure(g, m, "median")
                                                              for g in groups]
                           for m in ("wait_s", "first_response_s")})


@dataclass(frozen=True)
class Chart:
    """One chart of the page: ``name`` (its URL's), ``title``, and how it is drawn."""

    name: str
    title: str
    draw: Draw


CHARTS: tuple[Chart, ...] = (
    Chart("chats", "Chats per day", _chats_chart),
    Chart("wait", "Wait per day: median and p90", _times_chart("wait_s")),
    Chart("first_response", "First response per day: median and p90",
          _times_chart("first_response_s")),
    Chart("agent_chats", "Chats and missed chats per agent", _agent_chats_chart),
    Chart("agent_times", "Median wait and first response per agent", _agent_times_chart),
)


async def _live(console: Console) -> dict[str, Any]:
    projection = await console.live_projection()
    live: dict[str, Any] = orjson.loads(await api.live_report(console.store, projection,
                                                              datetime.now(UTC)))
    live["online"] = sum(1 for a in live["agents"] if a["status"] == "online")
    return live


async def reports_page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    query = parse_query(request)
    by_day = await _chats(console, query, "day")
    table = by_day if query.group_by == "day" else await _chats(console, query, query.group_by)
    params = urlencode(query.params())
    names = await agent_names(console, [g["key"] for g in table]) if query.group_by == "agent" \
        else {}
    return console.render(
        request, "reports.html", title="Reports", query=query, groups=list(api.GROUPS),
        names=names,
        total=sum(g["chats"] for g in by_day), table=table, measures=MEASURES,
        charts=[{"name": c.name, "title": c.title,
                 "url": f"/console/reports/charts/{c.name}.svg?{params}"} for c in CHARTS],
        live=console.fragment("reports_live.html", **await _live(console)))


async def live_fragment(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    return web.Response(text=console.fragment("reports_live.html", **await _live(console)),
                        content_type="text/html")


async def chart_svg(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    name = request.match_info["name"]
    chart = next((c for c in CHARTS if c.name == name), None)
    if chart is None:
        raise PageError(404, f"there is no chart {name!r}")
    body = await chart.draw(console, parse_query(request))
    return web.Response(body=body, content_type="image/svg+xml")


SECTION = Section(
    nav=(NavItem("Reports", "/console/reports"),),
    routes=(Route("GET", "/reports", reports_page),
            Route("GET", "/reports/live", live_fragment, page=False),
            Route("GET", "/reports/charts/{name}.svg", chart_svg, page=False)),
)

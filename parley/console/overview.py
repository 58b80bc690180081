"""The overview page: panels (:class:`~parley.console.app.Panel`) loaded side by side, each
on its own deadline, so one part that is down (Kafka, a group, the store) shows as down
while the rest of the page is served; the page's script re-fetches each panel's fragment
(``/console/panels/<name>``) every few seconds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiohttp import web

from parley.console.app import Console, NavItem, PageError, Panel, Route, Section, console_of

__all__ = ["PANELS", "SECTION"]

log = logging.getLogger("parley.console")


async def render_panel(console: Console, panel: Panel) -> str:
    """The panel's fragment, or the same fragment saying it is down and why."""
    try:
        data: Mapping[str, object] = await asyncio.wait_for(panel.load(console),
                                                            console.panel_timeout_s)
    except TimeoutError:
        return console.fragment("panel_down.html", panel=panel,
                                reason=f"no answer within {console.panel_timeout_s:g} s")
    except Exception as exc:  # noqa: BLE001 - a panel that fails is shown as down, not a 500
        log.info("console panel %s down: %s", panel.name, type(exc).__name__)
        return console.fragment("panel_down.html", panel=panel, reason=_reason(exc))
    return console.fragment(panel.template, panel=panel, **data)


def _reason(exc: Exception) -> str:
    # The exception's class and first line: no configuration values (hosts are no secret,
    # but a URL with a password could be, so store URLs are never formatted into errors).
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


async def overview(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    bodies = await asyncio.gather(*(render_panel(console, p) for p in console.panels))
    return console.render(request, "overview.html", title="Overview",
                          panels=list(zip(console.panels, bodies, strict=True)))


async def panel(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    name = request.match_info["name"]
    found = next((p for p in console.panels if p.name == name), None)
    if found is None:
        raise PageError(404, f"there is no overview panel {name!r}")
    return web.Response(text=await render_panel(console, found), content_type="text/html")


async def _load_traffic(console: Console) -> Mapping[str, object]:
    """Per source: accepted (records appended to the event topics) and rejected by status
    (the rejections topic), both written by every receiver process, over the last hour."""
    accepted, rejections = await asyncio.gather(
        console.accepted.refresh(console.kafka, console.rt.topics.event_topics),
        console.kafka.rejections(console.rt.topics, per_source=1,
                                 window_s=console.accepted.window_s,
                                 timeout_s=console.panel_timeout_s / 2))
    rejected: dict[str, dict[int, int]] = {}
    for (source, status, _), n in sorted(rejections.counts.items()):
        by_status = rejected.setdefault(source, {})
        by_status[status] = by_status.get(status, 0) + n
    sources = sorted({*accepted.per_source, *rejected})
    return {"sources": [{"source": s, "accepted": accepted.per_source.get(s, 0),
                         "rejected": rejected.get(s, {})} for s in sources],
            "complete": accepted.complete and rejections.complete}


async def _load_appended(console: Console) -> Mapping[str, object]:
    window_s = console.accepted.window_s
    topics = console.rt.topics.event_topics
    appended = await console.kafka.appended_since(topics, time.time() - window_s)
    return {"appended": appended, "window_s": window_s}


async def _load_groups(console: Console) -> Mapping[str, object]:
    return {"groups": await console.kafka.groups()}


async def _load_topics(console: Console) -> Mapping[str, object]:
    return {"topics": await console.kafka.topics()}


async def _load_store(console: Console) -> Mapping[str, object]:
    """Copies, rows of the live one, and each copy's progress through the log: its stored
    next offsets against the event topics' end offsets (a rebuilding copy's progress)."""
    store = console.store
    live = await store.live_projection(query=True)
    names = await store.list_projections()
    counts, counted_s = await console.row_counts.get(store, live) if live is not None else ({}, 0.0)
    verifications = await store.verifications()
    applied = {name: sum(n for (topic, _), n in (await store.offsets(name)).items()
                         if topic in console.rt.topics.event_topics) for name in names}
    ends: int | None = None
    try:  # the store part is shown even when Kafka is away
        topics = await asyncio.wait_for(console.kafka.topics(), console.panel_timeout_s / 2)
        ends = sum(t.total for t in topics if t.topic in console.rt.topics.event_topics)
    except Exception:  # noqa: BLE001 - progress is then unknown, and says so
        ends = None
    copies = [{"name": name, "live": name == live, "applied": applied[name],
               "progress": (None if ends is None else 100.0 if not ends
                            else min(100.0, 100.0 * applied[name] / ends)),
               "verified": name in verifications} for name in names]
    return {"live": live, "copies": copies, "counts": counts, "counted_s": counted_s,
            "ends": ends}


PANELS: tuple[Panel, ...] = (
    Panel("traffic", "Webhooks, last hour (every receiver)", "panels/traffic.html",
          _load_traffic),
    Panel("appended", "Appended to Kafka, last hour", "panels/appended.html", _load_appended),
    Panel("groups", "Consumer groups", "panels/groups.html", _load_groups, wide=True),
    Panel("store", "Projection", "panels/store.html", _load_store),
    Panel("topics", "Kafka topics", "panels/topics.html", _load_topics, refresh_s=5.0),
)

SECTION = Section(
    nav=(NavItem("Overview", "/console"),),
    routes=(Route("GET", "/", overview),
            Route("GET", "/panels/{name}", panel, page=False)),
)

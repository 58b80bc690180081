"""The overview page: panels (:class:`~parley.console.app.Panel`) loaded side by side, each
on its own deadline, so one part that is down (Kafka, a group, the store) shows as down
while the rest of the page is served; the page's script re-fetches each panel's fragment
(``/console/panels/<name>``) every few seconds."""

from __future__ import annotations

import asyncio
import logging
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
        log.warning("console panel %s down: %s", panel.name, type(exc).__name__)
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


async def _load_store(console: Console) -> Mapping[str, object]:
    store = console.store
    live = await store.live_projection(query=True)
    copies = await store.list_projections()
    counts = await store.counts(live) if live is not None else {}
    return {"live": live, "copies": copies, "counts": counts}


PANELS: tuple[Panel, ...] = (
    Panel("store", "Projection", "panels/store.html", _load_store),
)

SECTION = Section(
    nav=(NavItem("Overview", "/console"),),
    routes=(Route("GET", "/", overview),
            Route("GET", "/panels/{name}", panel, page=False)),
)

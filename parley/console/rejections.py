"""The rejected-webhooks page (``/console/rejections``) and the overview's panel of
rejections per source and reason over the last hour.

Both read the rejections topic (:mod:`parley.console.rejection_log`, with the console's
Kafka reader), which every receiver
process writes, so a misconfigured token or signature shows here within seconds, with which
check failed and never a secret. The page's list re-fetches itself every few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web
from aiokafka.errors import KafkaError

from parley.console.app import Console, NavItem, PageError, Panel, Route, Section, console_of
from parley.console.rejection_log import RejectionReport

__all__ = ["PANEL", "SECTION"]

#: Rejections shown per source on the page.
PER_SOURCE = 50
_READ_TIMEOUT_S = 5.0


async def _report(console: Console, per_source: int) -> RejectionReport:
    return await console.kafka.rejections(console.rt.topics, per_source=per_source,
                                          window_s=3600.0, timeout_s=_READ_TIMEOUT_S)


async def _report_or_down(console: Console) -> RejectionReport:
    """The report; Kafka down is a 503 page that says so (never a blank page or a 500)."""
    try:
        async with asyncio.timeout(_READ_TIMEOUT_S * 2):
            return await _report(console, PER_SOURCE)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise PageError(503, f"down: the rejections topic cannot be read now "
                             f"({type(exc).__name__}); Kafka may be unreachable") from None


async def page(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    report = await _report_or_down(console)
    return console.render(request, "rejections.html", title="Rejected webhooks",
                          body=console.fragment("rejections_list.html", report=report))


async def fragment(request: web.Request) -> web.StreamResponse:
    """The page's list alone, for its script to swap in."""
    console = console_of(request)
    try:
        report = await _report_or_down(console)
    except PageError as exc:
        return web.Response(text=console.fragment("panel_down.html", reason=exc.detail),
                            content_type="text/html")
    return web.Response(text=console.fragment("rejections_list.html", report=report),
                        content_type="text/html")


async def _load_panel(console: Console) -> Mapping[str, object]:
    return {"report": await _report(console, per_source=1)}


PANEL = Panel("rejections", "Rejected webhooks, last hour", "panels/rejections.html",
              _load_panel, refresh_s=3.0)

SECTION = Section(
    nav=(NavItem("Rejected webhooks", "/console/rejections"),),
    routes=(Route("GET", "/rejections", page),
            Route("GET", "/rejections/list", fragment, page=False)),
)

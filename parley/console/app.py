"""The console's core: what every page gets (:class:`Console`), page registration
(:class:`Route`, :class:`Section`), rendering, the error pages and the security headers.

A page is an ``async def page(request) -> web.StreamResponse`` that finds the console with
:func:`console_of` and answers :meth:`Console.render`; it signals bad input by raising
:class:`PageError` (404, 400), which becomes an error page. Every route is wrapped by
:func:`parley.console.session.guard` (login, CSRF) when :func:`parley.console.install_console`
adds it; which routes and which navigation entries exist is the list in
:mod:`parley.console.sections`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import jinja2
from aiohttp import web

from contracts.errors import ContractError
from contracts.params import parse_uint
from parley.console.counts import RowCounts
from parley.console.groups import GroupInfo
from parley.console.kafka_view import KafkaView
from parley.console.source_counts import SourceCounts
from parley.errors import StoreError
from parley.runtime import Runtime
from projector.errors import Overloaded, UnknownProjection
from projector.store import Store

__all__ = [
    "CONSOLE",
    "CSP",
    "Console",
    "NavItem",
    "PageError",
    "Panel",
    "Route",
    "Section",
    "Session",
    "console_of",
    "security_headers",
]

log = logging.getLogger("parley.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Scripts, styles, images and fetch/EventSource from Parley itself only; no inline script or
#: style, no plugin, no framing, forms post only to Parley.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")


@dataclass(frozen=True)
class NavItem:
    """One entry of the navigation bar: ``label`` linking to ``path``."""

    label: str
    path: str


@dataclass(frozen=True)
class Route:
    """One console route (its ``path`` under ``/console``). ``page``: a page, whose GET
    without a session redirects to the login page; False for what scripts fetch (a panel, a
    timeline), which answers 401 instead."""

    method: Literal["GET", "POST"]
    path: str
    handler: Handler
    page: bool = True


@dataclass(frozen=True)
class Section:
    """A part of the console: its navigation entries and its routes."""

    nav: tuple[NavItem, ...] = ()
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Panel:
    """One panel of the overview: ``load`` gathers its data (a mapping the fragment
    ``template`` renders); a load that fails or takes longer than
    :attr:`Console.panel_timeout_s` shows the panel as down, with the reason, the rest of the
    page unaffected. The page re-fetches it every ``refresh_s`` (``/console/panels/<name>``)."""

    name: str
    title: str
    template: str
    load: Callable[[Console], Awaitable[Mapping[str, object]]]
    refresh_s: float = 2.0
    wide: bool = False  # spans the page's width (a long table)


class PageError(Exception):
    """Bad input a page turns away: shown as an error page with ``status`` (404, 400)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Console:
    """What the console's pages read: the process's runtime and the projector's store.
    ``role_of`` holds the process's roles by name (the projector's watermarks, a consumer's
    state), for pages that show them."""

    rt: Runtime
    store: Store
    nav: tuple[NavItem, ...]
    panels: tuple[Panel, ...] = ()
    #: The consumer groups the pages report on (:mod:`parley.console.groups`).
    groups: tuple[GroupInfo, ...] = ()
    roles: Mapping[str, object] = field(default_factory=dict)
    #: How long one overview panel may take before it is shown as down.
    panel_timeout_s: float = 3.0
    #: Webhooks per page of a chat's timeline and of an agent's status history.
    timeline_page: int = 500
    env: jinja2.Environment = field(init=False)
    kafka: KafkaView = field(init=False)
    row_counts: RowCounts = field(default_factory=RowCounts)
    #: Webhooks accepted per source over the last hour, from the event topics.
    accepted: SourceCounts = field(default_factory=SourceCounts)

    def __post_init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("parley.console", "templates"),
            autoescape=True, undefined=jinja2.ChainableUndefined, enable_async=False)
        self.env.filters["ago"] = _ago
        self.kafka = KafkaView(self.rt.settings.kafka, self.rt.topics.prefix, self.groups)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: the Kafka clients closed at the end."""
        try:
            yield
        finally:
            await self.kafka.close()

    def render(self, request: web.Request, template: str, *, status: int = 200,
               **context: object) -> web.Response:
        """``template`` rendered with ``context`` and the layout's own values (navigation,
        the CSRF token, whether a session is logged in)."""
        session = session_of(request)
        body = self.env.get_template(template).render(
            nav=self.nav, path=request.path, csrf=session.csrf if session else "",
            logged_in=bool(session and session.authenticated),
            needs_login=bool(self.rt.settings.http.api_tokens), **context)
        return web.Response(text=body, status=status, content_type="text/html")

    def fragment(self, template: str, **context: object) -> str:
        """A template rendered alone (a panel, a timeline), without the layout's values."""
        return self.env.get_template(template).render(**context)

    async def live_projection(self) -> str:
        """The copy that serves reads; :class:`PageError` 503 before there is one."""
        projection = await self.store.live_projection(query=True)
        if projection is None:
            raise PageError(503, "no projection yet: the projector has not started")
        return projection


CONSOLE = web.AppKey("console", Console)


@dataclass(frozen=True)
class Session:
    """One browser's session: its ``nonce``, whether its token is valid (``authenticated``;
    always with no tokens configured), its ``csrf`` token, and whether its cookie is
    ``new`` (to be set on the answer)."""

    nonce: str
    token: bytes | None
    authenticated: bool
    csrf: str
    new: bool


#: Where :func:`~parley.console.session.guard` keeps the request's session.
SESSION: web.RequestKey[Session] = web.RequestKey("console_session", Session)


def session_of(request: web.Request) -> Session | None:
    """The session :func:`~parley.console.session.guard` found for ``request`` (None
    outside the console)."""
    return request.get(SESSION)


def console_of(request: web.Request) -> Console:
    """The console of the app serving ``request``."""
    return request.app[CONSOLE]


def page_number(request: web.Request) -> int:
    """The page a paged view asks for (``?page=``, from 1), checked: 400 otherwise."""
    try:
        return parse_uint(request.query.get("page") or "1", "page", minimum=1, maximum=10**6)
    except ContractError as exc:
        raise PageError(400, exc.detail) from None


def error_page(request: web.Request, status: int, detail: str) -> web.Response:
    """The console's error page (``detail`` is shown as is: never put a secret in it)."""
    return console_of(request).render(request, "error.html", status=status, detail=detail,
                                      title={400: "Bad request", 403: "Forbidden",
                                             404: "Not found", 503: "Unavailable"
                                             }.get(status, "Error"))


def pages(handler: Handler) -> Handler:
    """``handler`` with its failures turned into error pages: :class:`PageError` as it says,
    a busy or switching store 503, anything else a 500 page (logged, nothing shown)."""

    async def page(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise  # redirects
        except PageError as exc:
            return error_page(request, exc.status, exc.detail)
        except (Overloaded, UnknownProjection, StoreError) as exc:
            return error_page(request, 503, f"the state store is busy ({type(exc).__name__}); "
                              "reload in a moment")
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:
            log.exception("console page %s failed", request.path)
            return error_page(request, 500, "this page failed; the log says why")

    return page


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every console response: the Content-Security-Policy and its companions; pages are
    not cached (they show live data and carry the CSRF token)."""
    path = request.path
    if path != "/console" and not path.startswith("/console/"):
        return
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if not path.startswith("/console/static/"):
        headers["Cache-Control"] = "no-store"


def _ago(seconds: float | None) -> str:
    """``seconds`` as people read a duration: ``4 s``, ``3 min``, ``2.5 h``, ``3.2 days``."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"

"""The operator console at ``/console``: server-rendered pages (Jinja2) over the projector's
store and Kafka, behind the API tokens (:mod:`parley.console.session`), with a strict
Content-Security-Policy and no asset from elsewhere (:mod:`parley.console.app`).

It belongs to the composition layer: its pages read what the roles keep (the projector's
store, the consumer groups' offsets), so it is installed by :func:`parley.process.assemble`
into every process that serves the projector role (``parley run``, ``parley projector``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from parley.console.app import CONSOLE, Console, Route, pages, security_headers
from parley.console.groups import groups_of
from parley.console.sections import PANELS, SECTIONS
from parley.console.session import LOGIN, LOGIN_POST, LOGOUT, guard
from parley.runtime import Role, Runtime
from projector.role import ProjectorRole

__all__ = ["install_console"]

STATIC = Path(__file__).parent / "static"


def install_console(app: web.Application, rt: Runtime, roles: Sequence[Role]) -> None:
    """Serve the console on ``app`` if one of ``roles`` is the projector (else nothing)."""
    projector = next((role for role in roles if isinstance(role, ProjectorRole)), None)
    if projector is None:
        return
    nav = tuple(item for section in SECTIONS for item in section.nav)
    by_name = {role.name: role for role in roles}
    app[CONSOLE] = Console(rt=rt, store=projector.store, nav=nav, panels=PANELS,
                           roles=by_name, groups=groups_of(by_name, rt.topics, rt.settings))
    router = app.router
    router.add_static("/console/static", STATIC, append_version=False)
    for route in (LOGIN, LOGIN_POST):
        router.add_route(route.method, "/console" + route.path,
                         guard(replace(route, handler=pages(route.handler)), public=True))
    # Last: any other path under /console is a 404 page (after login), not aiohttp's text.
    routes = [LOGOUT, *(route for section in SECTIONS for route in section.routes),
              Route("GET", "/{tail:.*}", _not_found)]
    for route in routes:
        router.add_route(route.method, "/console" + route.path.rstrip("/"),
                         guard(replace(route, handler=pages(route.handler))))
    app.on_response_prepare.append(security_headers)
    app.cleanup_ctx.append(app[CONSOLE].lifecycle)


async def _not_found(request: web.Request) -> web.StreamResponse:
    from parley.console.app import PageError

    raise PageError(404, f"there is no console page {request.path!r}")

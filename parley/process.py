"""One way to assemble and run a Parley process.

Every long-running command (``parley run``, ``parley receiver``, ``parley projector``,
``parley consumer NAME``) is one HTTP process serving some roles, built in the same steps by
:func:`serve_roles`:

1. logging, with every configured secret redacted (:mod:`parley.logs`);
2. the :class:`~parley.runtime.Runtime`: settings, topic names, metrics, readiness checks;
3. the roles, built by the command with plain constructors (``lambda rt: [ReceiverRole(rt)]``),
   then logging again, now redacting the roles' own secrets too (a consumer's side file);
4. the app (:func:`assemble`): health, readiness and metrics, the roles' routes, then the
   OpenAPI description of the routes this process serves;
5. serving until SIGINT or SIGTERM, then a graceful shutdown (:func:`parley.http.serve`),
   on the configured event loop (:func:`run_roles`, :mod:`parley.loop`).

This module belongs to the composition layer: the API description (:mod:`parley.openapi`)
names every role's answers, so only the layer above the roles can install it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence

from aiohttp import web

from parley import loop
from parley.console import install_console
from parley.http import build_app, serve
from parley.logs import log_secrets, setup_logging
from parley.openapi import install_openapi
from parley.runtime import Role, Runtime
from parley.settings import Settings

__all__ = ["BuildRoles", "assemble", "run_roles", "serve_roles"]

BuildRoles = Callable[[Runtime], Sequence[Role]]
"""Builds a process's roles from its runtime."""


def assemble(rt: Runtime, roles: Sequence[Role]) -> web.Application:
    """The HTTP app of a process serving ``roles`` (:func:`parley.http.build_app`), with the
    operator console where the projector is one of them (:mod:`parley.console`) and the API
    description of its routes at ``/api/openapi.json``."""
    app = build_app(rt, roles)
    install_console(app, rt, roles)
    install_openapi(app)  # last: it describes the routes the roles added
    return app


async def serve_roles(settings: Settings, build_roles: BuildRoles, *,
                      stop: asyncio.Event | None = None, sock: socket.socket | None = None,
                      next_free_port: bool = False) -> None:
    """Serve the roles ``build_roles`` makes until SIGINT/SIGTERM or ``stop`` (steps 1-5 above;
    ``sock`` and ``next_free_port`` as :func:`parley.http.serve` takes them). A ``stop`` set
    before the roles start ends it with nothing started."""
    setup_logging(settings.log_level, settings.all_secrets())
    rt = Runtime.from_settings(settings)
    roles = build_roles(rt)
    setup_logging(settings.log_level, log_secrets(settings, roles))
    if stop is not None and stop.is_set():
        return
    await serve(assemble(rt, roles), rt, stop=stop, sock=sock, next_free_port=next_free_port)


def run_roles(settings: Settings, build_roles: BuildRoles, *, next_free_port: bool = False
              ) -> int:
    """:func:`serve_roles` on the event loop ``settings.event_loop`` names; the exit status."""
    loop.run(serve_roles(settings, build_roles, next_free_port=next_free_port),
             settings.event_loop)
    return 0

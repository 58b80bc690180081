"""The HTTP process: health, readiness, metrics, and whatever the roles install."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from parley.runtime import Role, Runtime

log = logging.getLogger("parley.http")
RUNTIME = web.AppKey("runtime", Runtime)


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def error_response(status: int, code: str, detail: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    """DESIGN.md's error shape: ``{"error": "<code>", "detail": "..."}``."""
    return json_response({"error": code, "detail": detail}, status=status, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    problems: dict[str, str] = {}
    for name, check in rt.readiness.items():
        try:
            problem = await asyncio.wait_for(check(), timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - a failing check means "not ready"
            problem = f"check failed: {type(exc).__name__}"
        if problem:
            problems[name] = problem
    if problems:
        return json_response({"status": "not ready", "problems": problems}, status=503)
    return json_response({"status": "ready", "checks": sorted(rt.readiness)})


async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    body = generate_latest(rt.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(rt: Runtime, roles: Iterable[Role]) -> web.Application:
    app = web.Application(client_max_size=rt.settings.http.max_body_bytes + 64 * 1024)
    app[RUNTIME] = rt
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for role in roles:
        role.install(app, rt)
    return app


async def serve(app: web.Application, rt: Runtime, *, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop``), then shut down gracefully.

    Shutdown order: stop accepting connections, let in-flight requests finish (bounded by
    ``http.shutdown_timeout_s``), then run the roles' cleanup (flush producers, commit).
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None,
                           shutdown_timeout=rt.settings.http.shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, rt.settings.http.host, rt.settings.http.port)
    await site.start()
    log.info("listening", extra={"url": f"http://{rt.settings.http.host}:{rt.settings.http.port}"})
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()

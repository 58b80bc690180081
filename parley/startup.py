"""What a process says when it starts serving: which configuration it read, where webhooks go,
where its API is. So a first ``make run`` that answers 404 ``unknown_source`` has already said
why, a few lines above.

Derived from the settings and the routes the roles installed, so each role process reports
what it serves (``parley receiver`` no API, ``parley projector`` no webhooks). Names, providers
and URLs only: never a token or a secret.
"""

from __future__ import annotations

import logging

from aiohttp import web

from parley.settings import Settings

__all__ = ["WEBHOOK_ROUTE", "log_startup"]

log = logging.getLogger("parley.startup")
WEBHOOK_ROUTE = "/webhooks/{source}"
OPENAPI_ROUTE = "/api/openapi.json"
#: Where a newcomer learns to configure a source (README section, then the reference).
SOURCES_HELP = ('README.md, "Post a webhook, read the chat back"; docs/receiver.md, '
                '"Sources and authentication schemes"')


def log_startup(settings: Settings, app: web.Application, base_url: str) -> None:
    """Log the configuration file, the webhook sources with their URLs, and the API URL."""
    if settings.config_file:
        log.info("configuration file %s", settings.config_file,
                 extra={"config_file": settings.config_file})
    else:
        log.info("no configuration file: embedded defaults (--config FILE, $PARLEY_CONFIG or "
                 "./parley.toml)", extra={"config_file": None})
    routes = {resource.canonical for resource in app.router.resources()}
    if WEBHOOK_ROUTE in routes:
        _log_sources(settings, base_url)
    api = {path for path in routes if path.startswith("/api/")}
    # The areas the roles serve; the API's own description is no area (every process has it).
    areas = sorted({path.split("/")[2] for path in api - {OPENAPI_ROUTE}})
    if areas:
        described = f"; described at {base_url}{OPENAPI_ROUTE}" if OPENAPI_ROUTE in api else ""
        log.info("API at %s/api/ (%s)%s", base_url, ", ".join(areas), described,
                 extra={"api_url": f"{base_url}/api/"})
    if "/console" in routes:
        log.info("operator console at %s/console", base_url,
                 extra={"console_url": f"{base_url}/console"})


def _log_sources(settings: Settings, base_url: str) -> None:
    if not settings.sources:
        log.warning("no webhook sources are configured: POST /webhooks/NAME answers 404 "
                    "unknown_source until a [sources.NAME] table is added (see %s)", SOURCES_HELP)
        return
    urls = {name: f"{base_url}/webhooks/{name}" for name in sorted(settings.sources)}
    log.info("webhooks: %s", "; ".join(f"{name} ({settings.sources[name].provider}) {url}"
                                       for name, url in urls.items()),
             extra={"sources": {name: {"provider": settings.sources[name].provider, "url": url}
                                for name, url in urls.items()}})

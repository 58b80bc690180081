"""Roles that put consumer groups in an HTTP process.

- :class:`BuiltinConsumersRole` (``parley run``): the ``search`` consumer with
  ``GET /api/search``, the ``crm`` consumer when ``[consumers.crm]`` is configured, and
  ``GET /api/consumers``.
- :class:`ConsumerRole` (``parley consumer NAME``): one consumer group, with
  ``GET /api/consumers`` (and ``/api/search`` when NAME is ``search``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from consumers.api import Consumer
from consumers.registry import ConsumerContext, consumer_config, load_consumer
from consumers.search.backends import search_index_for
from consumers.search.consumer import search_consumer
from consumers.search.http import install_search_api
from consumers.search.index import SearchIndex
from consumers.service import ConsumerService
from parley.runtime import Runtime

__all__ = ["BuiltinConsumersRole", "ConsumerRole"]


def _install_index(app: web.Application, index: SearchIndex) -> None:
    install_search_api(app, index)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await index.open()
        try:
            yield
        finally:
            await index.close()

    # Before the service's own cleanup_ctx: opened first, closed after the consumer stopped.
    app.cleanup_ctx.append(lifecycle)


class BuiltinConsumersRole:
    name = "consumers"

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.index = search_index_for(rt.settings, consumer_config(rt.settings, "search"))
        consumers: list[Consumer] = [search_consumer(self.index, own_index=False)]
        crm_config = consumer_config(rt.settings, "crm")
        if crm_config:
            from consumers.crm.consumer import build as build_crm

            consumers.append(build_crm(ConsumerContext(settings=rt.settings, name="crm",
                                                       config=crm_config)))
        self.service = ConsumerService(rt, consumers)

    def secrets(self) -> tuple[str, ...]:
        """The consumers' own secrets, for log masking (``parley run`` adds them)."""
        return self.service.secrets()

    def install(self, app: web.Application, rt: Runtime) -> None:
        _install_index(app, self.index)
        self.service.install(app)


class ConsumerRole:
    """``parley consumer NAME``: one group in its own process."""

    def __init__(self, rt: Runtime, name: str) -> None:
        self.rt = rt
        self.name = f"consumer:{name}"
        self.index: SearchIndex | None = None
        if name == "search":
            self.index = search_index_for(rt.settings, consumer_config(rt.settings, name))
            consumer = search_consumer(self.index, own_index=False)
        else:
            consumer = load_consumer(name, rt.settings)
        self.service = ConsumerService(rt, [consumer])

    def secrets(self) -> tuple[str, ...]:
        """The consumer's own secrets, for log masking."""
        return self.service.secrets()

    def install(self, app: web.Application, rt: Runtime) -> None:
        if self.index is not None:
            _install_index(app, self.index)
        self.service.install(app)

"""The receiver as a role of the HTTP process (``parley receiver`` and ``parley run``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from parley.errors import SettingsError
from parley.runtime import Runtime
from receiver.handlers import WebhookHandler
from receiver.metrics import ReceiverMetrics
from receiver.publisher import Publisher, PublisherOptions
from receiver.rejections import RejectionLimits, RejectionRecorder
from receiver.sources import build_sources

__all__ = ["ReceiverRole"]


class ReceiverRole:
    """Adds ``/webhooks/{source}`` and runs the Kafka producer (and the rejections writer,
    receiver/rejections.py) for the app's lifetime.

    Start-up and shutdown order (``cleanup_ctx``): the producer starts before the server
    accepts requests; on shutdown aiohttp first stops accepting connections and lets
    in-flight requests finish, and only then does this role flush and stop the producer,
    so every request that was being handled still gets Kafka's answer.
    """

    name = "receiver"

    def __init__(self, rt: Runtime, options: PublisherOptions | None = None,
                 rejection_limits: RejectionLimits | None = None) -> None:
        if not rt.settings.kafka.bootstrap:
            raise SettingsError("the receiver needs kafka.bootstrap (config file or "
                                "PARLEY_KAFKA__BOOTSTRAP)")
        self._sources = build_sources(rt.settings.sources)
        # Built now: a missing master key refuses to start, before anything listens.
        self._ring = rt.key_ring() if rt.settings.privacy.encrypt else None
        self._rejection_limits = rejection_limits
        http = rt.settings.http
        self._options = options or PublisherOptions(send_timeout_s=http.ack_timeout_s,
                                                    retry_after_s=http.retry_after_s)

    def install(self, app: web.Application, rt: Runtime) -> None:
        metrics = ReceiverMetrics(rt.registry)
        publisher = Publisher(rt.settings.kafka, metrics, self._options)
        rejections = RejectionRecorder(rt.settings.kafka, rt.topics, rt.registry,
                                       rt.settings.all_secrets(), self._rejection_limits)
        handler = WebhookHandler(self._sources, publisher, rt.topics, metrics, rt.settings.http,
                                 self._ring, rejections)
        app.router.add_post("/webhooks/{source}", handler.post)
        app.router.add_get("/webhooks/{source}", handler.handshake)
        rt.readiness["kafka-producer"] = publisher.readiness

        async def producer_lifetime(app: web.Application) -> AsyncIterator[None]:
            await publisher.start()
            await rejections.start()
            yield
            await publisher.stop()
            await rejections.stop()

        app.cleanup_ctx.append(producer_lifetime)

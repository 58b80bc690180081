"""Consumer groups inside an HTTP process: supervised runners, the lag monitor, /api/consumers.

Used by :mod:`consumers.role` for ``parley run`` (the built-in consumers) and for
``parley consumer NAME`` (one group). A runner that fails is logged, reported by
``/readyz``, and restarted with backoff: a dependency outage must not end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence

import msgspec
from aiohttp import web

from consumers.api import Consumer
from consumers.lag import LagMonitor, PartitionLag, WatchedGroup
from consumers.metrics import ConsumerMetrics
from consumers.registry import consumer_config
from consumers.runner import ConsumerRunner, ConsumerRunnerOptions
from parley.http import error_response, json_response
from parley.readiness import failure_reason
from parley.runtime import ReadinessCheck, Runtime

__all__ = ["ConsumerService", "ConsumerStatus", "ConsumersAnswer"]

log = logging.getLogger("parley.consumers.service")
RESTART_MAX_S = 30.0


class ConsumerStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One consumer group in ``GET /api/consumers``: its state in this process and its lag
    (the fields of ``GroupLag``, absent until first measured)."""

    consumer: str
    group: str | None
    running: bool
    error: str | None
    parked_keys: int
    dead_letter_topic: str
    lag_records: int | None = None
    lag_seconds: float | None = None
    stuck: bool | None = None
    partitions: list[PartitionLag] | None = None
    measured_at: float | None = None


class ConsumersAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/consumers``: every consumer group this process runs."""

    groups: list[ConsumerStatus]


class ConsumerService:
    """Runs ``consumers`` (one group each) for as long as the HTTP app lives."""

    def __init__(self, rt: Runtime, consumers: Sequence[Consumer], *,
                 options: ConsumerRunnerOptions | None = None, stuck_after_s: float = 300.0,
                 lag_interval_s: float = 15.0) -> None:
        self.rt = rt
        self.consumers = list(consumers)
        # Built now: a missing master key refuses to start, before anything listens.
        self._ring = rt.key_ring()
        self.metrics = ConsumerMetrics(rt.registry)
        self._options = options
        self.runners: dict[str, ConsumerRunner] = {}
        self.failures: dict[str, str] = {}
        self._stop = asyncio.Event()
        watched = []
        for c in self.consumers:
            runner = self._runner(c)
            configured = consumer_config(rt.settings, c.name).get("stuck_after_s")
            watched.append(WatchedGroup(c.name, runner.group, runner.topic_names,
                                        None if configured is None else float(configured)))
        self.monitor = LagMonitor(rt.settings.kafka, watched, self.metrics,
                                  stuck_after_s=stuck_after_s, interval_s=lag_interval_s)
        self._refreshed = 0.0

    def secrets(self) -> tuple[str, ...]:
        """The consumers' own secrets, for log redaction."""
        return tuple(s for c in self.consumers for s in c.secrets)

    def _runner(self, c: Consumer) -> ConsumerRunner:
        options = self._options
        if options is None:  # `[consumers.NAME] max_records`, else the consumer's own
            configured = consumer_config(self.rt.settings, c.name).get("max_records")
            options = ConsumerRunnerOptions(
                max_records=int(configured) if configured is not None else None)
        runner = ConsumerRunner(c, self.rt.settings.kafka, self.rt.topics, self.metrics,
                                secrets=self.rt.settings.all_secrets(), options=options,
                                ring=self._ring)
        self.runners[c.name] = runner
        return runner

    def install(self, app: web.Application) -> None:
        app.router.add_get("/api/consumers", self.api_consumers)
        for c in self.consumers:
            self.rt.readiness[f"consumer:{c.name}"] = self._readiness(c.name)
        app.cleanup_ctx.append(self._lifecycle)

    def _readiness(self, name: str) -> ReadinessCheck:
        async def check() -> str | None:
            if name in self.failures:
                return f"failed, restarting: {self.failures[name]}"
            runner = self.runners.get(name)
            if runner is None or not runner.started.is_set():
                return "starting"
            return None

        return check

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._stop.clear()
        tasks = [asyncio.create_task(self._supervise(c), name=f"consumer-{c.name}")
                 for c in self.consumers]
        monitor_task = asyncio.create_task(self._monitor(), name="consumer-lag")
        try:
            yield
        finally:
            # SIGTERM: each runner finishes its batch, commits, and leaves its group.
            self._stop.set()
            for r in self.runners.values():
                r.stop()
            await asyncio.gather(*tasks, monitor_task, return_exceptions=True)

    async def _supervise(self, c: Consumer) -> None:
        delay = 1.0
        runner = self.runners[c.name]
        while not self._stop.is_set():
            try:
                await runner.run(self._stop)
                return
            except Exception as exc:
                # Classified, not the exception's text (hosts, users): /readyz and
                # /api/consumers show it. The log line below has the whole exception.
                self.failures[c.name] = failure_reason(exc)
                log.exception("consumer failed; restarting", extra={"consumer": c.name,
                                                                   "delay_s": delay})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            delay = min(RESTART_MAX_S, delay * 2)
            runner = self._runner(c)
            self.failures.pop(c.name, None)

    async def _monitor(self) -> None:
        try:
            await self.monitor.start()
            await self.monitor.run(self._stop)
        except Exception:
            log.warning("lag monitor stopped", exc_info=True)
        finally:
            await self.monitor.close()

    async def api_consumers(self, request: web.Request) -> web.Response:
        """``GET /api/consumers``: every group here with its lag, parked keys and state."""
        if time.monotonic() - self._refreshed > 2.0:
            try:
                await asyncio.wait_for(self.monitor.refresh(), 10.0)
                self._refreshed = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - answer with what we have, say why
                if not self.monitor.latest:
                    return error_response(503, "kafka_unavailable",
                                          f"cannot measure lag: {type(exc).__name__}",
                                          {"Retry-After": "5"})
        groups = []
        for c in self.consumers:
            runner = self.runners.get(c.name)
            lag = self.monitor.latest.get(c.name)
            measured = msgspec.structs.asdict(lag) if lag is not None else {
                "consumer": c.name, "group": runner.group if runner else None}
            groups.append(ConsumerStatus(
                **measured,
                running=bool(runner and runner.started.is_set() and c.name not in self.failures),
                error=self.failures.get(c.name),
                parked_keys=len(runner.dead.state.keys()) if runner else 0,
                dead_letter_topic=self.rt.topics.dlq(c.name)))
        return json_response(ConsumersAnswer(groups=groups))

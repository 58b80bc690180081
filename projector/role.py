"""The projector as a role of the HTTP process: query API routes plus the runner in background.

Its routes: the query API (:mod:`projector.api`) and the live streams of state changes
(:mod:`projector.streams`).

Start order (``cleanup_ctx``): open the store (creating the first projection if there is
none), then start a background task that makes sure the dead-letter and state topics exist,
starts the producer (dead letters and state changes) and runs the runner (which runs the
state publisher) — restarting them after a failure, so the query API
keeps serving while Kafka is away. Stop order is the reverse: ask the runner to stop (its
current batch finishes and commits), wait for it, stop the producer, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from contracts.topics import PROJECTOR
from parley.erasure_ledger import LedgerWriter
from parley.kafka.clients import make_producer
from parley.readiness import failure_reason
from parley.runtime import Runtime
from projector.api import ApiOptions, QueryApi
from projector.dlq import KafkaDeadLetters
from projector.erasure_api import ErasureApi
from projector.metrics import ProjectorMetrics
from projector.runner import ProjectorRunnerOptions, Runner, Watermarks, ensure_live
from projector.state_publisher import StatePublisher
from projector.store import Store
from projector.stores import open_store
from projector.streams import StateStreams, StreamOptions
from projector.waits import PositionWaits

__all__ = ["ProjectorRole"]

log = logging.getLogger("parley.projector")


@dataclass(frozen=True, kw_only=True)
class ProjectorRoleOptions:
    """The projector role's options: its runner's, its query API's, its streams', and how it
    stops and restarts its runner."""

    runner: ProjectorRunnerOptions = field(default_factory=ProjectorRunnerOptions)
    api: ApiOptions = field(default_factory=ApiOptions)
    streams: StreamOptions = field(default_factory=StreamOptions)
    stop_timeout_s: float = 30.0
    restart_backoff_s: float = 2.0


class ProjectorRole:
    """Runs the projector (runner + query API) inside ``parley run`` / ``parley projector``."""

    name = "projector"

    def __init__(self, rt: Runtime, options: ProjectorRoleOptions = ProjectorRoleOptions()) -> None:
        self._rt = rt
        self._options = options
        self.metrics = ProjectorMetrics.create(rt.registry)
        self.watermarks = Watermarks()
        self.store: Store = open_store(rt.settings.store.url)
        # Built now: a missing master key refuses to start, before anything listens.
        self._ring = rt.key_ring()
        self.waits = PositionWaits(self.store, self.watermarks,
                                   max_waiters=rt.settings.http.max_position_waiters,
                                   recheck_s=options.api.recheck_s)
        self.streams = StateStreams(rt.settings.kafka, rt.topics,
                                    max_streams=rt.settings.http.max_streams,
                                    options=options.streams, ring=self._ring)
        self.runner: Runner | None = None
        self._task: asyncio.Task[None] | None = None
        self._problem: str | None = None

    @property
    def group_id(self) -> str:
        """The runner's Kafka consumer group."""
        return self._options.runner.group_id or self._rt.topics.group_id(PROJECTOR)

    def install(self, app: web.Application, rt: Runtime) -> None:
        QueryApi(self.store, rt.topics, self.waits, self._options.api, self.metrics
                 ).install(app)
        ErasureApi(self.store, rt.settings.kafka, rt.topics, self._ring).install(app)
        self.streams.install(app)
        app.cleanup_ctx.append(self._lifecycle)
        rt.readiness[self.name] = self.ready

    async def ready(self) -> str | None:
        runner, task = self.runner, self._task
        if task is None:
            return "not started"
        if task.done():
            return "runner stopped"
        if runner is None or not runner.started.is_set():
            return self._problem or "connecting to Kafka"
        return runner.problem

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        await self.store.open()
        await ensure_live(self.store)  # reads answer (empty) from the first request on
        stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(stop), name="projector")
        try:
            yield
        finally:
            stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._options.stop_timeout_s)
            except TimeoutError:
                log.warning("projector did not stop in time; cancelling")
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            await self.waits.close()
            await self.store.close()

    async def _run(self, stop: asyncio.Event) -> None:
        """Kafka-side work, restarted after failures: the query API keeps serving the store
        while Kafka is away (``/readyz`` says why the projector is not ready)."""
        rt = self._rt
        while not stop.is_set():
            producer = make_producer(rt.settings.kafka)
            states = StatePublisher.make_producer(rt.settings.kafka)
            ledger = LedgerWriter(rt.settings.kafka, rt.topics)
            try:
                await KafkaDeadLetters.ensure_topic(rt.settings.kafka, rt.topics)
                await StatePublisher.ensure_topics(rt.settings.kafka, rt.topics)
                await producer.start()
                await states.start()
                self.runner = Runner(
                    store=self.store, kafka=rt.settings.kafka, topics=rt.topics,
                    dead_letters=KafkaDeadLetters(producer, rt.topics, self.metrics),
                    metrics=self.metrics, watermarks=self.watermarks,
                    options=self._options.runner,
                    publisher=StatePublisher(
                        self.store, states, rt.topics,
                        ring=self._ring if rt.settings.privacy.encrypt else None),
                    ring=self._ring,
                    ledger=ledger)
                await self.runner.run(stop)
            except Exception as exc:
                self._problem = f"projector failed: {failure_reason(exc)}"  # no hosts, users
                if self.runner is not None:
                    self.runner.problem = self._problem
                log.exception("projector runner failed; restarting")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._options.restart_backoff_s)
            finally:
                await ledger.close()
                await states.stop()
                await producer.stop()

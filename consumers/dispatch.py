"""Step 2 of the runner's protocol: hand one fetched batch to the consumer's handler.

Per-key order holds on every path: one key's events are handed over one at a time, in log
order, its replayed copies after its live events of the batch. An event is marked done in the
:class:`~consumers.tracking.BatchProgress` only once its outcome is durable (handled, filtered
out, or written to the dead-letter topic).

- **In order** (the hot path: a per-event handler that has never waited, no filter, no
  parked key): the batch's events one after another, in log order, in one coroutine that the
  dispatcher steps by hand. While handlers return without waiting, nothing else is built: no
  lane, no task, no future. At the first handler that waits (I/O), that event is finished
  and the rest of the batch goes to the lanes, as do all later batches (a handler that waits
  once is taken to do I/O, which the lanes overlap); at the first failure, the failed event
  and the rest go to the lanes (its retries start there, while other keys flow).
- **Lanes**: the batch (or its rest) split per key (:mod:`consumers.lanes`), up to
  ``consumer.concurrency`` keys at a time; a lane turns *careful* (parked keys, filters,
  failures checked per event) when it meets a failure, or starts so when the consumer filters
  or any key is parked.
- **Batch handler**: every ready event in one call; lanes of parked keys, and the whole batch
  after its retry budget, fall back to one event at a time per key.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from itertools import repeat
from typing import TYPE_CHECKING

from consumers.api import ConsumedEvent, Consumer
from consumers.dlq import ParkingDeadLetters
from consumers.errors import is_retriable
from consumers.lanes import copy_event, split_lanes
from consumers.metrics import ConsumerMetrics
from consumers.resume import resume
from consumers.tracking import BatchProgress

if TYPE_CHECKING:
    from parley.privacy.ring import KeyRing

__all__ = ["Dispatcher", "Stopping"]

log = logging.getLogger("parley.consumers.runner")

Progress = BatchProgress[ConsumedEvent]


class Stopping(Exception):
    """Raised to abandon a retry wait when the runner is asked to stop."""


class Dispatcher:
    """Hands batches to ``consumer`` (see module doc); counts outcomes until :meth:`flush`."""

    def __init__(self, consumer: Consumer, dead: ParkingDeadLetters, metrics: ConsumerMetrics,
                 *, replay_topic: str, stop: asyncio.Event, rng: random.Random,
                 ring: KeyRing | None = None) -> None:
        self.consumer = consumer
        self._ring = ring  # opens sealed envelopes: the runner loaded each batch's keys
        self.name = consumer.name
        self.dead = dead
        self.stop = stop
        self._metrics = metrics
        self._replay_topic = replay_topic
        self._rng = rng
        self._counts: dict[str, int] = {}
        self._slow = 0  # events of the lanes that took the careful path (they count themselves)
        self._leave = False  # set while the in-order path is finished by hand: stop after it
        # Whether a handler has waited (I/O): then every later batch goes to the lanes at once,
        # so that its first event is never handled alone while other keys could run with it.
        self._waits = False
        # (where, error) of an event whose first attempt failed on the in-order path
        self._failure: tuple[tuple[str, int, int], Exception] | None = None
        handler = consumer.handle
        if handler is None:
            batch = consumer.handle_batch
            assert batch is not None

            async def one(ev: ConsumedEvent) -> None:
                await batch((ev,))

            handler = one
        self._handle: Callable[[ConsumedEvent], Awaitable[None]] = handler

    async def run(self, progress: Progress) -> None:
        """Handle ``progress.batch``, marking events done as their outcomes become durable
        (also when this raises midway: :class:`Stopping`, or a failure of the runtime)."""
        if self.consumer.handle_batch is not None:
            progress.add_lanes(split_lanes(progress.batch, self._replay_topic, self.name,
                                           ring=self._ring))
            await self._run_batch(progress)
            return
        if not (self._waits or self.consumer.filtered or self.dead.state.by_key):
            steps = self._in_order(progress)
            try:
                yielded = steps.send(None)
            except StopIteration as end:
                finished: bool = end.value
            else:  # a handler waits: finish its event, then the rest goes to the lanes
                self._waits = True
                self._leave = True
                try:
                    finished = await resume(steps, yielded)
                finally:
                    self._leave = False
            if finished:
                return
        progress.add_lanes(split_lanes(progress.batch, self._replay_topic, self.name,
                                       progress.in_order, ring=self._ring))
        await self._run_lanes(progress)

    def flush(self) -> None:
        """Add the outcomes counted since the last flush to the metrics."""
        for outcome, n in self._counts.items():
            self._metrics.events.labels(self.name, outcome).inc(n)
        self._counts.clear()

    # ------------------------------------------------------------------ in order
    async def _in_order(self, progress: Progress) -> bool:
        """The hot path: every event of the batch in log order (each partition's, then the
        replayed copies). Returns False if it stopped early (``_leave``, or a failure) and
        left the rest of the batch to the lanes."""
        handle = self._handle
        batch, done = progress.batch, progress.in_order
        replay = [tp for tp in batch if tp.topic == self._replay_topic]
        live = [tp for tp in batch if tp.topic != self._replay_topic] if replay else batch
        for tp in (*live, *replay):
            events = (map(ConsumedEvent, batch[tp], repeat(self._ring))
                      if tp.topic != self._replay_topic
                      else (copy_event(r, self.name, self._ring) for r in batch[tp]))
            n = 0
            try:
                for ev in events:
                    try:
                        await handle(ev)
                    except Exception as exc:  # noqa: BLE001 - retried in its lane
                        # Not retried here: other keys keep flowing while this one waits.
                        self._failure = ev.fetched, exc
                        return False
                    n += 1
                    if self._leave:
                        return False
            finally:
                done[tp] = n
                self._count("handled", n)
        return True

    # --------------------------------------------------------------------- lanes
    async def _run_lanes(self, progress: Progress, lane_ids: Iterable[int] | None = None) -> None:
        """Each key's events in order; up to ``concurrency`` keys at a time (all lanes, or
        the ``lane_ids`` given)."""
        lanes, lane_done = progress.lanes, progress.lane_done
        it = iter(enumerate(lanes) if lane_ids is None else [(li, lanes[li]) for li in lane_ids])
        handle = self._handle
        # Whether lanes start on the careful path: with a filter, or with any parked key. A
        # key parked during this batch is parked by its own lane, which turns careful then.
        careful0 = self.consumer.filtered or bool(self.dead.state.by_key)
        self._slow = 0

        failure, self._failure = self._failure, None

        async def worker() -> None:
            for li, lane in it:
                careful = careful0
                ev = None
                try:
                    events = iter(lane)
                    if failure is not None and lane[0].fetched == failure[0]:
                        # The in-order path's first attempt failed: its retries start here.
                        ev = next(events)
                        self._slow += 1
                        careful = await self._failed(ev, failure[1]) or careful0
                    for ev in events:
                        if careful:
                            careful = await self._one(ev) or careful0
                        else:
                            # Hot path: no parked key, no filter, no failure yet in this lane.
                            try:
                                await handle(ev)
                            except Exception as exc:  # noqa: BLE001 - classified in _failed
                                self._slow += 1
                                careful = await self._failed(ev, exc)
                except BaseException:
                    lane_done[li] = lane.index(ev) if ev is not None else 0  # ev is not done
                    raise
                lane_done[li] = len(lane)

        n = min(self.consumer.concurrency, len(lanes))
        done_before = sum(lane_done)
        try:
            if n <= 1:
                await worker()
            else:
                try:
                    async with asyncio.TaskGroup() as tg:
                        for _ in range(n):
                            tg.create_task(worker())
                except BaseExceptionGroup as group:
                    raise group.exceptions[0] from None
        finally:
            # Events of the careful path count their own outcome; the rest were handled.
            self._count("handled", sum(lane_done) - done_before - self._slow)

    async def _run_batch(self, progress: Progress) -> None:
        """A batch handler gets every ready event in one call; lanes of parked keys, and the
        whole batch after its retry budget, fall back to one event at a time per key, which
        isolates the failing event (and re-applies the others: handlers are idempotent)."""
        lanes = progress.lanes
        ready: list[int] = []
        single: list[int] = []
        for li, lane in enumerate(lanes):
            (single if self.dead.is_parked(lane[0]) else ready).append(li)
        events: list[ConsumedEvent] = []
        filtered_out = 0
        if self.consumer.filtered:
            keep: list[int] = []
            for li in ready:
                try:
                    wanted = [ev for ev in lanes[li] if self.consumer.wants(ev)]
                except Exception:  # noqa: BLE001 - undecodable: the lane path dead-letters it
                    single.append(li)
                    continue
                filtered_out += len(lanes[li]) - len(wanted)
                events.extend(wanted)
                keep.append(li)
            ready = keep
        else:
            events = [ev for li in ready for ev in lanes[li]]
        handle_batch = self.consumer.handle_batch
        assert handle_batch is not None
        if not events or await self._attempts(lambda: handle_batch(events), None) is None:
            for li in ready:
                progress.lane_done[li] = len(lanes[li])
            self._count("handled", len(events))
            self._count("filtered", filtered_out)
        else:
            single.extend(ready)
        if single:
            await self._run_lanes(progress, sorted(single))

    # ------------------------------------------------------------------- careful
    async def _one(self, ev: ConsumedEvent) -> bool:
        """The careful path for one event (parked key, filters, failures). Returns whether
        the rest of its lane needs the careful path too."""
        self._slow += 1
        if ev.key is not None and self.dead.is_parked(ev):
            await self.dead.park(ev)
            self._count("parked")
            self._metrics.parked_keys.labels(self.name).set(len(self.dead.state.keys()))
            return True
        if self.consumer.filtered and not await self._wanted(ev):
            return False
        try:
            await self._handle(ev)
        except Exception as exc:  # noqa: BLE001 - classified in _failed
            return await self._failed(ev, exc)
        self._count("handled")
        return False

    async def _failed(self, ev: ConsumedEvent, exc: Exception) -> bool:
        """Retry after a first failure; dead-letter when that fails for good. Returns whether
        the event was dead-lettered (its key is parked now)."""
        first_failed_at = datetime.now(UTC)
        failure = await self._attempts(lambda: self._handle(ev), ev, first=exc)
        if failure is None:
            self._count("handled")
            return False
        await self._dead_letter(ev, *failure, first_failed_at=first_failed_at)
        return True

    async def _wanted(self, ev: ConsumedEvent) -> bool:
        try:
            wanted = self.consumer.wants(ev)
        except Exception as exc:  # noqa: BLE001 - an undecodable record: dead-letter it
            await self._dead_letter(ev, exc, 1)
            return False
        if not wanted:
            self._count("filtered")
        return wanted

    async def _dead_letter(self, ev: ConsumedEvent, exc: BaseException, attempts: int,
                           first_failed_at: datetime | None = None) -> None:
        retriable = is_retriable(exc)
        log.warning("event dead-lettered", extra={
            "consumer": self.name, "position": str(ev.position), "error_type": type(exc).__name__,
            "attempts": attempts})
        await self.dead.dead_letter(ev, exc, attempts, retriable, first_failed_at)
        self._count("dead_lettered")
        self._metrics.parked_keys.labels(self.name).set(len(self.dead.state.keys()))

    async def _attempts(self, call: Callable[[], Awaitable[None]], ev: ConsumedEvent | None,
                        first: Exception | None = None) -> tuple[BaseException, int] | None:
        """Run ``call`` until it succeeds (None) or fails for good ((error, attempts)).
        ``first``: the error of an attempt already made."""
        policy = self.consumer.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                if first is not None:
                    exc_first, first = first, None
                    raise exc_first
                await call()
                return None
            except Exception as exc:
                if not is_retriable(exc) or attempt >= policy.max_attempts:
                    return exc, attempt
                retry_after = getattr(exc, "retry_after_s", None)
                delay = policy.delay_s(attempt, self._rng,
                                       at_least_s=retry_after if isinstance(retry_after, float | int)
                                       else 0.0)
                self._metrics.retries.labels(self.name).inc()
                log.info("retrying", extra={"consumer": self.name, "attempt": attempt,
                                            "delay_s": round(delay, 3),
                                            "error_type": type(exc).__name__,
                                            "position": str(ev.position) if ev else "batch"})
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                except TimeoutError:
                    continue
                raise Stopping from exc

    def _count(self, outcome: str, n: int = 1) -> None:
        self._counts[outcome] = self._counts.get(outcome, 0) + n

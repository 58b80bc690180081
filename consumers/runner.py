"""Runs one :class:`~consumers.api.Consumer` in its own Kafka consumer group.

Delivery guarantees (docs/consumers.md states them for users):

- **At-least-once.** An offset is committed only after every event before it in its
  partition was *done*: handled successfully, filtered out, or durably written to the
  dead-letter topic. A crash redelivers everything after the last commit, so handlers must be
  idempotent; ``event.event_id`` is the idempotency key to hand downstream.
- **Per-key order.** Events of one key (one chat, visitor, agent) are handled one at a time,
  in log order; different keys run concurrently, at most ``consumer.concurrency`` at once.
- **Bounded retries.** A retriable failure is retried with full-jitter backoff
  (``consumer.retry``); after the last attempt, or at once for a non-retriable failure, the
  event is dead-lettered and its key *parked*: later events of that key go to the dead-letter
  topic as parked entries, in order, until ``parley dlq NAME replay|skip`` resolves
  the key (see :mod:`consumers.parking`).

Commit protocol, per fetched batch (``# Step N`` below):

1. Fetch up to ``max_records`` records (``getmany``) and register their offsets, in order,
   with the :class:`~consumers.tracking.OffsetTracker`.
2. Group the batch into per-key lanes and run them (or the whole batch, for a batch handler);
   each event is marked done only once its outcome is durable.
3. Under the batch lock, commit each partition's contiguous done prefix.

A consumer that keeps rebuildable state (``consumer.rebuildable``) is asked before each
batch whether a rebuild switched its state to another copy; if so the batch is dropped and
the partitions resume from that copy's offsets (:mod:`consumers.rebuildable`, step 4).

Replayed copies (``parley consumers replay``, :mod:`consumers.replay`) arrive on the group's
replay topic, read beside its own topics and committed like them. Each is handed over as its
original (:class:`~consumers.api.ReplayedEvent`: same position, same ``event_id``) and joins
its key's lane in the batch, after the key's live events: a key is never handled twice at
once, and one key's copies keep the order they were sent in.

On partition revocation the rebalance listener takes the same lock, so it waits for the
batch in flight to finish, then commits before the partitions move: the next owner starts
exactly after the last side effect. On assignment it first folds in every dead-letter record
written so far, so keys parked by the previous owner stay parked. On ``stop`` (SIGTERM) the
batch in flight finishes (a retry wait is cut short: that event is simply not done), the done
prefix is committed, and the member leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError

from consumers.api import ConsumedEvent, Consumer, ReplayedEvent
from consumers.dlq import ParkingDeadLetters
from consumers.errors import is_retriable
from consumers.metrics import ConsumerMetrics
from consumers.rebuildable import resume_from
from consumers.tracking import BatchProgress
from contracts.topics import Topics
from parley.kafka.clients import make_consumer, start_unless_stopped
from parley.kafka.topics import ensure_topics
from parley.settings import KafkaSettings

__all__ = ["ConsumerRunner", "ConsumerRunnerOptions"]

log = logging.getLogger("parley.consumers.runner")


class ConsumerRunnerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How a :class:`ConsumerRunner` fetches: records per batch and how long one poll waits."""

    max_records: int = 2000
    poll_timeout_ms: int = 200


class _Stopping(Exception):
    """Raised inside a lane to abandon a retry wait when the runner is asked to stop."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner._on_assigned(set(assigned))


class ConsumerRunner:
    """One member of consumer group :meth:`Topics.group_id` running ``consumer`` (see module doc)."""

    def __init__(self, consumer: Consumer, kafka: KafkaSettings, topics: Topics,
                 metrics: ConsumerMetrics, *, secrets: Sequence[str] = (),
                 options: ConsumerRunnerOptions | None = None, rng: random.Random | None = None) -> None:
        self.consumer = consumer
        self.name = consumer.name
        self.group = topics.group_id(consumer.name)
        self.topic_names = consumer.topic_names(topics)
        self.replay_topic = topics.replay(consumer.name)
        self._replay_spec = topics.replay_spec(consumer.name, kafka.partitions)
        self._k = kafka
        self._metrics = metrics
        self._options = options or ConsumerRunnerOptions()
        self._rng = rng or random.Random()
        self.dead = ParkingDeadLetters(kafka, topics, consumer.name, (*secrets, *consumer.secrets))
        self._commit_task: asyncio.Task[None] | None = None
        self._pending_commit: dict[TopicPartition, int] = {}
        self._progress: BatchProgress[ConsumedEvent] | None = None  # of the batch being handled
        self._slow = 0  # events of the batch that took the careful path (they count themselves)
        self._lock = asyncio.Lock()
        self._kc: AIOKafkaConsumer | None = None
        self._state = consumer.rebuildable
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.assignment: set[TopicPartition] = set()
        self._counts: dict[str, int] = {}
        handler = consumer.handle
        if handler is None:
            batch = consumer.handle_batch
            assert batch is not None

            async def one(ev: ConsumedEvent) -> None:
                await batch((ev,))

            handler = one
        self._handle: Callable[[ConsumedEvent], Awaitable[None]] = handler

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set (or :meth:`stop` is called); commits before returning."""
        if stop is not None:
            self._stop = stop
        if self.consumer.start is not None:
            await self.consumer.start()
        try:
            await self.dead.start()
            try:
                await self._consume()
            finally:
                await self.dead.stop()
        finally:
            if self.consumer.stop is not None:
                await self.consumer.stop()

    def stop(self) -> None:
        self._stop.set()

    async def _consume(self) -> None:
        kc = make_consumer(self._k, group_id=self.group,
                           max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
        # Subscribed only once it exists: a missing topic would be noticed only at the next
        # metadata refresh (minutes), and copies sent meanwhile would wait that long.
        await ensure_topics(self._k, [self._replay_spec])
        kc.subscribe([*self.topic_names, self.replay_topic], listener=_Listener(self))
        if not await start_unless_stopped(kc, self._stop):
            return  # stopped before the group assigned partitions (broker away?)
        self._kc = kc
        self.started.set()
        log.info("consumer started", extra={"consumer": self.name, "group": self.group})
        try:
            while not self._stop.is_set():
                # Step 1: fetch
                batch = await kc.getmany(timeout_ms=self._options.poll_timeout_ms,
                                         max_records=self._options.max_records)
                if self._state is not None and await self._follow_rebuild(kc, batch):
                    continue
                if not batch:
                    continue
                async with self._lock:
                    t0 = time.perf_counter()
                    self._progress = None
                    try:
                        await self._process(batch)  # Step 2
                    except _Stopping:
                        pass
                    finally:
                        # Step 3: commit the done prefix, in the background: one committer
                        # task sends the latest offsets while the next batch is handled (a
                        # slow commit folds several batches into one). It is drained on
                        # revocation and on stop.
                        if self._progress is not None:
                            self._schedule_commit(self._progress.committable())
                        if self._stop.is_set():
                            await self._await_commit()
                        self._flush_counts()
                    self._metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - t0)
        finally:
            async with self._lock:
                with contextlib.suppress(Exception):
                    await self._await_commit()
            await kc.stop()
            self._kc = None
            log.info("consumer stopped", extra={"consumer": self.name, "group": self.group})

    async def _follow_rebuild(self, kc: AIOKafkaConsumer,
                              batch: dict[TopicPartition, list[Any]]) -> bool:
        """A rebuild made another copy of the consumer's state live: resume from the offsets
        that copy was built to (:mod:`consumers.rebuildable`, step 4), dropping ``batch``."""
        assert self._state is not None
        offsets = await self._state.resume_offsets(kc.assignment())
        if not offsets:
            return False
        async with self._lock:
            await self._await_commit()  # no older commit may land after the handoff's
            await resume_from(kc, self._state, offsets, batch)
        return True

    # ------------------------------------------------------------- rebalancing
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # waits for the batch in flight, which starts its commit
            await self._await_commit()
            self.assignment -= revoked

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.dead.catch_up()
        self.assignment = set(assigned)
        self._metrics.parked_keys.labels(self.name).set(len(self.dead.state.keys()))

    def _schedule_commit(self, offsets: dict[TopicPartition, int]) -> None:
        self._pending_commit.update(offsets)
        task = self._commit_task
        if task is not None and task.done():
            self._commit_task = None
            task.result()  # a failed commit (other than a lost generation) ends the runner
        if self._pending_commit and self._commit_task is None:
            self._commit_task = asyncio.create_task(self._commit_loop())

    async def _commit_loop(self) -> None:
        while self._pending_commit:
            offsets, self._pending_commit = self._pending_commit, {}
            await self._commit(offsets)

    async def _await_commit(self) -> None:
        """Wait until every scheduled offset is committed."""
        task, self._commit_task = self._commit_task, None
        if task is not None:
            await task
        if self._pending_commit:
            await self._commit_loop()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._kc is not None
        try:
            await self._kc.commit(offsets)
        except CommitFailedError:
            # The group moved on without us (e.g. a handler outlived max.poll.interval): the
            # new owner re-reads from the previous commit; at-least-once, never a loss.
            log.warning("commit failed after a rebalance; events will be redelivered",
                        extra={"consumer": self.name})

    # -------------------------------------------------------------- processing
    async def _process(self, batch: dict[TopicPartition, list[Any]]
                       ) -> BatchProgress[ConsumedEvent]:
        """Step 2: split the batch into per-key lanes (in offset order) and run them; the
        returned progress says which events are done, even if this raises midway."""
        lanes: list[list[ConsumedEvent]] = []
        copies: list[Any] = []
        for tp, records in batch.items():
            if tp.topic == self.replay_topic:
                copies.extend(records)
                continue
            by_key: dict[bytes, list[ConsumedEvent]] = {}
            for r in records:
                k = r.key
                if k is None:
                    lanes.append([ConsumedEvent(r)])  # no key, no order to keep: own lane
                    continue
                lane = by_key.get(k)
                if lane is None:
                    by_key[k] = [ConsumedEvent(r)]
                    lanes.append(by_key[k])
                else:
                    lane.append(ConsumedEvent(r))
        if copies:
            self._add_copies(lanes, copies)
        self._progress = progress = BatchProgress(batch, lanes)
        if self.consumer.handle_batch is not None:
            await self._run_batch(progress)
        else:
            await self._run_lanes(progress)
        return progress

    def _add_copies(self, lanes: list[list[ConsumedEvent]], copies: list[Any]) -> None:
        """Put replayed copies in the lane of their key (after its live events), so that a
        key's copies and its live events are handled one at a time, in one order."""
        by_key = {(lane[0].topic, lane[0].key): lane for lane in lanes if lane[0].key is not None}
        for r in copies:
            try:
                ev: ConsumedEvent = ReplayedEvent(r)
            except Exception:  # noqa: BLE001 - not a copy Parley wrote: handled as it is
                log.warning("replay topic record without a valid origin header",
                            extra={"consumer": self.name, "offset": r.offset})
                lanes.append([ConsumedEvent(r)])
                continue
            if ev.key is None:
                lanes.append([ev])
                continue
            lane = by_key.get((ev.topic, ev.key))
            if lane is None:
                lane = by_key[(ev.topic, ev.key)] = []
                lanes.append(lane)
            lane.append(ev)

    async def _run_lanes(self, progress: BatchProgress[ConsumedEvent],
                         lane_ids: Iterable[int] | None = None) -> None:
        """Each key's events in order; up to ``concurrency`` keys at a time (all lanes, or
        the ``lane_ids`` given)."""
        lanes, lane_done = progress.lanes, progress.lane_done
        it = iter(enumerate(lanes) if lane_ids is None else [(li, lanes[li]) for li in lane_ids])
        handle = self._handle
        # Whether lanes start on the careful path: with a filter, or with any parked key. A
        # key parked during this batch is parked by its own lane, which turns careful then.
        careful0 = self.consumer.filtered or bool(self.dead.state.by_key)
        self._slow = 0

        async def worker() -> None:
            for li, lane in it:
                careful = careful0
                ev = None
                try:
                    for ev in lane:
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

    async def _run_batch(self, progress: BatchProgress[ConsumedEvent]) -> None:
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
        """Retry after a first failure; dead-letter when that fails for good."""
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
                    await asyncio.wait_for(self._stop.wait(), delay)
                except TimeoutError:
                    continue
                raise _Stopping from exc

    def _count(self, outcome: str, n: int = 1) -> None:
        self._counts[outcome] = self._counts.get(outcome, 0) + n

    def _flush_counts(self) -> None:
        for outcome, n in self._counts.items():
            self._metrics.events.labels(self.name, outcome).inc(n)
        self._counts.clear()

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

1. Fetch up to ``max_records`` records (``getmany``); their progress is tracked per
   partition by a :class:`~consumers.tracking.BatchProgress`.
2. Hand the batch to the handler (:mod:`consumers.dispatch`): in log order while handlers
   return without waiting, else in per-key lanes (or the whole batch, for a batch handler);
   each event is marked done only once its outcome is durable.
3. Under the batch lock, append to the erasure ledger the done records that announce an
   erasure (:mod:`consumers.erasures`), then schedule the commit of each partition's
   contiguous done prefix (:mod:`consumers.committer`: in the background, drained on
   revocation and on stop).

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
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from consumers.api import ConsumedEvent, Consumer
from consumers.committer import Committer
from consumers.dispatch import Dispatcher, Stopping
from consumers.dlq import ParkingDeadLetters
from consumers.erasures import erasures_done
from consumers.metrics import ConsumerMetrics
from consumers.rebuildable import resume_from
from consumers.tracking import BatchProgress
from contracts.topics import Topics
from parley.erasure_ledger import LedgerWriter, processed
from parley.kafka.clients import make_consumer, start_unless_stopped
from parley.kafka.topics import ensure_topics
from parley.privacy import PrivacyError
from parley.privacy.ring import KeyRing
from parley.privacy.seal import subject_in
from parley.settings import KafkaSettings

__all__ = ["MAX_RECORDS", "ConsumerRunner", "ConsumerRunnerOptions"]

log = logging.getLogger("parley.consumers.runner")


#: Records per fetched batch unless the configuration or the consumer says otherwise.
MAX_RECORDS = 2000


class ConsumerRunnerOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How a :class:`ConsumerRunner` fetches: records per batch and how long one poll waits.
    ``max_records`` None: the consumer's own (:attr:`Consumer.max_records`), else
    :data:`MAX_RECORDS`."""

    max_records: int | None = None
    poll_timeout_ms: int = 200
    #: between attempts to load a batch's keys while the key store cannot be reached
    key_store_retry_s: float = 1.0


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
                 options: ConsumerRunnerOptions | None = None, rng: random.Random | None = None,
                 ring: KeyRing | None = None) -> None:
        """``ring``: opens sealed envelopes for the handlers (docs/privacy.md); without one a
        handler sees a sealed record's facts only."""
        self.consumer = consumer
        self._ring = ring
        self.name = consumer.name
        self.group = topics.group_id(consumer.name)
        self.topic_names = consumer.topic_names(topics)
        self.replay_topic = topics.replay(consumer.name)
        self._replay_spec = topics.replay_spec(consumer.name, kafka.partitions)
        self._k = kafka
        self._metrics = metrics
        self._options = options or ConsumerRunnerOptions()
        self.dead = ParkingDeadLetters(kafka, topics, consumer.name, (*secrets, *consumer.secrets))
        self._topics = topics
        self._ledger = LedgerWriter(kafka, topics)
        self._state = consumer.rebuildable
        self._stop = asyncio.Event()
        self._dispatch = Dispatcher(consumer, self.dead, metrics, replay_topic=self.replay_topic,
                                    stop=self._stop, rng=rng or random.Random(), ring=ring)
        self._committer: Committer | None = None
        self._lock = asyncio.Lock()
        self.started = asyncio.Event()
        self.assignment: set[TopicPartition] = set()

    @property
    def max_records(self) -> int:
        """Records per fetched batch: configured, else the consumer's own, else the default."""
        return self._options.max_records or self.consumer.max_records or MAX_RECORDS

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set (or :meth:`stop` is called); commits before returning."""
        if stop is not None:
            self._stop = self._dispatch.stop = stop
        if self.consumer.start is not None:
            await self.consumer.start()
        try:
            await self.dead.start()
            try:
                await self._consume()
            finally:
                await self._ledger.close()
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
        self._committer = committer = Committer(kc, self.name)
        self.started.set()
        log.info("consumer started", extra={"consumer": self.name, "group": self.group})
        batch_seconds = self._metrics.batch_seconds.labels(self.name)
        max_records = self.max_records
        try:
            while not self._stop.is_set():
                # Step 1: fetch
                batch = await kc.getmany(timeout_ms=self._options.poll_timeout_ms,
                                         max_records=max_records)
                if self._state is not None and await self._follow_rebuild(kc, batch):
                    continue
                if not batch:
                    continue
                if self._ring is not None and not await self._load_keys(batch):
                    continue  # stopping while the key store was away: nothing was handled
                async with self._lock:
                    t0 = time.perf_counter()
                    progress: BatchProgress[ConsumedEvent] = BatchProgress(batch)
                    try:
                        await self._dispatch.run(progress)  # Step 2
                    except Stopping:
                        pass
                    finally:
                        # Step 3: commit the done prefix, in the background (a slow commit
                        # folds several batches into one); drained on revocation and on stop.
                        committable = progress.committable()
                        await self._record_erasures(batch, committable)
                        committer.schedule(committable)
                        if self._stop.is_set():
                            await committer.drain()
                        self._dispatch.flush()
                    batch_seconds.observe(time.perf_counter() - t0)
                # A batch whose handlers never waited, fetched from aiokafka's buffer, ran
                # without yielding: let heartbeats, the committer and a rebalance run now.
                await asyncio.sleep(0)
        finally:
            async with self._lock:
                with contextlib.suppress(Exception):
                    await committer.drain()
            await kc.stop()
            self._committer = None
            log.info("consumer stopped", extra={"consumer": self.name, "group": self.group})

    async def _record_erasures(self, batch: dict[TopicPartition, list[Any]],
                               committable: dict[TopicPartition, int]) -> None:
        """Step 3's ledger entries (a failure leaves them out, logged: the effects stand)."""
        erased = erasures_done(batch, committable, self._topics)
        if not erased:
            return
        try:
            await self._ledger.append(processed(erased, self.name))
        except Exception as exc:  # noqa: BLE001 - Kafka away: the handler's effects are done
            log.warning("erasure ledger not written for %d aggregates: %s", len(erased), exc,
                        extra={"consumer": self.name})

    async def _load_keys(self, batch: Mapping[TopicPartition, list[Any]]) -> bool:
        """Load the keys of the batch's sealed records into the ring (step 1, second half);
        while the key store cannot be reached, wait and try again (never skip: the batch
        is held). False if stopped meanwhile: the records are fetched again after a restart
        since nothing was committed."""
        assert self._ring is not None
        subjects = {s for records in batch.values() for r in records
                    if (s := subject_in(r.value)) is not None}
        while True:
            try:
                await self._ring.load(subjects)
                return True
            except PrivacyError as exc:
                if not exc.retriable:
                    raise
                log.warning("key store unavailable; waiting before handling the batch",
                            extra={"consumer": self.name, "error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._options.key_store_retry_s)
            if self._stop.is_set():
                return False

    async def _follow_rebuild(self, kc: AIOKafkaConsumer,
                              batch: dict[TopicPartition, list[Any]]) -> bool:
        """A rebuild made another copy of the consumer's state live: resume from the offsets
        that copy was built to (:mod:`consumers.rebuildable`, step 4), dropping ``batch``."""
        assert self._state is not None
        offsets = await self._state.resume_offsets(kc.assignment())
        if not offsets:
            return False
        async with self._lock:
            if self._committer is not None:
                await self._committer.drain()  # no older commit may land after the handoff's
            await resume_from(kc, self._state, offsets, batch)
        return True

    # ------------------------------------------------------------- rebalancing
    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # waits for the batch in flight, which starts its commit
            if self._committer is not None:
                await self._committer.drain()
            self.assignment -= revoked

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.dead.catch_up()
        self.assignment = set(assigned)
        self._metrics.parked_keys.labels(self.name).set(len(self.dead.state.keys()))

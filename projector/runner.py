"""The projector's consumer loop: Kafka batches in, folded states and offsets out, exactly once.

The runner consumes the event topics in consumer group ``<prefix>.projector`` and keeps the
*live* projection of the store up to date. The store, not Kafka, is the truth about progress:
each batch's states and each partition's next offset are written in one store transaction,
and on assignment every partition is sought to the offset stored with the state. A crash at
any point therefore re-reads at most the batch that was in flight, and that batch was either
committed whole (it is skipped by the seek) or not at all (it is folded again).

Commit protocol, for each batch (the ``# Step N`` comments below mark each step):

1. Consume a batch with ``getmany`` (up to ``max_records``) from the assigned partitions.
2. Under the batch lock: if a rebalance happened since the fetch, or the store's live
   projection changed (a rebuild switched reads), or the previous batch failed: drop the
   fold-state cache and the batch, and seek every assigned partition to the live
   projection's stored offsets (never drop records without seeking back to them).
3. Drop records below the next offset already applied for their partition (a safety net:
   after a seek no such record should arrive).
4. Decode envelopes, normalise them to domain events and collect the aggregates they affect.
5. Load the fold states not in the LRU cache from the store (one ``load`` per batch).
6. Fold each record's events into working copies of the states; a record that fails to decode
   or apply changes nothing and becomes a dead letter.
7. Produce the dead letters and wait for their acknowledgement (before step 8, so a crash can
   duplicate a dead letter but never lose one).
8. Build the rows of the changed aggregates and commit rows + each partition's next offset in
   ONE store transaction — with a state publisher, also each row's state change into the
   store's outbox, in that same transaction.
9. Only now update the cache and the in-memory offsets, and wake read-your-writes waiters.
9a. If the batch erased aggregates (forgotten records, :mod:`projector.erasure`), append to
    the erasure ledger that this copy processed them (:mod:`parley.erasure_ledger`; after
    the commit, so the ledger never claims an erasure the store does not hold).
10. Commit the same offsets to Kafka (after the store, best effort) so consumer-group lag is
    visible to standard tools; Kafka's committed offsets are never read back.
11. Hand the committed states to the state publisher (:mod:`projector.state_publisher`, its
    own task): it sends them to the state topics (idempotent producer, acks=all) and deletes
    their outbox rows only once acknowledged. A crash between 8 and the acknowledgement leaves
    the rows in the outbox; the next publisher sends them (at-least-once; a repeat carries
    the same version, or a later one).

Rebalances: ``on_partitions_revoked`` takes the batch lock, so an in-flight batch finishes its
store commit before the partitions can be handed to another member; then the cache is dropped.
``on_partitions_assigned`` seeks each partition to the live projection's stored offset (the
beginning when it has none).

Cache: decoded fold states, keyed by :class:`AggregateRef`, least recently used evicted. It is
valid only while this process is the only writer of those aggregates: it is dropped on every
revocation (aiokafka rebalances eagerly: every revocation revokes all partitions), on a
projection switch and after any failed batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.topics import PROJECTOR, Topics
from parley.erasure_ledger import LedgerWriter, processed
from parley.kafka.clients import make_consumer, start_unless_stopped
from parley.privacy.ring import KeyRing
from parley.readiness import failure_reason
from parley.settings import KafkaSettings
from projector.dlq import DeadLetters
from projector.folder import BatchResult, Folder, Offsets, gc_paused
from projector.metrics import ProjectorMetrics
from projector.state_publisher import StatePublisher
from projector.store import Store

__all__ = ["ProjectorRunnerOptions", "Runner", "Watermarks", "ensure_live"]

log = logging.getLogger("parley.projector.runner")

FIRST_PROJECTION = "v1"


@dataclass(frozen=True, kw_only=True)
class ProjectorRunnerOptions:
    """How the projector's :class:`Runner` consumes: its group, batch size, poll timeout, fold
    state cache and pause after a failed batch."""

    group_id: str | None = None  # None: ``topics.group_id(PROJECTOR)``, <prefix>.projector
    max_records: int = 5000  # per getmany: large batches amortise the store transaction
    poll_timeout_ms: int = 500  # also bounds how long a stop request waits
    cache_size: int = 100_000  # decoded fold states kept between batches
    retry_backoff_s: float = 1.0  # after a failed batch (store busy, Kafka down)


async def ensure_live(store: Store) -> str:
    """The live projection's name, creating and switching to ``v1`` in an empty store."""
    live = await store.live_projection()
    if live is None:
        await store.create_projection(FIRST_PROJECTION)
        await store.set_live(FIRST_PROJECTION)
        live = FIRST_PROJECTION
    return live


class Watermarks:
    """Next offsets known applied to the live projection, which partitions this process's
    runner applies, and a way to wait on changes.

    The runner calls :meth:`advance` after each store commit (step 9) and with the stored
    offsets of the partitions it is assigned (:meth:`own`, :meth:`disown` on revocation);
    :class:`projector.waits.PositionWaits` also advances it with offsets read from the store,
    for partitions another process applies. Read-your-writes waits call :meth:`wait` and
    re-check. While the runner's consumer runs (:meth:`follow`), :meth:`partitions` says how
    many partitions an event topic has, from that consumer's metadata. Single event loop, no
    locking.
    """

    def __init__(self) -> None:
        self.projection: str | None = None
        self._next: Offsets = {}
        self._owned: set[tuple[str, int]] = set()
        self._changed = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    def applied(self, topic: str, partition: int, offset: int) -> bool:
        return self._next.get((topic, partition), 0) > offset

    def next_offset(self, topic: str, partition: int) -> int:
        """The next offset known applied on the partition (0: nothing known)."""
        return self._next.get((topic, partition), 0)

    def owns(self, topic: str, partition: int) -> bool:
        """True while this process's runner is assigned the partition (its commits wake)."""
        return (topic, partition) in self._owned

    def own(self, partitions: Iterable[tuple[str, int]]) -> None:
        self._owned.update(partitions)
        self._wake()

    def disown(self, partitions: Iterable[tuple[str, int]] | None = None) -> None:
        """Forget ownership of ``partitions`` (all of them when None: the runner stopped)."""
        if partitions is None:
            self._owned.clear()
        else:
            self._owned.difference_update(partitions)
        self._wake()

    def advance(self, projection: str, offsets: Mapping[tuple[str, int], int]) -> None:
        if projection != self.projection:
            self.projection, self._next = projection, {}
        for tp, off in offsets.items():
            if off > self._next.get(tp, 0):
                self._next[tp] = off
        self._wake()

    def reset(self, projection: str) -> None:
        """Forget what was applied (the live projection changed)."""
        self.projection, self._next = projection, {}
        self._wake()

    def follow(self, consumer: AIOKafkaConsumer | None) -> None:
        """Answer :meth:`partitions` from ``consumer``'s metadata (None: the runner stopped)."""
        self._consumer = consumer

    def partitions(self, topic: str) -> int | None:
        """How many partitions ``topic`` has, as the runner's consumer's metadata says (it is
        refreshed every ``metadata_max_age_ms`` and by :meth:`refresh_partitions`); None
        while no runner consumes, or before its metadata has the topic. No I/O."""
        consumer = self._consumer
        if consumer is None:
            return None
        parts = consumer.partitions_for_topic(topic)
        return len(parts) if parts else None

    async def refresh_partitions(self) -> bool:
        """Refresh the runner's consumer's metadata now (partitions may have been added since
        it last did; it then rebalances to take them); True once it did. Concurrent calls
        share one metadata request."""
        consumer = self._consumer
        if consumer is None:
            return False
        # The consumer's own cluster view, the one it rebalances on; no public call refreshes it.
        return bool(await consumer._client.force_metadata_update())

    async def wait(self, timeout_s: float) -> bool:
        """Wait until the next change or ``timeout_s``; True if woken."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _wake(self) -> None:
        # Swap before setting: waiters hold the old event, later waits get a fresh one.
        event, self._changed = self._changed, asyncio.Event()
        event.set()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._runner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._runner._on_assigned(set(assigned))


class Runner:
    """Keeps the live projection up to date from the event topics. See the module docstring."""

    def __init__(self, *, store: Store, kafka: KafkaSettings, topics: Topics,
                 dead_letters: DeadLetters, metrics: ProjectorMetrics,
                 watermarks: Watermarks | None = None,
                 options: ProjectorRunnerOptions = ProjectorRunnerOptions(), folder: Folder | None = None,
                 publisher: StatePublisher | None = None, ring: KeyRing | None = None,
                 ledger: LedgerWriter | None = None) -> None:
        """``publisher``: publish committed states to the state topics (steps 8 and 11).
        ``ring``: opens sealed records before step 4 (docs/privacy.md). ``ledger``: record
        erasures in the erasure ledger (step 9a)."""
        self._store = store
        self._kafka = kafka
        self._topics = topics
        self._dead_letters = dead_letters
        self._metrics = metrics
        self.watermarks = watermarks or Watermarks()
        self._options = options
        self._folder = folder or Folder(store, options.cache_size, metrics, ring=ring)
        self._publisher = publisher
        self._ledger = ledger
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._next: dict[TopicPartition, int] = {}  # assigned partitions -> next offset to apply
        self._generation = 0  # bumped by every rebalance callback
        self._reseek = False
        self.projection: str | None = None
        self.problem: str | None = "starting"
        self.started = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the current batch always finishes first."""
        self.projection = await ensure_live(self._store)
        self.watermarks.reset(self.projection)
        group = self._options.group_id or self._topics.group_id(PROJECTOR)
        consumer = make_consumer(self._kafka, group_id=group,
                                 max_poll_records=self._options.max_records,
                                 # Catching up after downtime: big fetches, few round trips.
                                 max_partition_fetch_bytes=4 << 20)
        consumer.subscribe(list(self._topics.event_topics), listener=_Listener(self))
        self._consumer = consumer
        publishing = asyncio.Event()  # set: the publisher's last round, then it returns
        publisher = (None if self._publisher is None else
                     asyncio.create_task(self._publisher.run(publishing), name="state-publisher"))
        try:
            if not await start_unless_stopped(consumer, stop):
                return  # stopped before the group assigned partitions (broker away?)
            self.watermarks.follow(consumer)
            self.started.set()
            self.problem = None
            while not stop.is_set():
                generation = self._generation
                # Step 1: a batch from the assigned partitions.
                batch = await consumer.getmany(timeout_ms=self._options.poll_timeout_ms,
                                               max_records=self._options.max_records)
                try:
                    offsets = await self._process(batch, generation)
                except Exception as exc:
                    self.problem = f"last batch failed: {failure_reason(exc)}"  # no hosts
                    log.exception("batch failed; re-reading from the stored offsets")
                    self._reseek = True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._options.retry_backoff_s)
                    continue
                self.problem = None
                if offsets:
                    await self._commit_kafka(consumer, offsets)
        finally:
            self._consumer = None
            self.watermarks.follow(None)
            self.watermarks.disown()  # waits for these partitions now read the store
            publishing.set()
            try:
                await consumer.stop()
            finally:
                if publisher is not None:
                    await publisher

    async def _process(self, batch: Mapping[TopicPartition, list[ConsumerRecord]],
                       generation: int) -> Offsets:
        async with self._lock:
            # Step 2: a rebalance or a projection switch since the fetch voids the batch. The
            # consumer's positions moved past it, so every partition is sought back to the
            # store's offsets: dropping a batch without seeking would skip its records.
            live = await ensure_live(self._store)
            if generation != self._generation or live != self.projection or self._reseek:
                await self._switch(live)
                return {}
            projection = live
            # Step 3: only records this runner has not applied yet.
            records: list[ConsumerRecord] = []
            for tp, recs in batch.items():
                next_offset = self._next.get(tp)
                if next_offset is None:
                    continue
                records.extend(r for r in recs if r.offset >= next_offset)
            if not records:
                return {}
            started = time.perf_counter()
            with gc_paused():
                return await self._fold_and_commit(projection, records, started)

    async def _fold_and_commit(self, projection: str, records: list[ConsumerRecord],
                               started: float) -> Offsets:
        """Steps 4-9 for ``records`` (under the batch lock; see the module docstring)."""
        # Steps 4-6 (and 8's rows).
        result = await self._folder.fold(projection, records)
        # Step 7: dead letters are durable before the batch that skips them commits.
        if result.dead:
            await self._dead_letters.send(result.dead, projection)
        # Step 8: rows, next offsets (and the outbox) in ONE store transaction.
        try:
            published = await self._store.commit(projection, result.rows, result.offsets,
                                                 publish=self._publisher is not None)
        except Exception:
            if await self._store.live_projection() != projection:
                # A rebuild switched reads and dropped our copy mid-batch: nothing lost,
                # the batch is folded again into the new live projection.
                await self._switch(await ensure_live(self._store))
                return {}
            self._folder.clear()
            raise
        # Step 9: cache, offsets, waiters.
        self._folder.remember(result.states, result.covers)
        for (topic, partition), off in result.offsets.items():
            self._next[TopicPartition(topic, partition)] = off
        self.watermarks.advance(projection, result.offsets)
        self._observe(result, time.perf_counter() - started)
        # Step 9a: the erasure ledger (a failure leaves the entry out; the erasure stands).
        if result.erased and self._ledger is not None:
            try:
                await self._ledger.append(processed(result.erased, PROJECTOR, copy=projection))
            except Exception as exc:  # noqa: BLE001 - Kafka away: the store's state still says it
                log.warning("erasure ledger not written for %d aggregates: %s",
                            len(result.erased), failure_reason(exc))
        # Step 11: the publisher sends what step 8 committed (and put in the outbox).
        if self._publisher is not None:
            self._publisher.handoff(published)
        return result.offsets

    async def _commit_kafka(self, consumer: AIOKafkaConsumer, offsets: Offsets) -> None:
        # Step 10: for lag tooling only; a failure (rebalance, broker away) is harmless.
        try:
            await consumer.commit({TopicPartition(t, p): off for (t, p), off in offsets.items()})
        except Exception as exc:  # noqa: BLE001
            log.info("Kafka offset commit skipped: %s", type(exc).__name__)

    def _observe(self, result: BatchResult, seconds: float) -> None:
        m = self._metrics
        m.batches.inc()
        m.batch_seconds.observe(seconds)
        m.events.inc(result.events)
        m.rows_written.inc(len(result.rows))
        for topic, n in result.records_by_topic.items():
            m.records.labels(topic).inc(n)
        consumer = self._consumer
        if consumer is not None:
            for (topic, partition), off in result.offsets.items():
                high = consumer.highwater(TopicPartition(topic, partition))
                if high is not None:
                    m.lag.labels(topic, str(partition)).set(max(0, high - off))

    async def _switch(self, live: str) -> None:
        """Follow the live projection (after a rebuild, or to recover from a failed batch)."""
        if live != self.projection:
            log.info("live projection is now %s (was %s)", live, self.projection)
            self._metrics.switches.inc()
            self.watermarks.reset(live)
        self.projection = live
        self._folder.clear()
        consumer = self._consumer
        await self._seek(set(consumer.assignment()) if consumer is not None else set())
        self._reseek = False

    async def _seek(self, partitions: set[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or self.projection is None:
            return
        stored = await self._store.offsets(self.projection)
        for tp in partitions:
            # No stored offset: the projection has nothing from this partition yet, so it starts
            # at 0 (below the log start, auto_offset_reset="earliest" moves it to the first
            # record). A plain seek does not wait on the fetcher, unlike seek_to_beginning.
            off = stored.get((tp.topic, tp.partition), 0)
            consumer.seek(tp, off)
            self._next[tp] = off
        # What a previous owner applied counts as applied: waiters need no store read for it.
        owned = [(tp.topic, tp.partition) for tp in partitions]
        self.watermarks.advance(self.projection, {k: stored[k] for k in owned if k in stored})
        self.watermarks.own(owned)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # the in-flight batch commits to the store first
            self._generation += 1
            self._folder.clear()
            for tp in revoked:
                self._next.pop(tp, None)
            self.watermarks.disown((tp.topic, tp.partition) for tp in revoked)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:
            self._generation += 1
            try:
                self.projection = await ensure_live(self._store)
                await self._seek(assigned)
            except Exception:
                log.exception("seeking to the stored offsets failed; retrying before the next batch")
                self._reseek = True
                return
            log.info("assigned %d partition(s) of projection %s", len(assigned), self.projection)

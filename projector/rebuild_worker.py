"""One member of a parallel rebuild: folds the partitions Kafka assigns it into the new copy.

A parallel rebuild (:mod:`projector.rebuild_parallel`) runs several members, each in a process
of its own, in one consumer group, ``<prefix>.rebuild.<copy>``
(:meth:`contracts.topics.Topics.rebuild_group_id`), so Kafka spreads the event topics'
partitions over them. Each member writes the copy through a store in *shared* mode, which
merges visitors and agents on commit (:mod:`projector.row_merge`): with PostgreSQL a
connection of its own, with SQLite the one writer connection of the process that started it,
over a pipe (:mod:`projector.rebuild_pipe`). Per batch it does the one-process rebuild's step 3
(same :class:`~projector.folder.Folder`, same :class:`~projector.rebuild_batches.BatchWriter`:
rows and next offsets in ONE store transaction, written while the next batch folds), with the
live runner's rebalance rules:

1. On assignment: read the copy's stored offsets (the truth about progress; the group's
   offsets are never read) and seek each assigned partition there (the beginning when it has
   none); pause the partitions already at their target. The fold-state cache starts empty. It
   skips store reads for aggregates it never wrote only if none of its partitions was written
   before (by anyone): chats and messages live in one partition, and a visitor or agent
   folded from a partial state is joined with the stored one on commit.
2. Before folding anything, a member that holds more partitions than its share of the
   ``members`` expected (of all the event topics' partitions, as the assignor spreads them)
   waits (up to ``settle_s``) for the others to join, so the first rebalance does not throw
   away a cache and work already done.
3. Per batch: if a rebalance happened while it was fetched, drop it and seek back to the
   partitions' next offsets; else drop records below the partition's next offset or at/after
   its target (pausing it), fold, send dead letters, hand rows + next offsets to the writer.
4. On revocation (aiokafka revokes every partition at each rebalance): wait for the batch in
   flight to commit, so a partition's next owner reads its offsets after that commit.
5. When none of its partitions is below its target, and every partition of the copy has its
   target stored, stop. A member that dies is replaced by the group: its partitions move to
   the other members, which resume from the copy's stored offsets (nothing folded twice into
   a committed state, nothing lost); the coordinator also starts a replacement.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.topics import Topics
from parley.kafka.clients import make_consumer, start_unless_stopped
from parley.privacy.ring import KeyRing
from parley.settings import KafkaSettings
from projector.dlq import DeadLetters
from projector.folder import Folder, gc_paused
from projector.rebuild_batches import BatchWriter, next_batch
from projector.rebuild_pipe import CopyWriter

__all__ = ["Member", "Target"]

log = logging.getLogger("parley.projector.rebuild")

#: (topic, partition) -> the next offset the copy must reach (end offsets read at the start).
Target = Mapping[tuple[str, int], int]


@dataclass(frozen=True, kw_only=True)
class MemberOptions:
    """How a member folds: batch size, members expected, how long to wait for them."""

    #: records a batch: 20,000, not the one-process rebuild's 50,000 — two workers rebuilt
    #: 1,000,000 records as fast with either (66-70 s against 64-74 s, 2026-12-07), and the
    #: smaller batches hold ~350 MiB less in the coordinator and each worker
    max_records: int = 20_000
    members: int = 1
    settle_s: float = 15.0
    publish_states: bool = False
    cache_size: int = 200_000
    #: stop when this process's parent is no longer ``parent_pid`` (the coordinator died)
    parent_pid: int | None = None


class Member:
    """Folds its assigned partitions of the event topics into the copy, up to ``target``."""

    def __init__(self, store: CopyWriter, kafka: KafkaSettings, topics: Topics, copy: str,
                 target: Target, options: MemberOptions,
                 dead_letters: DeadLetters | None = None, ring: KeyRing | None = None) -> None:
        """``ring``: opens sealed records (docs/privacy.md); without one they fold to facts."""
        self._store, self._topics, self._copy = store, topics, copy
        self._ring = ring
        # Never a static member: every member of the rebuild group is a distinct process.
        self._kafka = msgspec.structs.replace(kafka, group_instance_id=None)
        self._target = {TopicPartition(t, p): end for (t, p), end in target.items()}
        self._options, self._dead_letters = options, dead_letters
        self._lock = asyncio.Lock()
        self._generation = 0
        self._next: dict[TopicPartition, int] = {}
        self._writer = BatchWriter(store, copy, self._counted, publish=options.publish_states)
        self._folder = Folder(store, options.cache_size, fresh=True, ring=ring)
        self._consumer: AIOKafkaConsumer | None = None
        self._settle_until: float | None = None
        self._settled = False  # the wait of step 2 ran out once: never again
        self._failed: Exception | None = None  # an assignment this member could not take up
        self.records = 0
        self.dead_letters = 0

    def _counted(self, n: int) -> None:
        self.records += n

    async def run(self, stop: asyncio.Event) -> None:
        """Fold until every partition of the copy reached its target, or ``stop`` is set."""
        o = self._options
        consumer = make_consumer(self._kafka, group_id=self._topics.rebuild_group_id(self._copy),
                                 max_poll_records=o.max_records,
                                 max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
                                 # Members learn of a rebalance at their next heartbeat: the
                                 # first one waits for the others (step 2) no longer than this.
                                 heartbeat_interval_ms=500)
        consumer.subscribe(list(self._topics.event_topics), listener=_Listener(self))
        self._consumer = consumer
        try:
            if not await start_unless_stopped(consumer, stop):
                return
            while not stop.is_set() and not self._orphaned():
                if self._settling() or self._idle():
                    async with self._lock:
                        await self._writer.drain()  # an error of the last commit fails here
                    if not self._settling() and await self._copy_done():
                        break  # Step 5
                    await self._wait(consumer)
                    continue
                generation = self._generation
                records = await next_batch(consumer, o.max_records)
                async with self._lock:
                    if self._failed is not None:
                        raise self._failed
                    if generation != self._generation:
                        # A rebalance happened while fetching: these records may come from
                        # after the new assignment's seeks, so fetch them again from there.
                        for tp in consumer.assignment():
                            consumer.seek(tp, self._next.get(tp, 0))
                        continue
                    await self._fold(consumer, records)
                # Cached states live for many batches: keep them out of the collector's view
                # (see projector.rebuild step 3).
                gc.freeze()
            await self._writer.drain()
        finally:
            gc.unfreeze()
            await self._writer.abandon()
            self._consumer = None
            await consumer.stop()

    async def _wait(self, consumer: AIOKafkaConsumer) -> None:
        """Poll while idle or settling (a rebalance happens inside a poll). Partitions it
        assigns may be resumed and fetched within the same poll: seek those back to their
        next offsets, to be fetched again by the fold loop."""
        got = await consumer.getmany(timeout_ms=300)
        for tp in got:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
        if self._failed is not None:
            raise self._failed

    async def _fold(self, consumer: AIOKafkaConsumer, records: list[ConsumerRecord]) -> None:
        """Step 3."""
        kept: list[ConsumerRecord] = []
        nexts, target = self._next, self._target
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            at = nexts.get(tp)
            if at is None or rec.offset < at or rec.offset >= target.get(tp, 0):
                continue
            nexts[tp] = rec.offset + 1
            kept.append(rec)
        done = [tp for tp in consumer.assignment() if nexts.get(tp, 0) >= target.get(tp, 0)]
        if done:
            consumer.pause(*done)
        if not kept:
            return
        with gc_paused():
            result = await self._folder.fold(self._copy, kept)
            if result.dead:
                self.dead_letters += len(result.dead)
                if self._dead_letters is not None:
                    await self._dead_letters.send(result.dead, self._copy)
            await self._writer.commit(result.rows, result.offsets, len(kept))
            # The next batch folds on these; should their transaction fail, the member fails.
            self._folder.remember(result.states, result.covers)

    def _idle(self) -> bool:
        """No assigned partition is below its target (or nothing is assigned)."""
        consumer = self._consumer
        assigned = consumer.assignment() if consumer is not None else set()
        return all(self._next.get(tp, 0) >= self._target.get(tp, 0) for tp in assigned)

    def _settling(self) -> bool:
        """Step 2: waiting for the expected members to join (until the deadline)."""
        if self._settle_until is None:
            return False
        if time.monotonic() >= self._settle_until:
            self._settle_until, self._settled = None, True
            if self._consumer is not None:
                self._resume(self._consumer)
            return False
        return True

    def _orphaned(self) -> bool:
        pid = self._options.parent_pid
        return pid is not None and os.getppid() != pid

    async def _copy_done(self) -> bool:
        stored = await self._store.offsets(self._copy)
        return all(stored.get((tp.topic, tp.partition), 0) >= end
                   for tp, end in self._target.items())

    def _resume(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        consumer.resume(*[tp for tp in assigned
                          if self._next.get(tp, 0) < self._target.get(tp, 0)])

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # Step 4: the batch in flight finishes its fold first...
            self._generation += 1
            await self._writer.drain()  # ...and its commit
            for tp in revoked:
                self._next.pop(tp, None)

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self._lock:  # Step 1
            self._generation += 1
            consumer = self._consumer
            if consumer is None:
                return
            try:
                stored = await self._store.offsets(self._copy)
            except Exception as exc:  # noqa: BLE001 - aiokafka would only log it
                # Without its offsets the member cannot fold these partitions: it fails, its
                # partitions move to the others, and the coordinator replaces it.
                self._failed = exc
                consumer.pause(*assigned)
                return
            written = False
            for tp in assigned:
                off = stored.get((tp.topic, tp.partition))
                written = written or off is not None
                # No stored offset: 0, below the log start (auto_offset_reset moves it up).
                consumer.seek(tp, off or 0)
                self._next[tp] = off or 0
            self._folder = Folder(self._store, self._options.cache_size, fresh=not written,
                                  ring=self._ring)
            consumer.pause(*assigned)
            if (self._options.members > 1 and self.records == 0 and not self._settled
                    and len(assigned) > self._share(consumer)):
                if self._settle_until is None:
                    self._settle_until = time.monotonic() + self._options.settle_s
                    log.info("holding %d partitions: waiting for the other members", len(assigned))
                return  # Step 2: resumed by the next rebalance or at the deadline
            self._settle_until = None
            self._resume(consumer)

    def _share(self, consumer: AIOKafkaConsumer) -> int:
        """The most partitions one of ``members`` members gets once all have joined (per
        topic, rounded up: so whether Kafka assigns by topic or round robin). Every partition
        of the event topics counts, records or not: the assignor spreads them all, so counting
        only those with records to fold (as this once did) let a member that held two of a
        young log's few such partitions wait out ``settle_s`` with every member there."""
        n = self._options.members
        share = 0
        for topic in self._topics.event_topics:
            partitions = consumer.partitions_for_topic(topic)
            count = (len(partitions) if partitions
                     else sum(1 for tp in self._target if tp.topic == topic))
            share += math.ceil(count / n)
        return share


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: Member) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._member._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._member._on_assigned(set(assigned))

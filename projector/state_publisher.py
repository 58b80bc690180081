"""Publishing committed states: the outbox, sent to the state topics, then deleted.

Step 11 of the runner's commit protocol (:mod:`projector.runner`). The store's outbox holds a
reference to every state a batch committed (written in the batch's own transaction, see
:mod:`projector.outbox`). The publisher sends states with the idempotent ``acks=all``
producer to ``<prefix>.state.{chat,visitor,agent}`` and deletes their outbox rows only once
Kafka acknowledged every one of them:

* fast path: the runner hands over the entries its commit returned (:meth:`handoff`); they
  are sent from memory, then the commit's outbox rows are deleted by its token;
* slow path: outbox rows nobody handed over — left by a crash between the commit and the
  acknowledgement, or written by a rebuild with ``--publish-states`` — are read back with the
  state their row holds now, sent, and deleted by seq. At start, and every ``poll_s``.

With a key ring (``privacy.encrypt``), each state's personal parts are sealed under its data
subject's key before it is sent (:mod:`parley.privacy.states`): the batch's keys are loaded in
one key-store round trip, a subject without a key gets one. A key store that cannot be reached
fails the send like Kafka away would: the states wait in the outbox, never sent readable.

So nothing is published before it is committed, nothing committed is lost, and a state may be
published twice (sent, then killed before the delete), with the same version — or a later
one, read back by the slow path: consumers keep the greatest version per key.

Entries are routed by chat id for chats and messages (the partition is the CRC-32 of the chat
id modulo the partition count), so one chat's state changes and its messages' stay in one
partition, in commit order; the record key is the aggregate's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from zlib import crc32

from aiokafka import AIOKafkaProducer

from contracts.forgotten import ERASURE_HEADER, erasure_in_state
from contracts.state_change import state_topic_kind
from contracts.topics import MAX_RECORD_BYTES, Topics
from parley.kafka.clients import make_producer
from parley.privacy.ring import KeyRing
from parley.privacy.states import StateSealer
from parley.settings import KafkaSettings
from projector.outbox import OutboxEntry
from projector.store import Store

__all__ = ["StatePublisher"]

log = logging.getLogger("parley.projector.states")

_BATCH_BYTES = 1 << 20  # a record batch; the state topics take MAX_RECORD_BYTES per batch


class StatePublisher:
    """Sends the store's outbox to the state topics; see the module docstring."""

    def __init__(self, store: Store, producer: AIOKafkaProducer, topics: Topics, *,
                 batch: int = 5000, poll_s: float = 1.0, retry_backoff_s: float = 1.0,
                 ring: KeyRing | None = None) -> None:
        """``poll_s``: how often the outbox is read without a wake-up (entries a rebuild in
        another process committed). ``ring``: seals the states' personal parts (the
        module docstring); None publishes them as they are (``privacy.encrypt = false``)."""
        self._store = store
        self._sealer = None if ring is None else StateSealer(ring)
        self._producer = producer
        self._topics = topics
        self._batch = batch
        self._poll_s = poll_s
        self._backoff_s = retry_backoff_s
        self._wake = asyncio.Event()
        self._handed: list[list[OutboxEntry]] = []  # committed batches' entries, oldest first
        self._mine: set[int] = set()  # tokens of handed batches, until their rows are deleted
        self.published = 0  # entries acknowledged by Kafka and deleted, since start
        self.problem: str | None = None

    @staticmethod
    def make_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
        """The publisher's own producer (idempotent, acks=all), with large record batches: a
        batch of states is sent as one record batch per partition (see :meth:`_send`),
        which costs a third of the CPU of batches of the default 16 KiB."""
        return make_producer(kafka, max_batch_size=_BATCH_BYTES,
                             max_request_size=MAX_RECORD_BYTES + _BATCH_BYTES, linger_ms=5)

    @staticmethod
    async def ensure_topics(kafka: KafkaSettings, topics: Topics) -> None:
        """Create the state topics if they are missing (idempotent), from their specs."""
        from parley.kafka.topics import apply_topics

        states = set(topics.state_topics)
        await apply_topics(kafka, [s for s in topics.specs(kafka.partitions) if s.name in states])

    def handoff(self, entries: list[OutboxEntry]) -> None:
        """A batch committed these entries (one token): send them now, from memory."""
        if entries:
            self._handed.append(entries)
            self._mine.add(entries[0].token)
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set, then once more (what the last batch committed)."""
        slow_due = 0.0  # the outbox is read at start, then every poll_s
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.publish_handed()
                if loop.time() >= slow_due:
                    await self.publish_pending()
                    slow_due = loop.time() + self._poll_s
            except Exception as exc:  # noqa: BLE001 - Kafka or the store away: try again
                self.problem = f"publishing states failed: {type(exc).__name__}: {exc}"
                log.warning("%s; retrying", self.problem)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._backoff_s)
                continue
            self.problem = None
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waits, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        try:
            await self.publish_handed()
        except Exception as exc:  # noqa: BLE001 - left in the outbox for the next start
            log.warning("states not published at stop (sent at the next start): %s", exc)

    async def publish_handed(self) -> int:
        """The fast path: send what commits handed over, deleting each commit's outbox rows
        once acknowledged; how many. After a failure the rest is left to the slow path."""
        total = 0
        while self._handed:
            entries = self._handed[0]
            try:
                await self._send(entries)
                await self._store.ack_outbox([entries[0].token])
            except BaseException:
                self._handed.clear()  # the outbox still has them: the slow path sends them
                self._mine.clear()
                raise
            self._handed.pop(0)
            self._mine.discard(entries[0].token)
            total += len(entries)
            self.published += len(entries)
        return total

    async def publish_pending(self) -> int:
        """The slow path: send every state the outbox refers to (as its row holds it now),
        deleting each read once acknowledged; how many were sent."""
        total = 0
        while True:
            read = await self._store.outbox(self._batch)
            # Commits handed to the fast path are its to send and delete.
            entries = [e for e in read if e.token not in self._mine]
            if not entries:
                return total
            live = [e for e in entries if e.value]  # empty: the row's copy was dropped
            await self._send(live)
            await self._store.ack_outbox(sorted({e.token for e in entries}))
            total += len(live)
            self.published += len(live)
            if len(read) < self._batch:
                return total

    async def _send(self, entries: list[OutboxEntry]) -> None:
        """Send ``entries`` and wait until Kafka acknowledged every one.

        Built into one record batch per partition (``create_batch``/``send_batch``), in
        outbox order within each partition: a tenth of the per-record cost of ``send``.
        """
        producer = self._producer
        values = await self._seal(entries)
        sizes: dict[str, int] = {}
        by_partition: dict[tuple[str, int], list[tuple[OutboxEntry, bytes]]] = {}
        for e, value in zip(entries, values, strict=True):
            topic = self._topics.state(state_topic_kind(e.kind))  # type: ignore[arg-type]
            n = sizes.get(topic)
            if n is None:
                n = sizes[topic] = len(await producer.partitions_for(topic))
            # By the route, so a chat's messages go where the chat's own record goes; crc32,
            # not the Java client's murmur2, which aiokafka computes in Python at a hundred
            # times the cost (only this publisher writes these topics).
            partition = crc32(e.route.encode()) % n
            by_partition.setdefault((topic, partition), []).append((e, value))
        sent = []
        for (topic, partition), group in by_partition.items():
            batch = producer.create_batch()
            for e, value in group:
                headers = _erasure_headers(e)
                if batch.append(key=e.key.encode(), value=value, timestamp=None,
                                headers=headers) is None:
                    batch.close()
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=e.key.encode(), value=value, timestamp=None,
                                    headers=headers) is None:
                        raise ValueError(f"state of {e.kind} {e.key} exceeds a record batch")
            batch.close()
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        # Every batch acknowledged (acks=all) before any entry is deleted.
        await asyncio.gather(*sent)

    async def _seal(self, entries: list[OutboxEntry]) -> list[bytes]:
        """The values to send: each state's personal parts sealed (with a ring), else the
        entries' values as they are."""
        if self._sealer is None:
            return [e.value for e in entries]
        return await self._sealer.seal([(e.value, e.provider) for e in entries])


def _erasure_headers(e: OutboxEntry) -> list[tuple[str, bytes]]:
    """The erasure header of an erased chat's or visitor's state (so consumer groups can
    record in the erasure ledger that they processed it, :mod:`contracts.forgotten`); none
    for other states, nor for messages (their chat's state announces them)."""
    if e.kind == "message" or e.kind == "agent":
        return []
    erasure = erasure_in_state(e.value)
    return [] if erasure is None else [(ERASURE_HEADER, erasure.encode())]

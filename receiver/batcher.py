"""Concurrent records for one partition share one aiokafka batch, one future and one callback.

``producer.send()`` costs per record: two coroutines, a delivery future, a partition check,
an accumulator append and, on acknowledgement, a ``RecordMetadata`` and a future resolution.
:class:`RecordBatcher` instead appends each record straight to its partition's open
:class:`~aiokafka.producer.BatchBuilder` with a plain future beside it; a batch is handed
over once, with ``send_batch``, and one callback on its acknowledgement answers all of its
records.

Batches form as the producer's own accumulator forms them (no extra wait): a record joins
the partition's batch as long as the sender has not taken it (aiokafka keeps one request in
flight per broker, so records arriving during a round trip share the next batch; the
producer's ``linger_ms`` applies as usual). When the sender has taken it, or it is full, the
next record starts a new batch, handed over by the partition's flush task as soon as aiokafka
accepts one (one queued batch per partition).

Guarantees (:meth:`RecordBatcher.add`):

1. the future resolves to the record's own offset only after Kafka acknowledged the batch
   holding it (acks=all, idempotent: the producer's settings, see
   :func:`parley.kafka.clients.make_producer`);
2. if the batch cannot be handed over or its delivery fails, every record of that batch, and
   only those, gets the failure;
3. records of one partition reach Kafka in the order ``add`` was called: a record joins the
   open batch only when no record is waiting for a later one, and aiokafka keeps a
   partition's batches in order.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition

__all__ = ["RecordBatcher"]

# (key, value, the future that gets the record's offset)
_Record = tuple[bytes, bytes, "asyncio.Future[int]"]


class _Partition:
    __slots__ = ("flushing", "futures", "open", "records", "tp")

    def __init__(self, topic: str, partition: int) -> None:
        self.tp = TopicPartition(topic, partition)
        self.records: list[_Record] = []  # waiting for a new batch, in order
        self.flushing = False  # a flush task owns ``records``
        # The batch records may still join: being handed over, or handed over and not yet
        # taken by the sender; ``futures`` are its records' futures, in offset order.
        self.open: BatchBuilder | None = None
        self.futures: list[asyncio.Future[int]] = []


class RecordBatcher:
    """Batches records per partition of one producer (see the module docstring)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        # Which batches the sender has not taken yet: aiokafka's accumulator queue per
        # partition (private; aiokafka's own send() appends to its last batch the same way).
        # Pinned by requirements/*.lock; tests/receiver/test_batching.py checks the offsets.
        self._queued: dict[TopicPartition, deque[Any]] = producer._message_accumulator._batches
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, topic: str, partition: int, key: bytes, value: bytes) -> asyncio.Future[int]:
        """Queue one record; the future gets its offset once Kafka acknowledged it."""
        part = self._partitions.get((topic, partition))
        if part is None:
            part = self._partitions[(topic, partition)] = _Partition(topic, partition)
        delivery: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        batch = part.open
        if (batch is not None and not part.records and self._joinable(part, batch)
                and batch.append(key=key, value=value, timestamp=None) is not None):
            part.futures.append(delivery)
            return delivery
        part.records.append((key, value, delivery))
        if not part.flushing:
            part.flushing = True
            task = asyncio.create_task(self._flush(part))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return delivery

    def _joinable(self, part: _Partition, batch: BatchBuilder) -> bool:
        """``batch`` is still being handed over, or queued and not yet taken by the sender
        (taking it fixes its record count and sequence numbers)."""
        if part.flushing and not part.records:
            return True  # the flush task is handing it over right now
        queued = self._queued.get(part.tp)
        return queued is not None and len(queued) > 0 and queued[-1]._builder is batch

    async def _flush(self, part: _Partition) -> None:
        """Hand over what waits for a new batch, until nothing does."""
        try:
            while part.records:
                records, part.records = part.records, []
                while records:  # more than one batch only when a batch fills up
                    records = await self._send_batch(part, records)
        finally:
            part.flushing = False

    async def _send_batch(self, part: _Partition, records: list[_Record]) -> list[_Record]:
        """Hand over as many of ``records`` as fit one batch; return those that did not.
        Records added meanwhile may join the batch (:meth:`_joinable`)."""
        batch = self.producer.create_batch()
        futures: list[asyncio.Future[int]] = []
        for key, value, delivery in records:
            # The first record always fits (a batch takes one record of any size).
            if batch.append(key=key, value=value, timestamp=None) is None:
                break
            futures.append(delivery)
        rest = records[len(futures):]
        part.open, part.futures = batch, futures
        try:
            # Waits until the partition's previous batch was taken by the sender; bounded by
            # the producer's request timeout (the publisher's send timeout).
            acked = await self.producer.send_batch(batch, part.tp.topic, partition=part.tp.partition)
        except asyncio.CancelledError:
            part.open = None
            _cancel(futures)
            raise
        except Exception as exc:  # noqa: BLE001 - not handed over: each of its records fails
            part.open = None
            _fail(futures, exc)
        else:
            # ``futures`` still grows while the batch waits for the sender.
            acked.add_done_callback(lambda done: _answer(done, futures))
        return rest

    async def close(self) -> None:
        """Stop the flush tasks; records not yet handed over are cancelled."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for part in self._partitions.values():
            _cancel([delivery for _, _, delivery in part.records])
            part.records, part.open = [], None


def _answer(acked: asyncio.Future[Any], futures: list[asyncio.Future[int]]) -> None:
    """The batch's acknowledgement answers each of its records: offset = base + position."""
    if acked.cancelled():
        _cancel(futures)
        return
    exc = acked.exception()
    if exc is not None:
        _fail(futures, exc)
        return
    base = acked.result().offset
    for i, delivery in enumerate(futures):
        if not delivery.done():  # already expired by the publisher's deadline sweeper
            delivery.set_result(base + i)


def _fail(futures: list[asyncio.Future[int]], exc: BaseException) -> None:
    for delivery in futures:
        if not delivery.done():
            # A copy each: one exception object raised in many tasks would collect all
            # of their tracebacks (aiokafka copies for the same reason).
            delivery.set_exception(copy.copy(exc))


def _cancel(futures: list[asyncio.Future[int]]) -> None:
    for delivery in futures:
        delivery.cancel()  # a no-op on a future already answered

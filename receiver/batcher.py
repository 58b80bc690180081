"""Concurrent records for one partition share one aiokafka batch, one future and one callback.

``producer.send()`` costs per record: two coroutines, a delivery future, a partition check,
an accumulator append and, on acknowledgement, a ``RecordMetadata`` and a future resolution.
:class:`RecordBatcher` instead queues each record with a plain future and, per partition, one
flush task appends everything queued to a :class:`~aiokafka.producer.BatchBuilder` and hands
it over with ``send_batch``; one callback on the batch's acknowledgement answers all of its
records.

No fixed wait (unless ``linger_s`` asks for one, from the first record of an idle partition):
a record waits for the next turn of the event loop at most, or, while the
partition's previous batch still waits for the broker, for that batch to be taken (aiokafka
keeps one request in flight per broker and one queued batch per partition). Records that
arrive meanwhile form the next batch, so batches grow with load, as the producer's own
accumulator lets them (linger 0, see :class:`~receiver.publisher.PublisherOptions`).

Guarantees (:meth:`RecordBatcher.add`):

1. the future resolves to the record's own offset only after Kafka acknowledged the batch
   holding it (acks=all, idempotent: the producer's settings, see
   :func:`parley.kafka.clients.make_producer`);
2. if the batch cannot be handed over or its delivery fails, every record of that batch, and
   only those, gets the failure;
3. records of one partition reach Kafka in the order ``add`` was called: one flush task per
   partition takes them in that order, and aiokafka keeps a partition's batches in order.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from aiokafka import AIOKafkaProducer

__all__ = ["RecordBatcher"]

# (key, value, the future that gets the record's offset)
_Record = tuple[bytes, bytes, "asyncio.Future[int]"]


class _Partition:
    __slots__ = ("flushing", "partition", "records", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.records: list[_Record] = []
        self.flushing = False  # a flush task owns this partition's queue


class RecordBatcher:
    """Queues records per partition of one producer and sends each partition's queue as one
    batch (see the module docstring for the guarantees)."""

    def __init__(self, producer: AIOKafkaProducer, *, linger_s: float = 0.0) -> None:
        self.producer = producer
        self._linger_s = linger_s
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, topic: str, partition: int, key: bytes, value: bytes) -> asyncio.Future[int]:
        """Queue one record; the future gets its offset once Kafka acknowledged it."""
        queue = self._partitions.get((topic, partition))
        if queue is None:
            queue = self._partitions[(topic, partition)] = _Partition(topic, partition)
        delivery: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        queue.records.append((key, value, delivery))
        if not queue.flushing:
            queue.flushing = True
            task = asyncio.create_task(self._flush(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return delivery

    async def _flush(self, queue: _Partition) -> None:
        """Send what is queued as batches, until the queue stays empty."""
        try:
            if self._linger_s:  # PublisherOptions.linger_ms: let a batch gather for that long
                await asyncio.sleep(self._linger_s)
            while queue.records:
                records, queue.records = queue.records, []
                while records:  # more than one batch only when a batch fills up
                    records = await self._send_batch(queue, records)
        finally:
            queue.flushing = False

    async def _send_batch(self, queue: _Partition, records: list[_Record]) -> list[_Record]:
        """Hand over as many of ``records`` as fit one batch; return those that did not."""
        batch = self.producer.create_batch()
        taken = 0
        for key, value, _ in records:
            # The first record always fits (a batch takes one record of any size).
            if batch.append(key=key, value=value, timestamp=None) is None:
                break
            taken += 1
        batch.close()
        futures = [delivery for _, _, delivery in records[:taken]]
        try:
            # Waits until the partition's previous batch was taken by the sender; bounded by
            # the producer's request timeout (the publisher's send timeout).
            acked = await self.producer.send_batch(batch, queue.topic, partition=queue.partition)
        except asyncio.CancelledError:
            _cancel(futures)
            raise
        except Exception as exc:  # noqa: BLE001 - not handed over: each of its records fails
            _fail(futures, exc)
        else:
            acked.add_done_callback(lambda done: _answer(done, futures))
        return records[taken:]

    async def close(self) -> None:
        """Stop the flush tasks; records not yet handed over are cancelled."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._partitions.values():
            _cancel([delivery for _, _, delivery in queue.records])
            queue.records = []


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

"""The live side of a consumer group's dead-letter topic: write dead and parked entries, follow it.

:class:`ParkingDeadLetters` is used by the runner: :meth:`~ParkingDeadLetters.start` folds the
whole topic into a :class:`~consumers.parking.ParkedState` before any event is handled, then a
background task follows the topic so that resolutions written by ``parley dlq NAME
replay|skip`` (from any machine) release parked keys while the group runs. Writes are
``acks=all`` and awaited: an event counts as done (its offset may be committed) only once its
dead-letter or parked copy is durable. Records are in the one format of
:mod:`contracts.dead_letter`; :func:`read_dlq` reads any group's topic, the projector's too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.api import ConsumedEvent
from consumers.parking import ParkedState, dead_entry, parked_entry
from contracts.dead_letter import DeadLetterEntry, decode, encode
from contracts.topics import Topics
from parley.kafka.clients import make_consumer, make_producer
from parley.kafka.topics import ensure_topics
from parley.settings import KafkaSettings

__all__ = ["ParkingDeadLetters", "ensure_dlq_topic", "follow_until", "read_dlq"]

log = logging.getLogger("parley.consumers.dlq")


async def ensure_dlq_topic(k: KafkaSettings, topics: Topics, name: str) -> str:
    """Group ``name``'s dead-letter topic, created first if it is missing."""
    await ensure_topics(k, [topics.dlq_spec(name)])
    return topics.dlq(name)


async def read_dlq(k: KafkaSettings, topic: str, *, keep_values: bool,
                   state: ParkedState | None = None, timeout_s: float = 30.0) -> ParkedState:
    """Fold the whole dead-letter topic, from its start to its current end."""
    state = state or ParkedState()
    # Short fetch waits: the end-offsets request queues behind a fetch long-polling for
    # fetch_max_wait_ms (500 ms by default) on the same connection.
    reader = make_consumer(k, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=10)
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        await follow_until(reader, tp, state, keep_values, timeout_s)
    finally:
        await reader.stop()
    return state


async def follow_until(reader: AIOKafkaConsumer, tp: TopicPartition, state: ParkedState,
                       keep_values: bool, timeout_s: float) -> None:
    """Fold ``tp`` into ``state`` from the reader's position up to the partition's end as
    of now (a reader of one's own: :func:`read_dlq`; the console's long-lived one)."""
    end = (await reader.end_offsets([tp]))[tp]
    async with asyncio.timeout(timeout_s):
        while await reader.position(tp) < end:
            batch = await reader.getmany(tp, timeout_ms=200)
            for rec in batch.get(tp, []):
                state.apply(decode(rec.offset, rec.key, rec.headers, rec.value,
                                   keep_value=keep_values))


class ParkingDeadLetters:
    """Dead-letter writer and parked-key follower of one consumer group: a key with a dead
    entry is parked, its later events written behind it, until ``parley dlq`` resolves it."""

    def __init__(self, k: KafkaSettings, topics: Topics, name: str,
                 secrets: Sequence[str] = ()) -> None:
        self._k = k
        self._topics = topics
        self.name = name
        self.topic = topics.dlq(name)
        self._tp = TopicPartition(self.topic, 0)
        self._secrets = tuple(secrets)
        self.state = ParkedState()
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._follow: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._next = 0  # the follower's next DLQ offset

    async def start(self) -> None:
        await ensure_dlq_topic(self._k, self._topics, self.name)
        self._producer = make_producer(self._k, max_request_size=2 << 20)
        await self._producer.start()
        self._reader = make_consumer(self._k, group_id=None, enable_auto_commit=False)
        await self._reader.start()
        self._reader.assign([self._tp])
        await self._reader.seek_to_beginning(self._tp)
        await follow_until(self._reader, self._tp, self.state, False, 60.0)
        self._next = await self._reader.position(self._tp)
        self._follow = asyncio.create_task(self._follow_forever(), name=f"dlq-follow-{self.name}")

    async def stop(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow
        if self._reader is not None:
            await self._reader.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _follow_forever(self) -> None:
        assert self._reader is not None
        while True:
            try:
                batch = await self._reader.getmany(self._tp, timeout_ms=500)
            except Exception:
                log.warning("dead-letter follower failed; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            for rec in batch.get(self._tp, []):
                self.state.apply(decode(rec.offset, rec.key, rec.headers))
            self._next = await self._reader.position(self._tp)
            async with self._progress:
                self._progress.notify_all()

    async def catch_up(self, timeout_s: float = 30.0) -> None:
        """Wait until every dead-letter record written so far (by anyone) is folded in.

        Called on partition assignment: a partition's previous owner finished its dead-letter
        writes before giving it up, so after this its parked keys are known here too.
        """
        assert self._reader is not None
        end = (await self._reader.end_offsets([self._tp]))[self._tp]
        async with asyncio.timeout(timeout_s), self._progress:
            await self._progress.wait_for(lambda: self._position() >= end)

    def _position(self) -> int:
        return self._next

    def is_parked(self, event: ConsumedEvent) -> bool:
        return bool(self.state) and self.state.is_parked(event.topic, event.key or "")

    async def dead_letter(self, event: ConsumedEvent, exc: BaseException, attempts: int,
                          retriable: bool, first_failed_at: datetime | None = None) -> None:
        """Write ``event`` as a dead entry; its key is parked from now on."""
        now = datetime.now(UTC)
        await self._write(event, dead_entry(self.name, event, exc, attempts=attempts,
                                            retriable=retriable,
                                            first_failed_at=first_failed_at or now, at=now,
                                            secrets=self._secrets))

    async def park(self, event: ConsumedEvent) -> None:
        """Write ``event`` as a parked entry behind its key's dead entry."""
        await self._write(event, parked_entry(self.name, event, datetime.now(UTC)))

    async def _write(self, event: ConsumedEvent, entry: DeadLetterEntry) -> None:
        assert self._producer is not None
        key = event.key.encode() if event.key is not None else None
        meta = await self._producer.send_and_wait(self.topic, event.value, key=key,
                                                  headers=encode(entry))
        self.state.add(msgspec.structs.replace(entry, dlq_offset=meta.offset))

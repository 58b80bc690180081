"""Dead letters: a record the projector cannot decode or apply is parked, not retried forever.

The record is logged with its coordinates, counted, produced unchanged (same key, same value)
to ``topics.dlq("projector")`` with headers naming the error and where it came from, and then
skipped, so one bad record never stops the projection. The headers are the one dead-letter
format of every group (:mod:`contracts.dead_letter`), so ``parley dlq projector list|skip``
reads them as it reads a consumer's. Unlike a consumer group, the projector never parks a key:
a fold is order-independent, so the key's later records are folded as usual.

Delivery: the runner awaits the dead letter's acknowledgement (acks=all) *before* it commits
the batch to the store. A crash in between re-reads the batch and dead-letters the record again,
so dead letters are at-least-once; their ``parley-origin-*`` headers identify duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from aiokafka import AIOKafkaProducer

from contracts.dead_letter import DEAD, MAX_ERROR_CHARS, DeadLetterEntry, encode
from contracts.position import Position
from contracts.topics import PROJECTOR, Topics
from parley.settings import KafkaSettings
from projector.metrics import ProjectorMetrics

__all__ = ["DeadLetter", "DeadLetters", "KafkaDeadLetters", "Stage"]

log = logging.getLogger("parley.projector.dlq")

#: Where the projector gave up on a record: its letter's ``reason`` (contracts.dead_letter).
Stage = Literal["decode", "apply"]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeadLetter:
    """One skipped record: its coordinates, bytes, and what went wrong."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    stage: Stage
    error: str  # exception class name, e.g. "ContractError"
    detail: str  # str(exc), truncated; contract errors never echo input values

    def entry(self, projection: str, at: datetime) -> DeadLetterEntry:
        """This letter in the dead-letter format of every group (one attempt: a fold that
        fails once fails again)."""
        return DeadLetterEntry(
            kind=DEAD, group=PROJECTOR, origin=Position(self.topic, self.partition, self.offset),
            key=(self.key or b"").decode(errors="replace"), reason=self.stage,
            origin_timestamp_ms=self.timestamp_ms, error_type=self.error, error=self.detail,
            retriable=False, attempts=1, first_failed_at=at, at=at, projection=projection)


class DeadLetters(Protocol):
    """Where the runner puts the records it skips. ``send`` returns once they are durable."""

    async def send(self, letters: list[DeadLetter], projection: str) -> None: ...


class KafkaDeadLetters:
    """Dead letters produced to ``<prefix>.dlq.projector`` with an idempotent acks=all producer."""

    def __init__(self, producer: AIOKafkaProducer, topics: Topics,
                 metrics: ProjectorMetrics | None = None) -> None:
        self._producer = producer
        self.topic = topics.dlq(PROJECTOR)
        self._metrics = metrics

    @staticmethod
    async def ensure_topic(kafka: KafkaSettings, topics: Topics) -> None:
        """Create the dead-letter topic if it is missing (``parley topics apply`` creates it
        beforehand, so the projector needs no permission to create topics)."""
        from parley.kafka.topics import ensure_topics

        await ensure_topics(kafka, [topics.dlq_spec(PROJECTOR)])

    async def send(self, letters: list[DeadLetter], projection: str) -> None:
        futures = []
        now = datetime.now(UTC)
        for letter in letters:
            # Coordinates and the error only: the value may hold personal data.
            log.warning("dead-lettered %s:%d:%d (%s: %s)", letter.topic, letter.partition,
                        letter.offset, letter.error, letter.detail[:MAX_ERROR_CHARS],
                        extra={"topic": letter.topic, "partition": letter.partition,
                               "offset": letter.offset, "stage": letter.stage,
                               "error": letter.error})
            futures.append(await self._producer.send(
                self.topic, value=letter.value, key=letter.key,
                headers=encode(letter.entry(projection, now))))
        for fut in futures:
            await fut  # acks=all: durable before the batch that skips it is committed
        if self._metrics is not None:
            for letter in letters:
                self._metrics.dead_letters.labels(letter.stage, letter.error).inc()

"""Dead letters: a record the projector cannot decode or apply is parked, not retried forever.

The record is logged with its coordinates, counted, produced unchanged (same key, same value)
to ``topics.dlq("projector")`` with headers naming the error and where it came from, and then
skipped, so one bad record never stops the projection.

Delivery: the runner awaits the dead letter's acknowledgement (acks=all) *before* it commits
the batch to the store. A crash in between re-reads the batch and dead-letters the record again,
so dead letters are at-least-once; ``parley.origin.*`` headers identify duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from aiokafka import AIOKafkaProducer

from contracts.topics import Topics
from parley.settings import KafkaSettings
from projector.metrics import ProjectorMetrics

__all__ = ["DLQ_GROUP", "DeadLetter", "DeadLetters", "KafkaDeadLetters", "Stage"]

log = logging.getLogger("parley.projector.dlq")

DLQ_GROUP = "projector"
Stage = Literal["decode", "apply"]
_MAX_DETAIL = 500  # header bytes: enough to act on, short enough to never bloat the record


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

    def headers(self, projection: str) -> list[tuple[str, bytes]]:
        return [
            ("parley.error", self.error.encode()),
            ("parley.error.stage", self.stage.encode()),
            ("parley.error.detail", self.detail[:_MAX_DETAIL].encode("utf-8", "replace")),
            ("parley.origin.topic", self.topic.encode()),
            ("parley.origin.partition", str(self.partition).encode()),
            ("parley.origin.offset", str(self.offset).encode()),
            ("parley.origin.timestamp_ms", str(self.timestamp_ms).encode()),
            ("parley.consumer", DLQ_GROUP.encode()),
            ("parley.projection", projection.encode()),
        ]


class DeadLetters(Protocol):
    """Where the runner parks bad records. ``send`` returns once the letter is durable."""

    async def send(self, letters: list[DeadLetter], projection: str) -> None: ...


class KafkaDeadLetters:
    """Dead letters produced to ``<prefix>.dlq.projector`` with an idempotent acks=all producer."""

    def __init__(self, producer: AIOKafkaProducer, topics: Topics,
                 metrics: ProjectorMetrics | None = None) -> None:
        self._producer = producer
        self.topic = topics.dlq(DLQ_GROUP)
        self._metrics = metrics

    @staticmethod
    async def ensure_topic(kafka: KafkaSettings, topics: Topics) -> None:
        """Create the dead-letter topic if it is missing (``parley topics apply`` creates it
        beforehand, so the projector needs no permission to create topics)."""
        from parley.kafka.topics import ensure_topics

        await ensure_topics(kafka, [topics.dlq_spec(DLQ_GROUP)])

    async def send(self, letters: list[DeadLetter], projection: str) -> None:
        futures = []
        for letter in letters:
            # Coordinates and the error only: the value may hold personal data.
            log.warning("dead-lettered %s:%d:%d (%s: %s)", letter.topic, letter.partition,
                        letter.offset, letter.error, letter.detail[:_MAX_DETAIL],
                        extra={"topic": letter.topic, "partition": letter.partition,
                               "offset": letter.offset, "stage": letter.stage,
                               "error": letter.error})
            futures.append(await self._producer.send(
                self.topic, value=letter.value, key=letter.key,
                headers=letter.headers(projection)))
        for fut in futures:
            await fut  # acks=all: durable before the batch that skips it is committed
        if self._metrics is not None:
            for letter in letters:
                self._metrics.dead_letters.labels(letter.stage, letter.error).inc()

"""The erasure ledger on Kafka: who processed which erasure, and when (docs/privacy.md).

The ledger is the topic ``<prefix>.erasures`` (one partition, kept for ever; ids and times
only, never personal data). ``parley visitors forget`` appends an
:class:`~contracts.forgotten.ErasureRequest`; the projector, after the store commit that
erased an aggregate, and the consumer runtime, after a group handled a record announcing an
erasure and before committing its offset, append an
:class:`~contracts.forgotten.ErasureProcessed`. A crash between the effect and the entry
leaves the entry out (the ledger never claims what did not happen); forgetting the subject
again repeats the erasure and its entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, TopicPartition

from contracts.forgotten import (
    ErasureProcessed,
    LedgerEntry,
    decode_ledger_entry,
    encode_ledger_entry,
)
from contracts.topics import Topics
from parley.kafka.clients import make_consumer, make_producer
from parley.kafka.topics import ensure_topics
from parley.settings import KafkaSettings

__all__ = ["LedgerWriter", "processed", "read_ledger"]


def processed(erasures: Sequence[tuple[str, str, str]], group: str, *,
              copy: str | None = None) -> list[ErasureProcessed]:
    """Entries saying ``group`` (and ``copy``) processed each ``(erasure id, kind, id)`` now."""
    now = datetime.now(UTC)
    return [ErasureProcessed(erasure_id=erasure, group=group, aggregate=f"{kind}:{id}", at=now,
                             copy=copy) for erasure, kind, id in erasures]


class LedgerWriter:
    """Appends entries to the ledger (acks=all, each append awaited). Started lazily, on the
    first append: a process that never sees an erasure never opens a producer for it."""

    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self._k = kafka
        self._topics = topics
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def append(self, entries: Sequence[LedgerEntry]) -> None:
        """Append ``entries`` and wait until Kafka acknowledged every one."""
        if not entries:
            return
        async with self._lock:
            if self._producer is None:
                await ensure_topics(self._k, [self._topics.erasures_spec()])
                producer = make_producer(self._k)
                await producer.start()
                self._producer = producer
        sent = [await self._producer.send(self._topics.erasures, encode_ledger_entry(e),
                                          key=e.erasure_id.encode()) for e in entries]
        await asyncio.gather(*sent)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


async def read_ledger(kafka: KafkaSettings, topics: Topics, *, timeout_s: float = 30.0
                      ) -> list[LedgerEntry]:
    """Every entry of the ledger, oldest first (empty when no forget ever ran)."""
    await ensure_topics(kafka, [topics.erasures_spec()])
    reader = make_consumer(kafka, group_id=None, enable_auto_commit=False)
    await reader.start()
    out: list[LedgerEntry] = []
    try:
        tp = TopicPartition(topics.erasures, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        end = (await reader.end_offsets([tp]))[tp]
        async with asyncio.timeout(timeout_s):
            while await reader.position(tp) < end:
                for rec in (await reader.getmany(tp, timeout_ms=200)).get(tp, []):
                    entry = decode_ledger_entry(rec.value)
                    if entry is not None:
                        out.append(entry)
    finally:
        await reader.stop()
    return out

"""``parley dlq NAME list|replay|skip``: operate on a group's dead letters and parked keys.

``list`` and ``skip`` serve every group, the projector included: they need only its
dead-letter topic (:mod:`contracts.dead_letter` reads every format Parley wrote).

``replay`` runs the consumer's own handler (in the CLI's process) on a key's unresolved
entries in dead-letter order, the dead event first, and after each success writes a
``resolved`` record up to it, so an interrupted replay resumes where it stopped and
redelivers at most one event (handlers are idempotent). The running group sees the
``resolved`` records through its dead-letter follower and releases the key once nothing of it
is left unresolved. Events the group parks while a replay runs are picked up by the next
round; ``replay`` repeats until a round finds nothing new (bounded).

``skip`` resolves entries without handling them: the events are given up (they stay in the
dead-letter topic for the record).
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import msgspec

from consumers.api import ConsumedEvent, Consumer
from consumers.dlq import ensure_dlq_topic, read_dlq
from consumers.errors import is_retriable
from consumers.parking import ParkKey
from contracts.dead_letter import DeadLetterEntry, Resolution, encode
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.settings import KafkaSettings

__all__ = ["ReplayReport", "dlq_entries", "dlq_replay", "dlq_skip"]


class ReplayReport(msgspec.Struct, kw_only=True):
    replayed: int = 0
    failed: list[tuple[DeadLetterEntry, str]] = msgspec.field(default_factory=list)
    rounds: int = 0


def _select(entries: list[DeadLetterEntry], key: str | None, topic: str | None,
            upto: int | None = None) -> list[DeadLetterEntry]:
    return [e for e in entries
            if (key is None or e.key == key) and (topic is None or e.origin.topic == topic)
            and (upto is None or e.dlq_offset <= upto)]


async def dlq_entries(k: KafkaSettings, topics: Topics, name: str, *, key: str | None = None,
                      topic: str | None = None, values: bool = False,
                      upto: int | None = None) -> list[DeadLetterEntry]:
    """Unresolved entries (dead and parked) of group ``name``, in dead-letter order; with
    ``upto``, only those at dead-letter offsets up to it (what an operator was shown)."""
    dlq = await ensure_dlq_topic(k, topics, name)
    return _select((await read_dlq(k, dlq, keep_values=values)).entries(), key, topic, upto)


async def _resolve(k: KafkaSettings, topics: Topics, name: str,
                   marks: list[tuple[ParkKey, int]], action: str) -> None:
    producer = make_producer(k)
    await producer.start()
    try:
        for (topic, key), upto in marks:
            resolution = Resolution(group=name, topic=topic, key=key, action=action, upto=upto,
                                    at=datetime.now(UTC))
            await producer.send_and_wait(topics.dlq(name), b"", key=key.encode(),
                                         headers=encode(resolution))
    finally:
        await producer.stop()


async def dlq_skip(k: KafkaSettings, topics: Topics, name: str, *, key: str | None = None,
                   topic: str | None = None, upto: int | None = None) -> int:
    """Resolve (give up) the selected entries; returns how many. With ``upto`` only entries
    at dead-letter offsets up to it: doing it again resolves nothing more."""
    entries = await dlq_entries(k, topics, name, key=key, topic=topic, upto=upto)
    last: dict[ParkKey, int] = {}
    for e in entries:
        last[(e.origin.topic, e.key)] = e.dlq_offset
    await _resolve(k, topics, name, sorted(last.items()), "skip")
    return len(entries)


async def dlq_replay(k: KafkaSettings, topics: Topics, consumer: Consumer, *,
                     key: str | None = None, topic: str | None = None,
                     max_rounds: int = 5, upto: int | None = None) -> ReplayReport:
    """Handle the selected entries again, key by key in order (see module doc). With
    ``upto`` only entries at dead-letter offsets up to it (rounds pick up nothing newer)."""
    report = ReplayReport()
    if consumer.start is not None:
        await consumer.start()
    try:
        failed_keys: set[ParkKey] = set()
        for _ in range(max_rounds):
            entries = [e for e in await dlq_entries(k, topics, consumer.name, key=key,
                                                     topic=topic, values=True, upto=upto)
                       if (e.origin.topic, e.key) not in failed_keys]
            if not entries:
                break
            report.rounds += 1
            for e in entries:
                pk = (e.origin.topic, e.key)
                if pk in failed_keys:
                    continue  # an earlier entry of this key failed: keep the rest parked
                error = await _handle(consumer, e)
                if error is not None:
                    failed_keys.add(pk)
                    report.failed.append((e, error))
                    continue
                await _resolve(k, topics, consumer.name, [(pk, e.dlq_offset)], "replay")
                report.replayed += 1
    finally:
        if consumer.stop is not None:
            await consumer.stop()
    return report


async def _handle(consumer: Consumer, e: DeadLetterEntry) -> str | None:
    ev = ConsumedEvent.of(topic=e.origin.topic, partition=e.origin.partition, offset=e.origin.offset,
                       key=e.key or None, value=e.value or b"")
    rng = random.Random()
    attempt = 0
    while True:
        attempt += 1
        try:
            if consumer.filtered and not consumer.wants(ev):
                return None
            if consumer.handle is not None:
                await consumer.handle(ev)
            elif consumer.handle_batch is not None:
                await consumer.handle_batch((ev,))
            return None
        except Exception as exc:  # noqa: BLE001 - reported to the operator
            if not is_retriable(exc) or attempt >= consumer.retry.max_attempts:
                return f"{type(exc).__name__}: {exc}"[:500]
            await asyncio.sleep(consumer.retry.delay_s(attempt, rng))

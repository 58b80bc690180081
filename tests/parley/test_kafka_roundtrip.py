"""The aiokafka features Parley relies on, against the pinned real Kafka broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.topics import Topics
from parley.kafka.clients import make_consumer, make_producer
from parley.settings import KafkaSettings

pytestmark = pytest.mark.kafka


async def _drain(consumer, want: int, timeout_s: float = 30.0) -> list[ConsumerRecord]:  # type: ignore[no-untyped-def]
    got: list[ConsumerRecord] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < want:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
    return got


async def test_produce_consume_commit_restart_resumes(kafka_settings: KafkaSettings,
                                                      topics: Topics, unique: str) -> None:
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        metas = [await producer.send_and_wait(topics.chat, f"v{i}".encode(), key=b"chat-1")
                 for i in range(10)]
    finally:
        await producer.stop()
    # One key, one partition, consecutive offsets: the order Parley's fold relies on.
    assert len({m.partition for m in metas}) == 1
    assert [m.offset for m in metas] == list(range(metas[0].offset, metas[0].offset + 10))

    group = f"{unique}-g"
    first = make_consumer(kafka_settings, topics.chat, group_id=group)
    await first.start()
    try:
        records = await _drain(first, 4)
        seen = records[:4]
        tp = TopicPartition(topics.chat, seen[-1].partition)
        await first.commit({tp: seen[-1].offset + 1})
    finally:
        await first.stop()

    second = make_consumer(kafka_settings, topics.chat, group_id=group)
    await second.start()
    try:
        rest = await _drain(second, 6)
        assert [r.value for r in rest[:6]] == [f"v{i}".encode() for i in range(4, 10)]
        assert await second.committed(tp) == seen[-1].offset + 1
        # seek: re-read from the start of the partition without touching the committed offset
        second.seek(tp, metas[0].offset)
        again = await _drain(second, 1)
        assert again[0].value == b"v0"
    finally:
        await second.stop()


async def test_transactions_are_atomic_for_read_committed(kafka_settings: KafkaSettings,
                                                          topics: Topics, unique: str) -> None:
    producer = make_producer(kafka_settings, transactional_id=f"{unique}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topics.agent, b"committed", key=b"a")
        await producer.begin_transaction()
        await producer.send(topics.agent, b"aborted", key=b"a")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topics.agent, b"after", key=b"a")
    finally:
        await producer.stop()
    consumer = make_consumer(kafka_settings, topics.agent, group_id=f"{unique}-g")
    await consumer.start()
    try:
        values = [r.value for r in await _drain(consumer, 2)]
    finally:
        await consumer.stop()
    assert values == [b"committed", b"after"]

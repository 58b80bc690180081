"""Concurrent webhooks for one partition share one Kafka batch (receiver/batcher.py), on a
real broker: each still gets its own record's position, in the order they were queued, and
a batch the broker refuses answers 503 to each of its requests and to nothing else, with
nothing of it written."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from types import ModuleType

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.envelope import decode_envelope, encode_envelope
from contracts.ingest import parse_webhook
from contracts.position import Position
from contracts.topics import Topics
from parley.kafka.clients import make_admin, make_producer
from parley.settings import KafkaSettings
from receiver.batcher import RecordBatcher
from receiver.partitioner import partition_for
from receiver.publisher import PublisherOptions

pytestmark = pytest.mark.kafka


def _chats_on_two_partitions(partitions: int) -> tuple[str, str]:
    """Two chat ids whose records land on different partitions."""
    first = str(uuid.uuid4())
    while True:
        other = str(uuid.uuid4())
        if partition_for(other.encode(), partitions) != partition_for(first.encode(), partitions):
            return first, other


async def test_records_queued_together_share_a_batch_and_each_gets_its_own_offset(
        rx: ModuleType, kafka_settings: KafkaSettings, topics: Topics) -> None:
    topic = topics.for_aggregate("chat")
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        batcher = RecordBatcher(producer)
        values = [f"record-{i}".encode() for i in range(5)]
        # Queued in one turn of the event loop: one batch, so consecutive offsets.
        deliveries = [batcher.add(topic, 1, b"one-key", v) for v in values]
        async with asyncio.timeout(30):
            offsets = await asyncio.gather(*deliveries)
        assert offsets == list(range(offsets[0], offsets[0] + 5))
        await batcher.close()
    finally:
        await producer.stop()
    stored = {(r.partition, r.offset): r.value for r in await rx.read_all(kafka_settings, topics)}
    assert [stored[(1, o)] for o in offsets] == values  # each offset holds its own record


async def test_bursts_keep_each_partitions_order_and_each_record_at_its_offset(
        rx: ModuleType, kafka_settings: KafkaSettings, topics: Topics) -> None:
    """Records added in random bursts (some join a batch the sender has not taken yet, some
    start the next one, small batches fill up): per partition, offsets follow the order of
    ``add``, and each offset holds its own record."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    topic = topics.for_aggregate("chat")
    # Small batches (2 KiB: about 15 of these records), so full batches happen too.
    producer = make_producer(kafka_settings, max_batch_size=2048, linger_ms=0)
    await producer.start()
    added: list[tuple[int, bytes, asyncio.Future[int]]] = []
    try:
        batcher = RecordBatcher(producer)
        for burst in range(40):
            for i in range(rng.randrange(1, 25)):
                partition = rng.randrange(3)
                value = f"burst-{burst}-record-{i}-".encode() + b"x" * rng.randrange(40, 160)
                added.append((partition, value, batcher.add(topic, partition, b"k", value)))
                if rng.random() < 0.2:  # a turn of the loop: the sender may take a batch
                    await asyncio.sleep(0)
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)  # let the flush tasks and the sender run in between
        async with asyncio.timeout(60):
            offsets = await asyncio.gather(*(delivery for _, _, delivery in added))
        await batcher.close()
    finally:
        await producer.stop()
    stored = {(r.partition, r.offset): r.value for r in await rx.read_all(kafka_settings, topics)}
    for partition in range(3):
        mine = [(o, v) for (p, v, _), o in zip(added, offsets, strict=True) if p == partition]
        assert [o for o, _ in mine] == sorted(o for o, _ in mine), f"order (seed {seed})"
        assert all(stored[(partition, o)] == v for o, v in mine), f"offsets (seed {seed})"
    assert len(stored) == len(added), f"seed {seed}"


async def test_a_refused_batch_answers_503_to_each_of_its_requests_and_nothing_else(
        rx: ModuleType, make_receiver: object, kafka_settings: KafkaSettings, topics: Topics,
        credentials: object) -> None:
    refused_chat, other_chat = _chats_on_two_partitions(kafka_settings.partitions)

    def body(chat: str) -> bytes:
        return rx.with_natterly_token(rx.natterly_body(chat), rx.NATTERLY_TOKENS[0])  # type: ignore[no-any-return]

    envelope = parse_webhook("natterly", "acme", body(refused_chat), received_at=datetime.now(UTC))
    topic = topics.for_aggregate(envelope.aggregate)
    record_bytes = len(encode_envelope(envelope))
    # The broker takes a batch of one or two of these records, and refuses one of five
    # (MESSAGE_TOO_LARGE, not retriable). AlterConfigs replaces the topic's overrides: fine
    # for this test's own topic.
    admin = make_admin(kafka_settings)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, topic,
            configs={"max.message.bytes": str(2 * record_bytes + 200)})])
    finally:
        await admin.close()
    # Uncompressed, so sizes are the records' own; a long linger, so the concurrent
    # requests of one partition surely share one batch.
    client = await make_receiver(  # type: ignore[operator]
        rx.receiver_settings(kafka_settings, credentials),
        PublisherOptions(linger_ms=1000, compression="none"))
    warm = await client.post("/webhooks/acme", headers=rx.JSON, data=body(other_chat))
    assert warm.status == 200  # producer connected, topic metadata known

    async def post(chat: str) -> tuple[int, dict[str, str], str | None]:
        resp = await client.post("/webhooks/acme", headers=rx.JSON, data=body(chat))
        return resp.status, await resp.json(), resp.headers.get("Retry-After")

    answers = await asyncio.gather(*(post(refused_chat) for _ in range(5)), post(other_chat))
    refused, other = answers[:5], answers[5]
    assert [(status, a["error"], retry) for status, a, retry in refused] == [
        (503, "kafka_unavailable", str(PublisherOptions().retry_after_s))] * 5
    assert other[0] == 200, other  # another partition's batch: unaffected

    stored = {Position(r.topic, r.partition, r.offset): decode_envelope(r.value).event_id
              for r in await rx.read_all(kafka_settings, topics)}
    accepted = {Position.parse((await warm.json())["position"]), Position.parse(other[1]["position"])}
    assert set(stored) == accepted  # nothing of the refused batch was written
    assert stored[Position.parse(other[1]["position"])] == other[1]["event_id"]

"""Publisher.publish's waiting, without a broker: an acknowledgement is the only success, a
missing one is a 503 at the deadline, and a cancelled request stays cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import NotLeaderForPartitionError
from aiokafka.structs import RecordMetadata, TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from contracts.position import Position
from parley.settings import KafkaSettings
from receiver.errors import KafkaUnavailable
from receiver.metrics import ReceiverMetrics
from receiver.publisher import Publisher, PublisherOptions

SEND_TIMEOUT_S = 0.3


class FakeProducer:
    """Stands in for AIOKafkaProducer: ``send`` hands back a future the test resolves."""

    def __init__(self) -> None:
        self.client = SimpleNamespace(cluster=SimpleNamespace(partitions_for_topic=lambda t: {0}))
        self.deliveries: list[asyncio.Future[Any]] = []
        self.handed_over = asyncio.Event()

    async def send(self, topic: str, value: bytes, *, key: bytes, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(fut)
        self.handed_over.set()
        return fut


@pytest.fixture
async def publisher() -> AsyncIterator[tuple[Publisher, FakeProducer, CollectorRegistry]]:
    registry = CollectorRegistry()
    pub = Publisher(KafkaSettings(bootstrap="127.0.0.1:1"), ReceiverMetrics(registry),
                    PublisherOptions(send_timeout_s=SEND_TIMEOUT_S, retry_after_s=7))
    fake = FakeProducer()
    pub._producer = fake  # type: ignore[assignment]
    pub._sweeper = asyncio.create_task(pub._expire())  # what start() runs besides the keeper
    yield pub, fake, registry
    pub._sweeper.cancel()


async def _handed_over(fake: FakeProducer) -> None:
    """Until the record reached the producer (publish runs in its own task)."""
    async with asyncio.timeout(2):
        await fake.handed_over.wait()


def _acked(offset: int) -> RecordMetadata:
    return RecordMetadata("t", 2, TopicPartition("t", 2), offset, -1, 0, 0)


async def test_returns_the_position_kafka_acknowledged(
        publisher: tuple[Publisher, FakeProducer, CollectorRegistry]) -> None:
    pub, fake, registry = publisher
    task = asyncio.create_task(pub.publish("t", b"k", b"v"))
    await _handed_over(fake)
    assert not task.done()  # nothing before the acknowledgement
    fake.deliveries[0].set_result(_acked(41))
    assert await task == Position("t", 2, 41)
    assert b'parley_receiver_produce_seconds_count{topic="t"} 1.0' in generate_latest(registry)


async def test_no_acknowledgement_by_the_deadline_is_unavailable_and_a_late_one_is_harmless(
        publisher: tuple[Publisher, FakeProducer, CollectorRegistry]) -> None:
    pub, fake, registry = publisher
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable) as caught:
        async with asyncio.timeout(SEND_TIMEOUT_S + 2):  # not answered at all: fail, not hang
            await pub.publish("t", b"k", b"v")
    waited = time.monotonic() - started
    assert SEND_TIMEOUT_S <= waited < SEND_TIMEOUT_S + 0.5
    assert caught.value.retry_after_s == 7
    delivery = fake.deliveries[0]
    assert delivery.done()  # resolved by the sweeper; aiokafka skips resolved futures
    assert b'parley_receiver_kafka_errors_total{kind="timeout"} 1.0' in generate_latest(registry)


async def test_a_failed_delivery_is_unavailable(
        publisher: tuple[Publisher, FakeProducer, CollectorRegistry]) -> None:
    pub, fake, registry = publisher
    task = asyncio.create_task(pub.publish("t", b"k", b"v"))
    await _handed_over(fake)
    fake.deliveries[0].set_exception(NotLeaderForPartitionError())
    with pytest.raises(KafkaUnavailable):
        await task
    assert (b'parley_receiver_kafka_errors_total{kind="NotLeaderForPartitionError"} 1.0'
            in generate_latest(registry))


async def test_a_delivery_cancelled_by_the_producer_is_unavailable_not_a_cancelled_request(
        publisher: tuple[Publisher, FakeProducer, CollectorRegistry]) -> None:
    pub, fake, _ = publisher
    task = asyncio.create_task(pub.publish("t", b"k", b"v"))
    await _handed_over(fake)
    fake.deliveries[0].cancel()
    with pytest.raises(KafkaUnavailable):
        await task


async def test_cancelling_the_request_cancels_it(
        publisher: tuple[Publisher, FakeProducer, CollectorRegistry]) -> None:
    pub, fake, _ = publisher
    task = asyncio.create_task(pub.publish("t", b"k", b"v"))
    await _handed_over(fake)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_the_role_takes_its_ack_deadline_and_retry_after_from_the_settings(tmp_path: Any) -> None:
    from parley.runtime import Runtime
    from parley.settings import load_settings
    from receiver.role import ReceiverRole

    cfg = tmp_path / "parley.toml"
    cfg.write_text('[kafka]\nbootstrap = "127.0.0.1:1"\n[http]\nack_timeout_s = 2.5\n'
                   'retry_after_s = 9\n[sources.a]\nprovider = "natterly"\n'
                   'auth_tokens = ["nat-token-7f3a9c0e5b21"]\n')
    role = ReceiverRole(Runtime.from_settings(load_settings(cfg, env={})))
    assert (role._options.send_timeout_s, role._options.retry_after_s) == (2.5, 9)
    defaults = ReceiverRole(Runtime.from_settings(load_settings(cfg, env={
        "PARLEY_HTTP__ACK_TIMEOUT_S": "5", "PARLEY_HTTP__RETRY_AFTER_S": "5"})))
    assert (defaults._options.send_timeout_s, defaults._options.retry_after_s) == (5.0, 5)

"""A broker that stops mid-traffic: 503s with Retry-After in bounded time, /readyz not ready,
then recovery without restarting the app, and every acknowledged event still in Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient

from contracts.envelope import decode_envelope
from contracts.position import Position
from contracts.topics import Topics
from parley.kafka.launcher import LocalKafka
from parley.kafka.topics import apply_topics
from parley.settings import KafkaSettings
from receiver.publisher import PublisherOptions

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SEND_TIMEOUT_S = 2.0


async def test_broker_outage_gives_503_then_recovers_without_losing_acknowledged_events(
        rx: ModuleType, private_kafka: Callable[..., LocalKafka],
        make_receiver: Callable[..., TestClient], unique: str) -> None:
    # (private_kafka is requested first so that it is torn down last, after the app.)
    kafka = await asyncio.to_thread(private_kafka, 1)
    state = kafka.load_state()
    assert state is not None
    node = state.nodes[0].node_id
    settings_k = KafkaSettings(bootstrap=state.bootstrap, topic_prefix=unique, partitions=3)
    topics = Topics(prefix=unique)
    await apply_topics(settings_k, topics.specs(3))
    client: TestClient = await make_receiver(  # type: ignore[type-arg]
        rx.receiver_settings(settings_k, rx.Credentials(natterly=rx.NATTERLY_TOKENS)),
        PublisherOptions(send_timeout_s=SEND_TIMEOUT_S, retry_after_s=1))

    acknowledged: dict[str, Position] = {}  # event_id -> position, for every 200
    unavailable: list[tuple[float, str | None]] = []  # (seconds to answer, Retry-After)

    async def one() -> int:
        body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
        started = time.monotonic()
        resp = await client.post("/webhooks/acme", data=body, headers=rx.JSON)
        answer = await resp.json()
        if resp.status == 200:
            acknowledged[answer["event_id"]] = Position.parse(answer["position"])
        else:
            assert resp.status == 503 and answer["error"] == "kafka_unavailable", answer
            unavailable.append((time.monotonic() - started, resp.headers.get("Retry-After")))
        return resp.status

    stop_traffic = asyncio.Event()

    async def traffic() -> None:  # steady load across the outage: 4 senders
        async def sender() -> None:
            while not stop_traffic.is_set():
                await one()
                await asyncio.sleep(0.02)
        await asyncio.gather(*(sender() for _ in range(4)))

    load = asyncio.create_task(traffic())
    try:
        await rx.eventually(lambda: len(acknowledged) >= 20, 30)  # new topics: leaders
        await asyncio.to_thread(kafka.stop_node, node)

        # Down: answers are 503 + Retry-After, each well within ChatShipper's 20 s.
        await rx.eventually(lambda: len(unavailable) >= 4, 30)
        assert all(seconds < SEND_TIMEOUT_S + 1.5 for seconds, _ in unavailable), unavailable
        assert all(retry_after == "1" for _, retry_after in unavailable)
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "kafka-producer" in (await ready.json())["problems"]

        await asyncio.to_thread(kafka.start_node, node)
        # Back: the same app, never restarted, acknowledges again.
        count_at_restart = len(acknowledged)
        await rx.eventually(lambda: len(acknowledged) >= count_at_restart + 10, 60)

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status == 200

        await rx.eventually(ready_again, 30)
    finally:
        stop_traffic.set()
        await load  # re-raises what went wrong in a sender (an unexpected status)

    # Nothing acknowledged was lost: each 200's position holds that very event.
    records = {Position(r.topic, r.partition, r.offset): r
               for r in await rx.read_all(settings_k, topics)}
    for event_id, position in acknowledged.items():
        assert position in records, f"acknowledged {event_id} at {position} is missing"
        assert decode_envelope(records[position].value).event_id == event_id
    text = await (await client.get("/metrics")).text()
    assert "parley_receiver_kafka_errors_total" in text


async def test_receiver_started_while_kafka_is_down_serves_503_then_ingests_once_it_is_up(
        rx: ModuleType, private_kafka: Callable[..., LocalKafka],
        make_receiver: Callable[..., TestClient], unique: str) -> None:
    kafka = await asyncio.to_thread(private_kafka, 1)
    state = kafka.load_state()
    assert state is not None
    settings_k = KafkaSettings(bootstrap=state.bootstrap, topic_prefix=unique, partitions=3)
    topics = Topics(prefix=unique)
    await apply_topics(settings_k, topics.specs(3))
    await asyncio.to_thread(kafka.stop_node, state.nodes[0].node_id)

    client: TestClient = await make_receiver(  # type: ignore[type-arg]
        rx.receiver_settings(settings_k, rx.Credentials(natterly=rx.NATTERLY_TOKENS)),
        PublisherOptions(send_timeout_s=SEND_TIMEOUT_S, retry_after_s=1))
    body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
    resp = await client.post("/webhooks/acme", data=body, headers=rx.JSON)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    ready = await client.get("/readyz")
    assert ready.status == 503 and "kafka-producer" in (await ready.json())["problems"]

    await asyncio.to_thread(kafka.start_node, state.nodes[0].node_id)

    async def accepted() -> bool:
        return (await client.post("/webhooks/acme", data=body, headers=rx.JSON)).status == 200

    await rx.eventually(accepted, 60, interval_s=0.5)
    assert (await client.get("/readyz")).status == 200

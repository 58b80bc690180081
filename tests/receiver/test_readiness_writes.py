"""``/readyz`` of a receiver whose broker answers but refuses its writes.

Kafka reachable is not Kafka writable: a topic that refuses every record (here its
``max.message.bytes`` made too small; in production, too few in-sync replicas for acks=all,
or a denied write) still answers metadata requests. Every
webhook then gets 503, so the receiver must say it is not ready (a load balancer sends the
webhooks to another receiver), and ready again once a record is acknowledged.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.topics import Topics
from parley.kafka.clients import make_admin
from parley.settings import KafkaSettings
from receiver.publisher import PublisherOptions
from tests.kit.receiver_app import (
    JSON,
    NATTERLY_TOKENS,
    AppFactory,
    Credentials,
    eventually,
    natterly_body,
    receiver_settings,
    with_natterly_token,
)

pytestmark = pytest.mark.kafka


async def _max_message_bytes(kafka: KafkaSettings, topics: Topics, n: int) -> None:
    admin = make_admin(kafka)
    await admin.start()
    try:
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": str(n)})
            for t in topics.event_topics])
    finally:
        await admin.close()


async def _readiness(client: TestClient) -> tuple[int, str]:  # type: ignore[type-arg]
    resp = await client.get("/readyz")
    return resp.status, (await resp.json()).get("problems", {}).get("kafka-producer", "")


async def test_writes_refused_while_metadata_answers_make_readyz_503_until_a_record_lands(
        make_receiver: AppFactory, kafka_settings: KafkaSettings, topics: Topics,
        credentials: Credentials) -> None:
    client = await make_receiver(receiver_settings(kafka_settings, credentials),
                                 PublisherOptions(send_timeout_s=1.0, retry_after_s=1))
    body = with_natterly_token(natterly_body(), NATTERLY_TOKENS[0])
    assert (await client.post("/webhooks/acme", data=body, headers=JSON)).status == 200
    assert (await _readiness(client))[0] == 200

    await _max_message_bytes(kafka_settings, topics, 64)  # no webhook fits any more
    refused: list[int] = []

    async def unready() -> bool:
        refused.append((await client.post("/webhooks/acme", data=body, headers=JSON)).status)
        status, why = await _readiness(client)
        return status == 503 and why.startswith("Kafka refuses writes")

    await eventually(unready, timeout_s=30)
    # The new config reaches the partition a moment after the alter answers; from the first
    # refusal on, nothing was accepted.
    assert set(refused[refused.index(503):]) == {503}
    status, why = await _readiness(client)
    assert status == 503 and "nothing acknowledged for" in why

    await _max_message_bytes(kafka_settings, topics, 1 << 20)

    async def accepted() -> bool:
        return (await client.post("/webhooks/acme", data=body, headers=JSON)).status == 200

    await eventually(accepted, timeout_s=30)
    assert await _readiness_ok(client)


async def _readiness_ok(client: TestClient) -> bool:  # type: ignore[type-arg]
    async def ready() -> bool:
        return (await _readiness(client))[0] == 200

    await eventually(ready, timeout_s=5)  # the readiness answer is cached for a second
    return True

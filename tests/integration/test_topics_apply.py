"""``parley topics apply`` against the real broker: idempotent, raises partitions, repairs
drifted configs and keeps the overrides it does not manage."""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.topics import TopicSpec
from parley.kafka.clients import make_admin
from parley.kafka.topics import apply_topics
from parley.settings import KafkaSettings


async def _configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {e[0]: e[1] for resp in responses for res in resp.resources for e in res[4]}


async def _configs_once(admin: AIOKafkaAdminClient, topic: str, key: str, value: str,
                        timeout_s: float = 30.0) -> dict[str, str]:
    """The topic's configs once ``key`` reads ``value``: an AlterConfigs is acknowledged by the
    controller before every broker's metadata shows it."""
    deadline = time.monotonic() + timeout_s
    while (configs := await _configs(admin, topic)).get(key) != value:
        assert time.monotonic() < deadline, f"{topic}: {key} still {configs.get(key)!r}, not {value!r}"
        await asyncio.sleep(0.1)  # polling the broker's view with a deadline
    return configs


async def test_apply_is_idempotent_raises_partitions_and_repairs_only_its_own_configs(
        kafka_settings: KafkaSettings, unique: str) -> None:
    spec = TopicSpec(name=f"{unique}.apply", key="id", partitions=2)
    first = await apply_topics(kafka_settings, [spec])
    assert [(c.action, c.detail) for c in first] == [("created", "2 partitions, rf=1")]
    again = await apply_topics(kafka_settings, [spec])
    assert [c.action for c in again] == ["unchanged"]

    admin = make_admin(kafka_settings)
    await admin.start()
    try:
        # Out of band: an operator's own override, and drift in one Parley manages.
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs={
            "retention.ms": "3600000", "segment.ms": "7200000"})])
        drifted = await _configs_once(admin, spec.name, "retention.ms", "3600000")
        assert drifted["segment.ms"] == "7200000"

        more = TopicSpec(name=spec.name, key="id", partitions=4)
        changes = await apply_topics(kafka_settings, [more])
        assert len(changes) == 1 and changes[0].action == "updated"
        assert "retention.ms=-1" in changes[0].detail and "partitions 2 -> 4" in changes[0].detail
        after = await _configs_once(admin, spec.name, "retention.ms", "-1")  # repaired
        assert after["segment.ms"] == "7200000"  # not Parley's: left as the operator set it
        described = await admin.describe_topics([spec.name])
        assert len(described[0]["partitions"]) == 4

        # Never lowered: a spec with fewer partitions changes nothing.
        fewer = await apply_topics(kafka_settings, [spec])
        assert [c.action for c in fewer] == ["unchanged"]
        assert len((await admin.describe_topics([spec.name]))[0]["partitions"]) == 4
    finally:
        await admin.delete_topics([spec.name])
        await admin.close()

"""``parley topics apply``: create or update topics from the specs in ``contracts.topics``.

Idempotent: a topic that exists gets its configs brought in line and its partition count
raised (never lowered: Kafka cannot, and lowering would break key → partition order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import msgspec
from aiokafka.admin import NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.topics import TopicSpec
from parley.errors import KafkaUnavailable
from parley.kafka.clients import make_admin
from parley.settings import KafkaSettings

#: DescribeConfigs' config_source of a per-topic override (KIP-226).
_DYNAMIC_TOPIC_CONFIG = 1


class TopicChange(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    action: str  # "created" | "updated" | "unchanged"
    detail: str = ""


async def apply_topics(k: KafkaSettings, specs: Iterable[TopicSpec]) -> list[TopicChange]:
    specs = list(specs)
    admin = make_admin(k)
    await admin.start()
    try:
        changes = await _apply(admin, k, specs)
        await _wait_for_leaders(admin, {s.name: s.partitions for s in specs})
        return changes
    finally:
        await admin.close()


async def _wait_for_leaders(admin: Any, partitions: dict[str, int], timeout_s: float = 30.0) -> None:
    """Return once every topic has at least its wanted number of partitions, each with a leader.

    Topics and new partitions are created asynchronously: for a moment after CreateTopics or
    CreatePartitions answers, metadata still shows the old partition count or partitions
    without a leader, and produce or ListOffsets requests fail with NotLeaderForPartition.
    Callers of ``apply_topics`` (``parley topics apply``, ``parley run``, tests) expect usable
    topics, partitioned as the specs say.
    """
    names = list(partitions)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        leaderless = [f"{t['topic']}[{p['partition']}]" for t in described
                      for p in t.get("partitions", ()) if p.get("leader", -1) < 0]
        missing = [t["topic"] for t in described if t.get("error_code") or not t.get("partitions")
                   or len(t["partitions"]) < partitions.get(t["topic"], 0)]
        if not leaderless and not missing:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaUnavailable(f"topics lack partitions or leaders after {timeout_s:.0f}s: "
                                   f"{', '.join((missing + leaderless)[:5])}")
        await asyncio.sleep(0.1)  # polling the metadata with a deadline: no event to wait on


async def _apply(admin: Any, k: KafkaSettings, specs: list[TopicSpec]) -> list[TopicChange]:
    rf = k.replication_factor
    existing = set(await admin.list_topics())
    changes: list[TopicChange] = []
    new = [s for s in specs if s.name not in existing]
    if new:
        await admin.create_topics([NewTopic(s.name, s.partitions, rf, topic_configs=s.configs(rf))
                                   for s in new])
        changes += [TopicChange(topic=s.name, action="created",
                                detail=f"{s.partitions} partitions, rf={rf}") for s in new]
    old = [s for s in specs if s.name in existing]
    if not old:
        return changes
    described = await admin.describe_topics([s.name for s in old])
    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    configs = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in old])
    current: dict[str, dict[str, str]] = {}
    overrides: dict[str, dict[str, str]] = {}
    for resp in configs:
        for res in resp.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries);
            # an entry: (name, value, read_only, config_source, is_sensitive, synonyms)
            current[res[3]] = {e[0]: e[1] for e in res[4]}
            overrides[res[3]] = {e[0]: e[1] for e in res[4]
                                 if e[3] == _DYNAMIC_TOPIC_CONFIG and not e[4] and e[1] is not None}
    for s in old:
        notes = []
        want = s.configs(rf)
        drift = {key: v for key, v in want.items() if current.get(s.name, {}).get(key) != v}
        if drift:
            # AlterConfigs replaces a topic's whole set of overrides (aiokafka has no
            # IncrementalAlterConfigs), so the ones Parley does not manage — an operator's
            # tiered-storage or segment settings — are sent back unchanged with ours.
            keep = overrides.get(s.name, {})
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, s.name,
                                                      configs=keep | want)])
            notes.append("configs " + ", ".join(f"{key}={v}" for key, v in sorted(drift.items())))
        have = partitions.get(s.name, s.partitions)
        if have < s.partitions:
            await admin.create_partitions({s.name: NewPartitions(s.partitions)})
            notes.append(f"partitions {have} -> {s.partitions}")
        changes.append(TopicChange(topic=s.name, action="updated" if notes else "unchanged",
                                   detail="; ".join(notes)))
    return changes

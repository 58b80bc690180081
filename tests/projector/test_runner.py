"""The runner against the real broker and the real SQLite store: exactly-once effects."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition

from contracts.errors import ContractError
from contracts.topics import PROJECTOR, Topics
from parley.kafka.clients import make_admin, make_consumer
from parley.settings import KafkaSettings
from projector.runner import ProjectorRunnerOptions
from tests.kit.live_projector import (
    FIXTURES,
    T0,
    applied,
    conversation,
    envelope,
    eventually,
    last_positions,
    natterly_body,
    natterly_user_status,
    produce,
    running_projector,
    shipper_conversation,
    view,
)

pytestmark = pytest.mark.kafka


def _store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


async def _kafka_committed(kafka: KafkaSettings, group: str) -> dict[tuple[str, int], int]:
    admin = make_admin(kafka)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


async def test_both_providers_land_and_kafka_offsets_follow_the_store(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str) -> None:
    envs = (conversation("chat-1", n_messages=3) + conversation("chat-2", n_messages=2, close=False)
            + shipper_conversation("conv-1", n_messages=2)
            + [envelope("natterly", "acme", natterly_user_status("ag-1", "Online", T0))])
    positions = await produce(kafka_settings, topics, envs)
    assert {p.topic for p in positions} >= {topics.chat, topics.agent}
    group = f"{unique}-projector"
    async with running_projector(kafka_settings, topics, _store_url(tmp_path),
                                 group_id=group) as p:
        await eventually(lambda: applied(p.store, positions), "all records applied")
        chat1 = await view(p.store, "chat", "chat-1")
        assert chat1 is not None
        assert (chat1["provider"], chat1["status"], chat1["message_count"]) == ("natterly", "closed", 3)
        assert chat1["agent"]["id"] == "ag-1"
        chat2 = await view(p.store, "chat", "chat-2")
        assert chat2 is not None and (chat2["status"], chat2["message_count"]) == ("active", 2)
        conv = await view(p.store, "chat", "conv-1")
        assert conv is not None
        assert (conv["provider"], conv["source"], conv["message_count"]) == ("chatshipper", "shop", 2)
        agent = await view(p.store, "agent", "ag-1")
        assert agent is not None and agent["status"] == "online"
        assert await view(p.store, "visitor", "vis-chat-1") is not None
        # Step 10: Kafka's committed offsets catch up with the store's, partition by partition.
        live = await p.store.live_projection()
        assert live == "v1"
        stored = await p.store.offsets(live)
        assert stored == last_positions(positions)

        async def kafka_matches_store() -> bool:
            return await _kafka_committed(kafka_settings, group) == stored

        await eventually(kafka_matches_store, "Kafka committed offsets == stored offsets")
        records = sum(s.value for m in p.metrics.records.collect() for s in m.samples
                      if s.name.endswith("_total"))
        assert records == len(positions)


async def test_restart_resumes_from_the_store_not_from_kafka(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str) -> None:
    group = f"{unique}-projector"
    first = await produce(kafka_settings, topics,
                          conversation("chat-1", n_messages=2, close=False)
                          + shipper_conversation("conv-1", n_messages=1))
    async with running_projector(kafka_settings, topics, _store_url(tmp_path), group_id=group) as p:
        await eventually(lambda: applied(p.store, first), "first records applied")

    # Pretend the process died after the store commit but before Kafka's (and then some):
    # rewind the group's Kafka offsets to 0. The store's offsets must win on restart.
    rewind = make_consumer(kafka_settings, group_id=group)
    rewind.subscribe(list(topics.event_topics))
    await rewind.start()
    try:
        await eventually(lambda: _has_assignment(rewind), "rewind consumer assignment")
        await rewind.commit({tp: 0 for tp in rewind.assignment()})
    finally:
        await rewind.stop()

    # Redelivered duplicates (same bodies, same event ids) and one genuinely new message.
    redelivered = conversation("chat-1", n_messages=2, close=False)
    third = natterly_body("ChatAccepted", "chat-1", T0 + timedelta(seconds=40), agent="ag-1",
                          visitor="vis-chat-1",
                          messages=[("chat-1-m0", "message 0", T0),
                                    ("chat-1-m9", "late one", T0 + timedelta(seconds=40))])
    second = await produce(kafka_settings, topics,
                           [*redelivered, envelope("natterly", "acme", third)])

    async with running_projector(kafka_settings, topics, _store_url(tmp_path), group_id=group) as p:
        await eventually(lambda: applied(p.store, second), "second records applied")
        records = sum(s.value for m in p.metrics.records.collect() for s in m.samples
                      if s.name.endswith("_total"))
        # Only the new records were read: the first run's were skipped by the seek.
        assert records == len(second)
        chat = await view(p.store, "chat", "chat-1")
        assert chat is not None
        assert chat["message_count"] == 3  # m0, m1, m9: duplicates counted once
        conv = await view(p.store, "chat", "conv-1")
        assert conv is not None and conv["message_count"] == 1
        live = await p.store.live_projection()
        assert live is not None
        assert await p.store.offsets(live) == last_positions(first + second)


async def test_the_group_lives_under_the_prefix_and_a_new_group_resumes_from_the_store(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    """The upgrade from the unprefixed ``parley-projector`` group: the new group has no
    committed offsets, yet nothing is folded twice, because the store holds the offsets."""
    old_group = f"{topics.prefix}-legacy-projector"  # what parley-projector was
    first = await produce(kafka_settings, topics, conversation("chat-1", n_messages=2, close=False))
    async with running_projector(kafka_settings, topics, _store_url(tmp_path),
                                 group_id=old_group) as p:
        await eventually(lambda: applied(p.store, first), "first records applied")
    second = await produce(kafka_settings, topics,
                           [envelope("natterly", "acme", natterly_user_status("ag-1", "Online", T0))])
    new_group = topics.group_id(PROJECTOR)
    assert new_group == f"{topics.prefix}.projector"
    assert await _kafka_committed(kafka_settings, new_group) == {}
    async with running_projector(kafka_settings, topics, _store_url(tmp_path), group_id="",
                                 options=ProjectorRunnerOptions(poll_timeout_ms=100)) as p:
        await eventually(lambda: applied(p.store, second), "second record applied")
        records = sum(s.value for m in p.metrics.records.collect() for s in m.samples
                      if s.name.endswith("_total"))
        assert records == len(second)  # the first run's records were not read again
        live = await p.store.live_projection()
        assert live is not None
        stored = await p.store.offsets(live)

        async def kafka_follows() -> bool:  # step 10, now under the new group
            committed = await _kafka_committed(kafka_settings, new_group)
            return all(committed.get(tp) == off for tp, off in last_positions(second).items())

        await eventually(kafka_follows, "the new group's Kafka offsets")
    assert stored == last_positions(first + second)


async def _has_assignment(consumer) -> bool:  # type: ignore[no-untyped-def]
    await consumer.getmany(timeout_ms=100)
    assigned: set[TopicPartition] = consumer.assignment()
    return bool(assigned)


async def test_every_golden_webhook_folds_without_dead_letters(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str) -> None:
    envs = []
    for provider in ("natterly", "chatshipper"):
        files = sorted((FIXTURES / provider).glob("*.json"))
        assert files, f"no golden {provider} webhooks"
        for path in files:
            try:
                envs.append(envelope(provider, "golden", path.read_bytes()))
            except ContractError:
                continue  # a body the receiver would reject never reaches the log
    positions = await produce(kafka_settings, topics, envs)
    async with running_projector(kafka_settings, topics, _store_url(tmp_path),
                                 group_id=f"{unique}-projector") as p:
        await eventually(lambda: applied(p.store, positions), "golden records applied")
        assert not [s for m in p.metrics.dead_letters.collect() for s in m.samples
                    if s.name.endswith("_total") and s.value]
        seed = await view(p.store, "chat", "287146e8-68fd-43c5-b79a-911058bc1c9c")
        assert seed is not None and seed["provider"] == "natterly"
        live = await p.store.live_projection()
        assert live is not None
        chats, _ = await p.store.list_chats(live, limit=200)
        providers = {orjson.loads(c)["provider"] for c in chats}
        assert providers == {"natterly", "chatshipper"}

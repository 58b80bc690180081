"""Consumer groups against the real broker: a new group reads all of history, reset to a
time redelivers from there, and a rebalance neither loses nor repeats a committed effect."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from consumers.api import ConsumedEvent, Consumer, consumer
from consumers.errors import GroupActive
from consumers.groups import parse_reset_target, reset_group
from consumers.runner import ConsumerRunnerOptions
from contracts.envelope import encode_envelope
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.settings import KafkaSettings
from tests.kit.consumers.events import chat_event, produce
from tests.kit.consumers.helpers import committed, end_offsets, running, wait_for

pytestmark = pytest.mark.kafka


@pytest.mark.slow
async def test_new_group_started_after_10000_events_sees_all_of_them(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    envs = [chat_event(f"chat-{i % 500}", i) for i in range(10_000)]
    await produce(kafka_settings, topics, envs)
    seen: list[str] = []

    @consumer("late-joiner", topics=("chat",))
    async def handle(ev: ConsumedEvent) -> None:
        seen.append(ev.event_id)

    async with running(handle, kafka_settings, topics):
        await wait_for(lambda: len(seen) >= 10_000, timeout_s=50, what="10,000 events")
    assert len(seen) == 10_000 and set(seen) == {e.event_id for e in envs}
    group = Topics(prefix=kafka_settings.topic_prefix).group_id("late-joiner")
    assert await committed(kafka_settings, group) == await end_offsets(kafka_settings,
                                                                       [topics.chat])


async def test_reset_to_a_time_redelivers_from_there(kafka_settings: KafkaSettings,
                                                     topics: Topics) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old = [chat_event(f"c{i % 5}", i) for i in range(20)]
    new = [chat_event(f"c{i % 5}", i) for i in range(20, 35)]
    producer = make_producer(kafka_settings)
    await producer.start()
    try:  # record timestamps (the receive time) two hours and one hour ago
        for envs, at in ((old, now - timedelta(hours=2)), (new, now - timedelta(hours=1))):
            for env in envs:
                await producer.send_and_wait(topics.chat, encode_envelope(env),
                                             key=env.record_key,
                                             timestamp_ms=int(at.timestamp() * 1000))
    finally:
        await producer.stop()
    seen: list[str] = []

    @consumer("resettable", topics=("chat",))
    async def handle(ev: ConsumedEvent) -> None:
        seen.append(ev.event_id)

    group = Topics(prefix=kafka_settings.topic_prefix).group_id("resettable")
    async with running(handle, kafka_settings, topics):
        await wait_for(lambda: len(seen) >= 35, what="first pass")
        with pytest.raises(GroupActive, match="active member"):
            await reset_group(kafka_settings, group, [topics.chat], "earliest")
    seen.clear()
    target = parse_reset_target((now - timedelta(minutes=90)).isoformat().replace("+00:00", "Z"))
    offsets = await reset_group(kafka_settings, group, [topics.chat], target)
    assert sum(offsets.values()) == len(old)
    async with running(handle, kafka_settings, topics):
        await wait_for(lambda: len(seen) >= len(new), what="redelivery from the time")
        await asyncio.sleep(0.5)  # and nothing older arrives after it
    assert sorted(seen) == sorted(e.event_id for e in new)

    await reset_group(kafka_settings, group, [topics.chat], "latest")
    assert await committed(kafka_settings, group) == await end_offsets(kafka_settings,
                                                                       [topics.chat])
    await reset_group(kafka_settings, group, [topics.chat], "earliest")
    assert sum((await committed(kafka_settings, group)).values()) == 0


@pytest.mark.slow
async def test_rebalance_neither_loses_nor_repeats_a_committed_effect(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    total = 2000
    envs = [chat_event(f"chat-{i % 60}", i) for i in range(total)]
    await produce(kafka_settings, topics, envs)
    effects: list[tuple[str, str]] = []

    def make(member: str):  # type: ignore[no-untyped-def]
        @consumer("rebalanced", topics=("chat",), concurrency=4)
        async def handle(ev: ConsumedEvent) -> None:
            await asyncio.sleep(0.01)
            effects.append((member, ev.event_id))

        return handle

    options = ConsumerRunnerOptions(max_records=40)
    async with running(make("a"), kafka_settings, topics, options=options) as a:
        await wait_for(lambda: len(effects) >= 100, what="member a working")
        async with running(make("b"), kafka_settings, topics, options=options) as b:
            await wait_for(lambda: bool(b.assignment) and len(a.assignment) < 3,
                           what="partitions moved to b")
            moved_at = len(effects)
            late = [chat_event(f"chat-{i % 60}", i) for i in range(total, total + 300)]
            await produce(kafka_settings, topics, late)  # work for both members
            await wait_for(lambda: len(effects) >= total + 300, timeout_s=50,
                           what="all events")
    assert moved_at < total  # the partitions moved while a was mid-stream
    ids = [e for _, e in effects]
    # The revoked member finished and committed its batch before its partitions moved.
    assert len(ids) == len(set(ids)) == total + 300
    assert {m for m, _ in effects} == {"a", "b"}


async def test_batches_are_the_consumers_own_size_unless_configured(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    # The search consumer asks for larger batches (one index transaction each); a configured
    # max_records ([consumers.NAME]) still wins.
    envs = [chat_event(f"c{i % 5}", i) for i in range(60)]
    await produce(kafka_settings, topics, envs)
    for name, options, cap in (("own-size", None, 7),
                               ("configured-size", ConsumerRunnerOptions(max_records=3), 3)):
        sizes: list[int] = []

        async def handle_batch(events: Sequence[ConsumedEvent], sizes: list[int] = sizes
                               ) -> None:
            sizes.append(len(events))

        sized = Consumer(name=name, handle_batch=handle_batch, topics=("chat",), max_records=7)
        async with running(sized, kafka_settings, topics, options=options):
            await wait_for(lambda sizes=sizes: sum(sizes) >= len(envs), what=f"{name}: all")
        assert sum(sizes) == len(envs) and max(sizes) == cap, (name, sizes)

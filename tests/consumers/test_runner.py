"""The runtime's delivery semantics against the real broker: order, commits, retries,
dead letters and parking, replay and skip."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from prometheus_client import CollectorRegistry

from consumers.api import ConsumedEvent, consumer
from consumers.dlq_ops import dlq_entries, dlq_replay, dlq_skip
from consumers.errors import PermanentError, RetriableError
from consumers.retry import RetryPolicy
from contracts.topics import Topics
from parley.settings import KafkaSettings
from tests.kit.consumers.events import chat_event, produce
from tests.kit.consumers.helpers import committed, end_offsets, running, wait_for

pytestmark = pytest.mark.kafka
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


def _seq(ev: ConsumedEvent) -> int:
    # chat_event() puts seq into the agent id "a<seq % 7>" and the occurred_at second.
    return int(ev.envelope.occurred_at.timestamp()) % 100_000


async def test_every_event_once_in_key_order_then_committed(kafka_settings: KafkaSettings,
                                                            topics: Topics) -> None:
    envs = [chat_event(f"chat-{i % 20}", i) for i in range(400)]
    await produce(kafka_settings, topics, envs)
    seen: dict[str, list[str]] = defaultdict(list)

    @consumer("orderly", topics=("chat",), concurrency=8)
    async def handle(ev: ConsumedEvent) -> None:
        await asyncio.sleep(0)  # let other keys interleave
        seen[ev.key or ""].append(ev.event_id)

    async with running(handle, kafka_settings, topics):
        await wait_for(lambda: sum(map(len, seen.values())) >= 400, what="400 events")
    want: dict[str, list[str]] = defaultdict(list)
    for env in envs:
        want[env.key].append(env.event_id)
    assert seen == want  # each key's events exactly once, in log order
    group = Topics(prefix=kafka_settings.topic_prefix).group_id("orderly")
    assert await committed(kafka_settings, group) == await end_offsets(kafka_settings,
                                                                       [topics.chat])


async def test_retriable_failure_is_retried_then_succeeds(kafka_settings: KafkaSettings,
                                                          topics: Topics) -> None:
    await produce(kafka_settings, topics, [chat_event("flaky", 1), chat_event("flaky", 2)])
    calls: list[str] = []
    registry = CollectorRegistry()

    @consumer("flaky", topics=("chat",), retry=FAST)
    async def handle(ev: ConsumedEvent) -> None:
        calls.append(ev.event_id)
        if len(calls) <= 2:
            raise RetriableError("dependency down")

    async with running(handle, kafka_settings, topics, registry):
        await wait_for(lambda: len(calls) >= 4, what="two events after two retries")
    first, second = chat_event("flaky", 1).event_id, chat_event("flaky", 2).event_id
    assert calls == [first, first, first, second]
    assert registry.get_sample_value("parley_consumer_retries_total", {"consumer": "flaky"}) == 2
    assert await dlq_entries(kafka_settings, topics, "flaky") == []


async def test_poison_event_dead_lettered_same_key_parked_others_flow_then_skip_and_replay(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    poison = chat_event("bad", 1)
    await produce(kafka_settings, topics,
                  [chat_event("good", 0), poison, chat_event("bad", 2), chat_event("good", 3),
                   chat_event("bad", 4)])
    handled: list[str] = []
    broken = {poison.event_id}

    @consumer("poisoned", topics=("chat",), retry=FAST)
    async def handle(ev: ConsumedEvent) -> None:
        if ev.event_id in broken:
            raise PermanentError("cannot handle this one")
        handled.append(ev.event_id)

    async with running(handle, kafka_settings, topics) as runner:
        await wait_for(lambda: len(handled) >= 2, what="the good key's events")
        await wait_for(lambda: len(runner.dead.state.entries()) == 3, what="3 DLQ entries")
        assert handled == [chat_event("good", 0).event_id, chat_event("good", 3).event_id]
        entries = await dlq_entries(kafka_settings, topics, "poisoned", values=True)
        assert [(e.kind, e.event_id) for e in entries] == [
            ("dead", poison.event_id), ("parked", chat_event("bad", 2).event_id),
            ("parked", chat_event("bad", 4).event_id)]
        dead = entries[0]
        assert dead.error_type == "PermanentError" and dead.attempts == 1
        assert dead.error == "cannot handle this one"
        assert dead.origin.topic == topics.chat and dead.value is not None

        # A new event of the parked key is parked too, while the key stays parked.
        await produce(kafka_settings, topics, [chat_event("bad", 5)])
        await wait_for(lambda: len(runner.dead.state.entries()) == 4, what="4th entry parked")

        # Replay: the poison event still fails, so nothing of its key is released.
        report = await dlq_replay(kafka_settings, topics, handle, key="bad")
        assert report.replayed == 0 and len(report.failed) == 1
        assert runner.dead.state.is_parked(topics.chat, "bad")

        # Fixed: replay handles the key's events in order and releases it.
        broken.clear()
        report = await dlq_replay(kafka_settings, topics, handle, key="bad")
        assert report.replayed == 4 and not report.failed
        await wait_for(lambda: not runner.dead.state.is_parked(topics.chat, "bad"),
                       what="key released")
        await produce(kafka_settings, topics, [chat_event("bad", 6)])
        await wait_for(lambda: chat_event("bad", 6).event_id in handled, what="flows again")
    assert handled[2:] == [chat_event("bad", i).event_id for i in (1, 2, 4, 5, 6)]
    assert await dlq_entries(kafka_settings, topics, "poisoned") == []


async def test_retries_exhausted_dead_letter_and_skip(kafka_settings: KafkaSettings,
                                                      topics: Topics) -> None:
    await produce(kafka_settings, topics, [chat_event("k", 1), chat_event("k", 2)])
    handled: list[str] = []
    failing = {chat_event("k", 1).event_id}

    @consumer("exhausted", topics=("chat",), retry=FAST)
    async def handle(ev: ConsumedEvent) -> None:
        if ev.event_id in failing:
            raise TimeoutError("still down")
        handled.append(ev.event_id)

    async with running(handle, kafka_settings, topics) as runner:
        await wait_for(lambda: len(runner.dead.state.entries()) == 2, what="dead + parked")
        entries = await dlq_entries(kafka_settings, topics, "exhausted")
        assert entries[0].attempts == FAST.max_attempts and entries[0].error_type == "TimeoutError"
        assert await dlq_skip(kafka_settings, topics, "exhausted", key="k") == 2
        await wait_for(lambda: not runner.dead.state, what="skip releases the key")
        await produce(kafka_settings, topics, [chat_event("k", 3)])
        await wait_for(lambda: handled == [chat_event("k", 3).event_id], what="key flows")


async def test_undecodable_record_is_dead_lettered_not_retried(kafka_settings: KafkaSettings,
                                                               topics: Topics) -> None:
    await produce(kafka_settings, topics, [("junk", b"not an envelope"), chat_event("ok", 1)])
    handled: list[str] = []

    @consumer("strict", topics=("chat",), event_types=("ChatAssigned",), retry=FAST)
    async def handle(ev: ConsumedEvent) -> None:
        handled.append(ev.event_id)

    async with running(handle, kafka_settings, topics) as runner:
        await wait_for(lambda: handled and runner.dead.state.entries(), what="both outcomes")
    [entry] = await dlq_entries(kafka_settings, topics, "strict")
    assert entry.error_type == "ContractError" and entry.key == "junk"

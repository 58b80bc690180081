"""The dispatcher's hot path (in log order, stepped by hand) and its hand-over to the lanes,
in memory: per-key order, one event of a key at a time, every event once, the commit covering
exactly the done prefix — whichever handlers return at once, wait, fail, or stop the runner."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from consumers.api import ConsumedEvent, Consumer
from consumers.dispatch import Dispatcher, Stopping
from consumers.dlq import ParkingDeadLetters
from consumers.errors import RetriableError
from consumers.metrics import ConsumerMetrics
from consumers.resume import resume
from consumers.retry import RetryPolicy
from consumers.tracking import BatchProgress
from contracts.position import Position
from contracts.replay import origin_header
from contracts.topics import Topics
from parley.settings import KafkaSettings

TOPICS = Topics(prefix="t")
NOW, WAIT, FAIL_ONCE, STOP = "now", "wait", "fail-once", "stop"


def _record(topic: str, partition: int, offset: int, key: str,
            headers: tuple[tuple[str, bytes], ...] = ()) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0,
                          timestamp_type=0, key=key.encode(), value=b"{}", checksum=None,
                          serialized_key_size=len(key), serialized_value_size=2, headers=headers)


class _Handler:
    """Records who is handled when; does what ``plan`` says for each (position, attempt)."""

    def __init__(self, plan: dict[tuple[str, int, int], str], stop: asyncio.Event) -> None:
        self.plan = plan
        self.stop = stop
        self.handled: list[ConsumedEvent] = []
        self.active: set[str | None] = set()
        self.overlaps = 0
        self.failed: set[tuple[str, int, int]] = set()
        self.calls: dict[tuple[str, int, int], int] = defaultdict(int)

    async def __call__(self, ev: ConsumedEvent) -> None:
        pos = ev.fetched  # a copy's own place: a copy and its original may be planned apart
        self.calls[pos] += 1
        action = self.plan.get(pos, NOW)
        if ev.key in self.active:
            self.overlaps += 1
        self.active.add(ev.key)
        try:
            if action == WAIT:
                await asyncio.sleep(0)
            elif action == FAIL_ONCE and pos not in self.failed:
                self.failed.add(pos)
                raise RetriableError("once")
            elif action == STOP:
                self.stop.set()
                raise RetriableError("stopping")  # its retry wait ends at once: not done
        finally:
            self.active.discard(ev.key)
        self.handled.append(ev)


def _dispatcher(handler: _Handler, stop: asyncio.Event, concurrency: int,
                delay_s: float = 0.001) -> Dispatcher:
    k = KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t")
    target = Consumer(name="d", handle=handler, topics=("chat",), concurrency=concurrency,
                      retry=RetryPolicy(max_attempts=3, base_delay_s=delay_s, max_delay_s=delay_s))
    return Dispatcher(target, ParkingDeadLetters(k, TOPICS, "d"),
                      ConsumerMetrics(CollectorRegistry()), replay_topic=TOPICS.replay("d"),
                      stop=stop, rng=random.Random(0))


@settings(max_examples=150, deadline=None, print_blob=True)
@given(st.data())
def test_in_order_then_lanes_keep_key_order_and_commit_only_done_prefixes(
        data: st.DataObject) -> None:
    # A batch of 1-3 partitions, a few keys, some replayed copies; each event's handler
    # returns at once, waits, fails once (retried) or stops the runner.
    n_parts = data.draw(st.integers(1, 3), label="partitions")
    keys = data.draw(st.lists(st.sampled_from("abcdef"), min_size=1, max_size=40), label="keys")
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
    for key in keys:
        part = ord(key) % n_parts
        records = batch[TopicPartition(TOPICS.chat, part)]
        records.append(_record(TOPICS.chat, part, 10 + 2 * len(records), key))  # offset gaps
    originals = [r for records in batch.values() for r in records]
    n_copies = data.draw(st.integers(0, 5), label="copies")
    replay_tp = TopicPartition(TOPICS.replay("d"), 0)
    for j, original in enumerate(data.draw(st.permutations(originals))[:n_copies]):
        pos = Position(original.topic, original.partition, original.offset)
        batch[replay_tp].append(_record(replay_tp.topic, 0, j, original.key.decode(),
                                        (origin_header(pos, 0),)))
    plan = {(r.topic, r.partition, r.offset): data.draw(
        st.sampled_from([NOW, NOW, NOW, WAIT, FAIL_ONCE, STOP]), label="action")
        for records in batch.values() for r in records}
    concurrency = data.draw(st.integers(1, 4), label="concurrency")

    async def run() -> tuple[_Handler, BatchProgress[ConsumedEvent]]:
        stop = asyncio.Event()
        handler = _Handler(plan, stop)
        progress: BatchProgress[ConsumedEvent] = BatchProgress(dict(batch))
        with contextlib.suppress(Stopping):
            await _dispatcher(handler, stop, concurrency).run(progress)
        return handler, progress

    handler, progress = asyncio.run(run())
    assert handler.overlaps == 0
    handled = [ev.fetched for ev in handler.handled]
    assert len(handled) == len(set(handled))  # at most once each (no failure is final here)
    # Per key: live events in offset order, then its copies in the order they were sent.
    by_key: dict[str | None, list[ConsumedEvent]] = defaultdict(list)
    for ev in handler.handled:
        by_key[ev.key].append(ev)
    for evs in by_key.values():
        live = [ev.offset for ev in evs if not ev.replayed]
        assert live == sorted(live)
        assert all(not a.replayed or b.replayed for a, b in itertools.pairwise(evs))
    # The commit covers exactly a prefix of handled records per partition.
    done = set(handled)
    commit = progress.committable()
    for tp, records in batch.items():
        prefix = []
        for r in records:
            if (tp.topic, tp.partition, r.offset) not in done:
                break
            prefix.append(r.offset)
        assert commit.get(tp) == (prefix[-1] + 1 if prefix else None)
    # Each handled event was tried once, or twice if it failed once (the retry policy counts
    # the in-order path's attempt too).
    for ev in handler.handled:
        assert handler.calls[ev.fetched] == (2 if plan[ev.fetched] == FAIL_ONCE else 1)
    if STOP not in plan.values():
        assert len(done) == sum(len(records) for records in batch.values())
        assert progress.complete()


def test_other_keys_flow_while_a_failed_event_waits_for_its_retry() -> None:
    records = [_record(TOPICS.chat, 0, off, key) for off, key in enumerate("abbc")]
    a0 = (TOPICS.chat, 0, 0)

    async def run() -> list[str | None]:
        stop = asyncio.Event()
        handler = _Handler({a0: FAIL_ONCE}, stop)
        progress: BatchProgress[ConsumedEvent] = BatchProgress(
            {TopicPartition(TOPICS.chat, 0): records})
        await _dispatcher(handler, stop, concurrency=4, delay_s=0.2).run(progress)
        assert progress.complete()
        return [ev.key for ev in handler.handled]

    assert asyncio.run(run()) == ["b", "b", "c", "a"]


def test_after_a_handler_waited_the_next_batch_starts_every_key_at_once() -> None:
    """An I/O handler's batches go to the lanes from the start: no event waits alone."""
    gate = asyncio.Event()
    active: set[str | None] = set()

    async def waits(ev: ConsumedEvent) -> None:
        active.add(ev.key)
        if len(active) == 2:  # two keys are in flight together: let them all finish
            gate.set()
        await asyncio.sleep(0)  # always waits (I/O)
        await gate.wait()
        active.discard(ev.key)

    def batch(start: int) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        return {TopicPartition(TOPICS.chat, 0): [_record(TOPICS.chat, 0, start + i, key)
                                                 for i, key in enumerate("ab")]}

    async def run() -> None:
        k = KafkaSettings(bootstrap="127.0.0.1:1", topic_prefix="t")
        target = Consumer(name="d", handle=waits, topics=("chat",), concurrency=4)
        dispatcher = Dispatcher(target, ParkingDeadLetters(k, TOPICS, "d"),
                                ConsumerMetrics(CollectorRegistry()),
                                replay_topic=TOPICS.replay("d"), stop=asyncio.Event(),
                                rng=random.Random(0))
        gate.set()  # the first batch finds out that the handler waits
        await dispatcher.run(BatchProgress(batch(0)))
        gate.clear()
        progress: BatchProgress[ConsumedEvent] = BatchProgress(batch(2))
        await asyncio.wait_for(dispatcher.run(progress), 5)
        assert progress.complete()

    asyncio.run(run())


def test_resume_finishes_a_coroutine_started_by_hand_and_passes_cancellation_in() -> None:
    async def waits(gate: asyncio.Event) -> str:
        await gate.wait()
        return "done"

    async def main() -> None:
        gate = asyncio.Event()
        coro: Coroutine[Any, Any, str] = waits(gate)
        yielded = coro.send(None)  # suspends on the gate
        task = asyncio.ensure_future(resume(coro, yielded))
        await asyncio.sleep(0)
        gate.set()
        assert await task == "done"

        cancelled = waits(asyncio.Event())
        task = asyncio.ensure_future(resume(cancelled, cancelled.send(None)))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled() and cancelled.cr_frame is None  # the handler saw it, and ended

    asyncio.run(main())

"""Read-your-writes waits (projector/waits.py) on partitions another process applies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contracts.position import Position
from projector.errors import Overloaded, UnknownPartition
from projector.memory_store import MemoryStore
from projector.runner import Watermarks
from projector.waits import PositionWaits
from tests.kit.live_projector import eventually

TOPIC = "parley.events.chat"


class CountingStore(MemoryStore):
    """The in-memory store, counting the offset reads the waits make."""

    def __init__(self) -> None:
        super().__init__()
        self.offset_reads = 0

    async def offsets(self, projection: str) -> dict[tuple[str, int], int]:
        self.offset_reads += 1
        return await super().offsets(projection)


async def _store() -> CountingStore:
    store = CountingStore()
    await store.create_projection("v1")
    await store.set_live("v1")
    return store


async def test_remote_waits_share_one_poller() -> None:
    """Many waits on a partition no local runner applies read the store at the poller's rate,
    not once per waiter, and all finish when another process's commit is seen."""
    store = await _store()
    waits = PositionWaits(store, Watermarks(), max_waiters=100, recheck_s=0.05)
    position = Position(TOPIC, 0, 0)
    tasks = [asyncio.create_task(waits.wait(position, 10.0)) for _ in range(50)]
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def polled_a_while() -> bool:
        return waits.waiting == 50 and store.offset_reads >= 60

    await eventually(polled_a_while, "the poller to read the store ten times", every_s=0.01)
    elapsed = loop.time() - started
    # 50 initial checks, then one poll per recheck_s: far below 50 waiters x polls.
    assert store.offset_reads <= 50 + elapsed / 0.05 + 2
    await store.commit("v1", [], {(TOPIC, 0): 1})  # "another process" applies it
    assert all(await asyncio.wait_for(asyncio.gather(*tasks), 5))
    await waits.close()


async def test_owned_partition_waits_read_no_store_and_cap_holds() -> None:
    store = await _store()
    watermarks = Watermarks()
    watermarks.own([(TOPIC, 0)])
    waits = PositionWaits(store, watermarks, max_waiters=3, recheck_s=0.01)
    position = Position(TOPIC, 0, 5)
    tasks = [asyncio.create_task(waits.wait(position, 10.0)) for _ in range(3)]

    async def all_waiting() -> bool:
        return waits.waiting == 3

    await eventually(all_waiting, "three waits", every_s=0.01)
    with pytest.raises(Overloaded):
        await waits.wait(position, 10.0)
    watermarks.advance("v1", {(TOPIC, 0): 6})  # the local runner's commit
    assert all(await asyncio.wait_for(asyncio.gather(*tasks), 5))
    assert store.offset_reads == 0
    # A revoked partition falls back to the poller, which sees another process's commit.
    watermarks.disown([(TOPIC, 0)])
    later = asyncio.create_task(waits.wait(Position(TOPIC, 0, 7), 10.0))
    await store.commit("v1", [], {(TOPIC, 0): 8})
    assert await asyncio.wait_for(later, 5)
    await waits.close()


async def test_owned_partition_behind_the_store_answers_from_the_store_at_the_deadline(
        caplog: pytest.LogCaptureFixture) -> None:
    """A member that lost a partition without knowing it yet may commit it after this runner
    read the stored offsets: this process owns the partition, its watermark is behind, and no
    local commit will wake the wait. The wait reads the store once at its deadline instead of
    answering 504 for a position the store (which reads are served from) holds."""
    store = await _store()
    watermarks = Watermarks()
    watermarks.advance("v1", {(TOPIC, 0): 3})
    watermarks.own([(TOPIC, 0)])
    waits = PositionWaits(store, watermarks, max_waiters=3, recheck_s=0.01)
    await store.commit("v1", [], {(TOPIC, 0): 9})  # the other writer's late commit
    assert await waits.wait(Position(TOPIC, 0, 5), 0.2)
    assert store.offset_reads == 1  # one read, at the deadline
    assert "watermark for the partition it owns was 3" in caplog.text
    # A position the store does not hold either still times out.
    assert not await waits.wait(Position(TOPIC, 0, 9), 0.1)
    await waits.close()


class FakeConsumer:
    """What the waits read of the runner's consumer: its metadata's partitions of ``TOPIC``,
    and a refresh of it that may add partitions (``grow_to``) or fail (``answers``)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.grow_to = partitions
        self.answers = True
        self.refreshes = 0
        self._client = self

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.partitions)) if topic == TOPIC else None

    async def force_metadata_update(self) -> bool:
        self.refreshes += 1
        await asyncio.sleep(0.01)  # a round trip to the broker, during which others ask too
        if self.answers:
            self.partitions = self.grow_to
        return self.answers


def _following(consumer: FakeConsumer) -> Watermarks:
    watermarks = Watermarks()
    fake: Any = consumer
    watermarks.follow(fake)
    return watermarks


async def test_a_partition_the_topic_lacks_fails_at_once_after_one_metadata_refresh() -> None:
    store = await _store()
    consumer = FakeConsumer(3)
    waits = PositionWaits(store, _following(consumer), max_waiters=10, recheck_s=60.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(UnknownPartition, match=f"{TOPIC} has 3 partition\\(s\\), 0 to 2; "
                                               "there is no partition 3"):
        await waits.wait(Position(TOPIC, 3, 0), 10.0)
    assert loop.time() - started < 5 and consumer.refreshes == 1
    waits = PositionWaits(store, _following(consumer), max_waiters=10, recheck_s=60.0)
    # Concurrent waits share one refresh.
    answers = await asyncio.gather(*(waits.wait(Position(TOPIC, 3 + i, 0), 10.0)
                                     for i in range(10)), return_exceptions=True)
    assert all(isinstance(a, UnknownPartition) for a in answers), answers
    assert consumer.refreshes == 2
    # Within recheck_s the fresh count answers, without asking Kafka again.
    for partition in (3, 7, 2**31 - 1):
        with pytest.raises(UnknownPartition):
            await waits.wait(Position(TOPIC, partition, 0), 10.0)
    assert consumer.refreshes == 2 and waits.waiting == 0
    # A partition the topic has is waited for, as before (not yet applied: it times out).
    assert not await waits.wait(Position(TOPIC, 2, 0), 0.05)
    await waits.close()


async def test_a_partition_added_since_the_consumer_read_metadata_is_waited_for() -> None:
    store = await _store()
    consumer = FakeConsumer(3)
    consumer.grow_to = 4  # added to the topic since the consumer last read its metadata
    waits = PositionWaits(store, _following(consumer), max_waiters=10, recheck_s=0.05)
    wait = asyncio.create_task(waits.wait(Position(TOPIC, 3, 0), 10.0))
    await eventually(lambda: _true(consumer.refreshes == 1), "the metadata refresh")
    await store.commit("v1", [], {(TOPIC, 3): 1})  # another process applies it
    assert await asyncio.wait_for(wait, 5)
    await waits.close()


@pytest.mark.parametrize("how", ["no runner", "refresh fails"])
async def test_without_a_fresh_partition_count_the_position_is_waited_for(how: str) -> None:
    """Nothing tells the partition surely does not exist: the wait behaves as before (times
    out, or ends once the position is applied), never a 400."""
    store = await _store()
    consumer = FakeConsumer(3)
    consumer.answers = False
    watermarks = Watermarks() if how == "no runner" else _following(consumer)
    waits = PositionWaits(store, watermarks, max_waiters=10, recheck_s=0.01)
    assert not await waits.wait(Position(TOPIC, 5, 0), 0.1)
    wait = asyncio.create_task(waits.wait(Position(TOPIC, 5, 0), 10.0))
    await store.commit("v1", [], {(TOPIC, 5): 1})
    assert await asyncio.wait_for(wait, 5)
    await waits.close()


async def _true(value: bool) -> bool:
    return value

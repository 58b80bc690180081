"""Read-your-writes waits (projector/waits.py) on partitions another process applies."""

from __future__ import annotations

import asyncio

import pytest

from contracts.position import Position
from projector.errors import Overloaded
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

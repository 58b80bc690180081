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

"""The overview's row counts (parley/console/counts.py): the first is waited for, later ones
are answered from the last count while a new one runs, and a switch of copies is never
answered with the old copy's count."""

from __future__ import annotations

import asyncio

from parley.console.counts import RowCounts


class Store:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def counts(self, projection: str) -> dict[str, int]:
        self.calls += 1
        if self.calls > 1:
            await self.release.wait()
        return {"chat": self.calls, "copy": len(projection)}


async def test_an_old_count_is_answered_while_a_new_one_runs() -> None:
    now = [0.0]
    store, counts = Store(), RowCounts(min_age_s=1.0, clock=lambda: now[0])
    assert (await counts.get(store, "v1"))[0]["chat"] == 1  # type: ignore[arg-type]
    now[0] = 5.0  # older than min_age_s
    # Old already (min_age 0): answered at once from the last count, a new count started.
    assert (await counts.get(store, "v1"))[0]["chat"] == 1  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the new count starts, and waits
    assert store.calls == 2
    store.release.set()
    assert counts._task is not None
    await asyncio.wait_for(counts._task, 5)
    assert (await counts.get(store, "v1"))[0]["chat"] == 2  # type: ignore[arg-type]
    # Another copy went live: its count is waited for, not the old copy's shown.
    assert (await counts.get(store, "v22"))[0]["copy"] == 3  # type: ignore[arg-type]


async def test_a_recent_count_is_reused() -> None:
    store, counts = Store(), RowCounts(min_age_s=60.0)
    await counts.get(store, "v1")  # type: ignore[arg-type]
    await counts.get(store, "v1")  # type: ignore[arg-type]
    assert store.calls == 1

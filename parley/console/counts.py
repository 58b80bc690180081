"""The live copy's rows per kind, for the overview, counted in the background.

Counting is a scan of the store's rows (about 1.5 s for 100,000 chats with their messages
in SQLite), more than a page may take, and nobody needs the count to the second. So a count
is reused until it is older than ten times what it took (at least ``min_age_s``): a small
store is counted afresh every few seconds, a large one every half minute or so. An old count
is answered as it is while a new one runs beside the page; only the first count (or the first
after the live copy changed) is waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from projector.store import Store

__all__ = ["RowCounts"]


@dataclass(frozen=True)
class _Count:
    copy: str
    counts: dict[str, int]
    at: float  # monotonic
    took_s: float


@dataclass
class RowCounts:
    """The cached count (see the module docstring)."""

    min_age_s: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _last: _Count | None = None
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def get(self, store: Store, live: str) -> tuple[dict[str, int], float]:
        """The rows per kind of copy ``live`` and how many seconds ago they were counted."""
        last = self._last
        current = last is not None and last.copy == live
        old = last is None or self.clock() - last.at > max(self.min_age_s, 10 * last.took_s)
        if (not current or old) and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._count(store, live), name="console-counts")
            # A count that fails in the background is tried again by the next page (the
            # failure of one that is waited for reaches that page: its panel shows down).
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        if not current and self._task is not None:
            # Shielded: a page that gives up waiting leaves the count running for the next.
            await asyncio.shield(self._task)
        last = self._last
        if last is None or last.copy != live:
            return {}, 0.0  # the count ran for another copy meanwhile (a switch of reads)
        return last.counts, self.clock() - last.at

    async def _count(self, store: Store, live: str) -> None:
        started = self.clock()
        counts = await store.counts(live)
        now = self.clock()
        self._last = _Count(live, counts, now, now - started)

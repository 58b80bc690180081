"""The parts of a rebuild's fold loop that a one-process rebuild (:mod:`projector.rebuild`) and
a parallel rebuild's workers (:mod:`projector.rebuild_worker`) share: the progress line, the
writer that commits batch N while batch N+1 is folded, and the batch reader.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from projector.folder import Offsets
from projector.rebuild_pipe import CopyWriter
from projector.views import Row

__all__ = ["BatchWriter", "Progress", "next_batch"]


class Progress:
    def __init__(self, name: str, total: int, out: TextIO, every_s: float) -> None:
        self._name, self.total, self._out, self._every_s = name, total, out, every_s
        self._start = self._last = time.monotonic()
        self.done = 0

    def add(self, n: int, *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if not force and now - self._last < self._every_s:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        remaining = max(self.total - self.done, 0)
        eta = f"{remaining / rate:.0f} s" if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        print(f"rebuild {self._name}: {self.done}/{self.total} records ({pct:.1f}%), "
              f"{rate:.0f} records/s, ETA {eta}", file=self._out, flush=True)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start


class BatchWriter:
    """Commits batch N in the background while batch N+1 is folded (step 3).

    The rebuild's :class:`Folder` reads stored states from the store itself, not through
    this writer, so a read never waits for the transaction in flight: the folder remembered
    every state that transaction writes and keeps them all in its cache
    (:meth:`Folder.remember`), so what it misses was written by a transaction that already
    committed. (Reads used to go through here and wait: on a 1,000,000-record rebuild with
    two workers each worker spent about 17 of its 72 s waiting for its own commit before
    reading ~700 evicted states, docs/benchmarks.md.)
    """

    def __init__(self, store: CopyWriter, name: str, counted: Callable[[int], None], *,
                 publish: bool = False) -> None:
        """``counted(n)``: called with a batch's record count once it committed."""
        self._store, self._name, self._counted = store, name, counted
        self._publish = publish
        self._pending: asyncio.Task[object] | None = None
        self._pending_records = 0

    async def commit(self, rows: Sequence[Row], offsets: Offsets, records: int) -> None:
        """Start writing one batch (rows + next offsets) once the previous one committed."""
        await self.drain()
        self._pending = asyncio.create_task(
            self._store.commit(self._name, rows, offsets, publish=self._publish),
            name=f"rebuild-{self._name}-commit")
        self._pending_records = records

    async def drain(self) -> None:
        """Wait for the transaction in flight (raising its error) and count its records."""
        task, self._pending = self._pending, None
        if task is not None:
            await task
            self._counted(self._pending_records)

    async def abandon(self) -> None:
        """On the way out after an error: let a transaction in flight finish, ignoring its
        outcome (the rebuild already failed), so the store is not closed under it."""
        task, self._pending = self._pending, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)


async def next_batch(consumer: AIOKafkaConsumer, max_records: int) -> list[ConsumerRecord]:
    """Up to ``max_records`` records: what the consumer has fetched, waiting only for the first.

    Rebuild batches are large on purpose: each store transaction rewrites every index page
    it touched, and replayed ids are random, so a transaction of N rows costs nearly as
    much page writing as one of 10 N; larger batches also fold a chat's many events into
    one row write instead of several.
    """
    records: list[ConsumerRecord] = []
    timeout_ms = 500
    while len(records) < max_records:
        batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records - len(records))
        if not batch:
            break
        for recs in batch.values():
            records.extend(recs)
        timeout_ms = 0  # then only what is already fetched
    return records

"""Read-your-writes waits (``min_position``): bounded in number, woken by commits, one poller.

A request waiting for a position costs nothing while it waits, and the process bounds how
many may wait at once:

1. At most ``max_waiters`` waits run at once; one more raises :class:`Overloaded` at once
   (the API answers 503 ``overloaded`` with ``Retry-After``), so unauthenticated reads cannot
   pile up waits without limit.
2. A position on a partition this process's runner is assigned is answered from
   :class:`~projector.runner.Watermarks` alone: the runner advances them with the stored
   offsets when it is assigned the partition and after each store commit, which wakes every
   waiter. No store read happens for such a wait, except once at its deadline: a member
   that lost the partition without knowing it yet may have committed it after this runner
   read the stored offsets, and the store, which reads are served from, then answers.
3. A position on a partition another process applies (several projectors sharing
   PostgreSQL, or this runner stopped) is checked once in the store when the wait starts;
   after that ONE shared poller per process reads the live projection's offsets every
   ``recheck_s`` while such waits exist, and advances the watermarks with them — the store
   is read at a fixed rate whatever the number of waiters.
4. A position on a partition its topic does not have raises :class:`UnknownPartition` at
   once (the API answers 400) instead of waiting out the timeout — only when that is known:
   while this process's runner consumes, its consumer's metadata says how many partitions
   the topic has, and a partition past them is confirmed by one metadata refresh first
   (partitions may have been added since; at most one refresh every ``recheck_s``, shared
   by concurrent waits). Without a running runner, or when the last refresh failed, the
   position is waited for as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from contracts.position import Position
from parley.errors import StoreError
from projector.errors import Overloaded, UnknownPartition
from projector.runner import Watermarks
from projector.store import Store

__all__ = ["PositionWaits"]

log = logging.getLogger("parley.projector.waits")


class PositionWaits:
    """Bounded ``min_position`` waits over ``watermarks``; see the module docstring."""

    def __init__(self, store: Store, watermarks: Watermarks, *, max_waiters: int,
                 recheck_s: float) -> None:
        self._store = store
        self._watermarks = watermarks
        self._max_waiters = max_waiters
        self._recheck_s = recheck_s
        self._waiting = 0
        self._remote: set[object] = set()  # waits on partitions no local runner applies
        self._poller: asyncio.Task[None] | None = None
        self._refresh: asyncio.Future[bool] | None = None  # the last partition metadata refresh
        self._metadata_at = -math.inf  # and when it started (loop time)

    @property
    def waiting(self) -> int:
        return self._waiting

    async def wait(self, position: Position, timeout_s: float) -> bool:
        """True once ``position`` is applied to the live projection; False after
        ``timeout_s``. Raises :class:`Overloaded` when ``max_waiters`` waits already run, and
        :class:`UnknownPartition` when the position's topic has no such partition."""
        if self._waiting >= self._max_waiters:
            raise Overloaded(f"{self._max_waiters} requests are waiting for a min_position "
                             f"already; retry later")
        self._waiting += 1
        token = object()
        try:
            return await self._wait(token, position, timeout_s)
        finally:
            self._waiting -= 1
            self._remote.discard(token)

    async def _wait(self, token: object, position: Position, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        w = self._watermarks
        topic, partition, offset = position.topic, position.partition, position.offset
        if w.applied(topic, partition, offset):
            return True
        await self._check_partition(topic, partition, deadline)
        if not w.owns(topic, partition) and await self._in_store(position):
            return True  # applied by another process (or before this one started)
        while not w.applied(topic, partition, offset):
            # Ownership moves with rebalances (which wake us): poll only while nobody here
            # will commit this partition.
            if w.owns(topic, partition):
                self._remote.discard(token)
            else:
                self._remote.add(token)
                self._start_poller()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return await self._owned_behind(position)
            await w.wait(remaining)
        return True

    async def _check_partition(self, topic: str, partition: int, deadline: float) -> None:
        """Raise :class:`UnknownPartition` if ``topic`` surely has no ``partition`` (see the
        module docstring, 4); return if it has, or if that cannot be told."""
        w = self._watermarks
        count = w.partitions(topic)
        if count is None or partition < count:
            return
        if not await self._metadata_refreshed(deadline):
            return  # Kafka did not answer: the wait decides, as for any position
        count = w.partitions(topic)
        if count is None or partition < count:
            return  # added since the consumer last read its metadata
        raise UnknownPartition.of(topic, partition, count)

    async def _metadata_refreshed(self, deadline: float) -> bool:
        """True if the runner's consumer refreshed its metadata within ``recheck_s``, refreshing
        it first if not (one refresh shared by concurrent callers); False if Kafka did not
        answer it by ``deadline``."""
        loop = asyncio.get_running_loop()
        task = self._refresh
        if task is None or (task.done() and loop.time() - self._metadata_at >= self._recheck_s):
            self._metadata_at = loop.time()
            task = self._refresh = asyncio.ensure_future(self._watermarks.refresh_partitions())
            # Its failure is read by whoever still waits for it; none may be left.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - loop.time()))
        except TimeoutError:
            return False
        except Exception as exc:  # noqa: BLE001 - the consumer stopped meanwhile, Kafka away
            log.info("partition metadata refresh failed: %s", type(exc).__name__)
            return False

    async def _owned_behind(self, position: Position) -> bool:
        """The last word of a wait that timed out: one store read. For a partition this
        process applies, the watermarks are behind the store only if another writer committed
        it after this runner read the stored offsets (a member that lost the partition without
        knowing it yet); the store is the truth reads are served from, so it answers."""
        w = self._watermarks
        owned = w.owns(position.topic, position.partition)
        before = w.next_offset(position.topic, position.partition)
        try:
            if not await self._in_store(position):
                return False
        except StoreError:
            return False
        if owned:
            log.warning("min_position %s: applied in the store but this process's watermark "
                        "for the partition it owns was %d (another writer committed it)",
                        position, before)
        return True

    async def _in_store(self, position: Position) -> bool:
        live = await self._store.live_projection()
        if live is None:
            return False
        stored = await self._store.offsets(live)
        self._watermarks.advance(live, stored)
        return self._watermarks.applied(position.topic, position.partition, position.offset)

    async def close(self) -> None:
        """Stop the poller (before the store closes) and a metadata refresh in flight."""
        refresh, self._refresh = self._refresh, None
        if refresh is not None and not refresh.done():
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    def _start_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="position-poller")

    async def _poll(self) -> None:
        """The one store poll of the process: runs while remote waits exist, then ends."""
        while self._remote:
            try:
                live = await self._store.live_projection()
                if live is not None:
                    self._watermarks.advance(live, await self._store.offsets(live))
            except StoreError as exc:  # busy or closing: the waits time out if it lasts
                log.info("min_position poll skipped: %s", type(exc).__name__)
            # A polling interval, not a synchronisation: commits elsewhere announce nothing.
            await asyncio.sleep(self._recheck_s)

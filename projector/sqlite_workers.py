"""The threads that own the SQLite store's connections.

A ``sqlite3`` connection is used from one thread at a time, and a statement releases the GIL
while SQLite runs it. So each connection gets a :class:`Worker` (one thread, one
connection), and the query API's reads go to a :class:`ReaderPool` of several: in WAL mode
readers do not block each other nor the writer, so slow reads run side by side instead of
queueing behind each other, and at most ``max_waiting`` more wait for a free reader
(:class:`~projector.read_queue.ReadQueue`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from parley.errors import StoreError, StoreUnavailable
from projector.errors import UnknownProjection
from projector.read_queue import ReadQueue

__all__ = ["ReaderPool", "Worker"]

T = TypeVar("T")


class Worker:
    """One connection, used only from its one thread (connected on first use)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._connect = connect
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the worker's thread; ``sqlite3`` errors as StoreErrors."""
        return await self.submit(fn)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """``fn(connection)`` queued on the worker's thread; its future (which cancelling
        does not stop: a statement runs to its end)."""
        return asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._connect()
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, close)
        self._pool.shutdown(wait=True)


class ReaderPool:
    """``size`` workers serving reads in parallel; a read takes whichever is free, in the
    order reads arrived, and raises :class:`~projector.errors.Overloaded` when
    ``max_waiting`` reads wait for one already."""

    def __init__(self, workers: list[Worker], max_waiting: int) -> None:
        self._workers = workers
        self._free: asyncio.Queue[Worker] = asyncio.Queue()
        for worker in workers:
            self._free.put_nowait(worker)
        self.queue = ReadQueue(len(workers), max_waiting)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on a free reader, once one is free."""
        self.queue.enter()
        try:
            worker = await self._free.get()
        except BaseException:
            self.queue.leave()
            raise
        done = worker.submit(fn)

        def free(_: asyncio.Future[T]) -> None:
            # When the thread is done, not when the caller stops waiting (a cancelled read
            # runs to its end): the bound counts the reads the readers really have.
            if not done.cancelled():
                done.exception()  # retrieved here: a caller gone would not
            self._free.put_nowait(worker)
            self.queue.leave()

        done.add_done_callback(free)
        return await asyncio.shield(done)

    async def close(self) -> None:
        for worker in self._workers:
            await worker.close()


def _translate(exc: sqlite3.Error) -> StoreError:
    message = str(exc)
    if "no such table: p_" in message:
        return UnknownProjection("projection does not exist (dropped, or never created)")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return StoreUnavailable(f"SQLite is busy ({message}); nothing was written, try again")
    return StoreError(f"SQLite: {message}")

"""The bound on the query API's reads waiting for a store connection.

A store serves the query API on a few connections of its own (SQLite ``?readers=``,
PostgreSQL ``?read_pool=``); a read that finds them all busy waits for one. Without a bound a
flood of slow reads (each cheap to ask for) would queue there without limit, every request
holding memory and a socket while it waits. :class:`ReadQueue` lets ``readers`` reads run and
``max_waiting`` more wait; one more raises :class:`~projector.errors.Overloaded` at once,
which the API answers 503 ``overloaded`` with ``Retry-After``, as it does for too many
``min_position`` waits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from projector.errors import Overloaded

__all__ = ["DEFAULT_READ_QUEUE", "ReadQueue"]

#: Reads that may wait for a busy read connection, by default (``?read_queue=``).
DEFAULT_READ_QUEUE = 64


class ReadQueue:
    """Admits at most ``readers + max_waiting`` reads at once (running or waiting)."""

    def __init__(self, readers: int, max_waiting: int) -> None:
        self._readers = readers
        self._max_waiting = max_waiting
        self._admitted = 0

    @property
    def waiting(self) -> int:
        """Reads admitted that no connection serves yet (at most ``max_waiting``)."""
        return max(0, self._admitted - self._readers)

    def enter(self) -> None:
        """Count one more read; :class:`Overloaded` (not counted) when ``max_waiting``
        reads wait already. Every ``enter`` is matched by one :meth:`leave`."""
        if self._admitted >= self._readers + self._max_waiting:
            raise Overloaded(f"{self._max_waiting} reads are waiting for a database "
                             "connection already; retry later")
        self._admitted += 1

    def leave(self) -> None:
        """One read is done (or gave up before its connection ran it)."""
        self._admitted -= 1

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """:meth:`enter` before the block, :meth:`leave` after it."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

"""Copies of the search index, and the index that follows whichever copy is live: what makes
the search consumer :class:`~consumers.rebuildable.Rebuildable` (``parley consumers rebuild
search``).

Copies are named ``v1``, ``v2``, …; ``v1`` is where the index always lived (``search.db``,
or the store schema's ``search_*`` tables), so an existing index is the live ``v1`` until a
first rebuild. Where the others live, which one is live, and each copy's handoff offsets
are the backend's :class:`Copies`: :class:`SqliteCopies` here, ``PgCopies`` in
:mod:`consumers.search.pg_copies`.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from aiokafka import TopicPartition

from consumers.api import ConsumedEvent
from consumers.errors import ConsumerError
from consumers.search.index import SearchIndex, SqliteSearchIndex
from consumers.search.queries import SearchPage, SearchQuery
from contracts.domain import DomainEvent
from contracts.state_change import StateChange
from parley.gc_pause import gc_paused
from parley.private_files import private_dir

__all__ = ["Copies", "SqliteCopies", "SwitchingSearchIndex", "next_copy"]

FIRST = "v1"
_NAME = re.compile(r"v(\d+)")


def next_copy(names: Collection[str]) -> str:
    """``v<N+1>`` for the greatest ``vN`` of ``names`` (at least ``v2``: ``v1`` is the first)."""
    numbers = [int(m.group(1)) for n in names if (m := _NAME.fullmatch(n))]
    return f"v{max([1, *numbers]) + 1}"


class Copies(Protocol):
    """Where a backend keeps the search index's copies, which one is live, and handoffs."""

    #: How often :meth:`live_if_changed` may look at the store (seconds).
    check_every_s: float

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def live(self) -> str:
        """The live copy's name."""
    async def live_if_changed(self) -> str | None:
        """The live copy's name if it may have changed since the last call, else None (cheap)."""
    async def names(self) -> list[str]:
        """Every copy that exists."""
    def index(self, name: str) -> SearchIndex:
        """Copy ``name`` as an unopened index."""
    async def create(self, name: str) -> None:
        """An empty copy ``name`` with an empty handoff (dropped first if it existed)."""
    async def set_live(self, name: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Record ``offsets`` as ``name``'s handoff, then make it live, atomically as seen by
        readers of :meth:`live`."""
    async def handoff(self, name: str) -> dict[TopicPartition, int]: ...
    async def forget(self, name: str, tps: Collection[TopicPartition]) -> None: ...
    async def drop(self, name: str) -> None:
        """Remove copy ``name`` (callers never pass the live one)."""


class SwitchingSearchIndex:
    """A :class:`SearchIndex` on the live copy, following it when a rebuild switches copies,
    and the :class:`~consumers.rebuildable.Rebuildable` that builds and switches them.

    The consumer's writes and the API's reads share this object, so both move to the new
    copy together, when the runner asks :meth:`resume_offsets` before a batch.
    """

    def __init__(self, copies: Copies) -> None:
        self.copies = copies  #: where the copies are, which one is live
        self._live: SearchIndex | None = None
        self._name = ""
        self._shadow: SearchIndex | None = None
        self._shadow_name = ""
        self._checked_at = float("-inf")
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._pending = True  # the live copy may hold a handoff not yet resumed

    @property
    def live_name(self) -> str:
        """The copy this object reads and writes (as of its last look)."""
        return self._name

    def _index(self) -> SearchIndex:
        if self._live is None:
            raise ConsumerError("the search index is not open")
        return self._live

    # ------------------------------------------------------------- SearchIndex
    async def open(self) -> None:
        await self.copies.open()
        self._name = await self.copies.live()
        self._live = self.copies.index(self._name)
        await self._live.open()

    async def close(self) -> None:
        for index in (self._shadow, self._live):
            if index is not None:
                await index.close()
        self._shadow = self._live = None
        await self.copies.close()

    async def apply(self, events: Sequence[DomainEvent]) -> None:
        await self._index().apply(events)

    async def apply_states(self, changes: Sequence[StateChange]) -> None:
        await self._index().apply_states(changes)

    async def search(self, query: SearchQuery) -> SearchPage:
        return await self._index().search(query)

    # ----------------------------------------------------- rebuild side (CLI)
    async def create_shadow(self) -> str:
        live = await self.copies.live()
        names = await self.copies.names()
        for name in names:
            if name != live:
                await self.copies.drop(name)  # an interrupted rebuild's, or an old copy
        self._shadow_name = next_copy([*names, live])
        await self.copies.create(self._shadow_name)
        self._shadow = self.copies.index(self._shadow_name)
        await self._shadow.open()
        return self._shadow_name

    async def apply_shadow(self, events: Sequence[ConsumedEvent]) -> None:
        assert self._shadow is not None, "create_shadow first"
        with gc_paused():  # as the consumer's batches (consumers.search.consumer)
            await self._shadow.apply_states([ev.state for ev in events])

    async def switch(self, offsets: Mapping[TopicPartition, int]) -> str:
        assert self._shadow is not None, "create_shadow first"
        shadow, self._shadow = self._shadow, None
        await shadow.close()  # every batch is committed: nothing of it is in flight
        previous = await self.copies.live()
        await self.copies.set_live(self._shadow_name, offsets)
        return previous

    async def handoff_left(self) -> int:
        return len(await self.copies.handoff(await self.copies.live()))

    async def drop(self, name: str) -> None:
        if name == await self.copies.live():
            raise ConsumerError(f"search index copy {name} is live: not dropped")
        if name == self._shadow_name and self._shadow is not None:
            shadow, self._shadow = self._shadow, None
            await shadow.close()
        await self.copies.drop(name)

    # ----------------------------------------------------- live side (runner)
    async def resume_offsets(self, assigned: Collection[TopicPartition]
                             ) -> dict[TopicPartition, int]:
        now = time.monotonic()
        fresh = frozenset(assigned)
        if now - self._checked_at < self.copies.check_every_s and fresh == self._assigned:
            return {}
        self._checked_at, self._assigned = now, fresh
        live = await self.copies.live_if_changed()
        if live is not None and live != self._name:
            new = self.copies.index(live)
            await new.open()
            old, self._live, self._name = self._live, new, live
            if old is not None:
                await old.close()  # after the queries already sent to it
            self._pending = True
        if not self._pending:
            return {}
        handoff = await self.copies.handoff(self._name)
        self._pending = bool(handoff)
        return {tp: offset for tp, offset in handoff.items() if tp in fresh}

    async def resumed(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self.copies.forget(self._name, offsets)


# --------------------------------------------------------------------- SQLite
_HANDOFF = ("CREATE TABLE IF NOT EXISTS handoff (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
            "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition))")


class SqliteCopies:
    """Copies as files beside ``path``: ``v1`` is ``path`` itself (``search.db``), ``vN``
    is ``search.vN.db``. The live copy's name is in ``search.db.live`` (replaced atomically;
    absent: ``v1``); a copy's handoff is a table in its own file."""

    check_every_s = 0.0  # a stat of one file

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.pointer = self.path.with_name(self.path.name + ".live")
        self._seen: tuple[int, int] | None = None
        self._pattern = re.compile(re.escape(self.path.stem) + r"\.(v\d+)" + re.escape(self.path.suffix))

    def file(self, name: str) -> Path:
        return self.path if name == FIRST else self.path.with_name(
            f"{self.path.stem}.{name}{self.path.suffix}")

    async def open(self) -> None:
        self._seen = None

    async def close(self) -> None:
        pass

    def _signature(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.pointer)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    async def live(self) -> str:
        try:
            name = self.pointer.read_text().strip()
        except FileNotFoundError:
            return FIRST
        if not _NAME.fullmatch(name):
            raise ConsumerError(f"{self.pointer}: {name!r} is not a copy name (vN)")
        return name

    async def live_if_changed(self) -> str | None:
        seen = self._signature()
        if seen is not None and seen == self._seen:
            return None
        self._seen = seen
        return await self.live()

    async def names(self) -> list[str]:
        found = [m.group(1) for p in self.path.parent.glob(f"{self.path.stem}.v*")
                 if (m := self._pattern.fullmatch(p.name))]
        return ([FIRST] if self.path.exists() else []) + sorted(found)

    def index(self, name: str) -> SearchIndex:
        return SqliteSearchIndex(self.file(name))

    async def create(self, name: str) -> None:
        await self.drop(name)
        index = self.index(name)
        await index.open()  # the schema, in an owner-only file
        await index.close()

    def _handoff_rows(self, name: str, forget: Collection[TopicPartition] = (),
                      put: Mapping[TopicPartition, int] | None = None) -> dict[TopicPartition, int]:
        """Copy ``name``'s handoff, in one transaction: replaced by ``put``, or less
        ``forget``; then read."""
        db = sqlite3.connect(self.file(name), timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(_HANDOFF)  # copies from before handoffs (v1) have none yet
            if put is not None:
                db.execute("DELETE FROM handoff")
                db.executemany("INSERT INTO handoff VALUES (?, ?, ?)",
                               [(tp.topic, tp.partition, o) for tp, o in put.items()])
            db.executemany("DELETE FROM handoff WHERE topic = ? AND partition = ?",
                           [(tp.topic, tp.partition) for tp in forget])
            rows = db.execute("SELECT topic, partition, next_offset FROM handoff").fetchall()
            db.execute("COMMIT")
        finally:
            db.close()
        return {TopicPartition(t, p): o for t, p, o in rows}

    async def set_live(self, name: str, offsets: Mapping[TopicPartition, int]) -> None:
        await asyncio.to_thread(self._handoff_rows, name, (), offsets)
        # The switch itself: one rename, atomic for every reader, durable before it returns.
        await asyncio.to_thread(_replace_durably, self.pointer, f"{name}\n".encode())

    async def handoff(self, name: str) -> dict[TopicPartition, int]:
        if not self.file(name).exists():
            return {}
        return await asyncio.to_thread(self._handoff_rows, name)

    async def forget(self, name: str, tps: Collection[TopicPartition]) -> None:
        await asyncio.to_thread(self._handoff_rows, name, tps)

    async def drop(self, name: str) -> None:
        base = self.file(name)
        for path in (base, *(base.with_name(base.name + s) for s in ("-wal", "-shm", "-journal"))):
            path.unlink(missing_ok=True)


def _replace_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (owner-only) in one rename, on disk when it returns:
    after a switch the old copy is dropped, so a pointer lost in a crash would lose the index."""
    tmp = path.with_name(f".{path.name}.tmp")
    private_dir(path.parent)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

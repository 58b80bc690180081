"""The key store in a SQLite file of its own (``<data_dir>/keys.db`` by default).

One connection on one worker thread per process; every write is one ``BEGIN IMMEDIATE``
transaction, so two processes creating a first key for one subject are serialised by SQLite's
write lock and the second reads the first's key (guarantee 1 of :mod:`parley.privacy.keys`).
A file apart from the projections: it is backed up, restored and deleted on its own terms
(docs/privacy.md), and ``parley projections drop`` never touches it.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from parley.privacy.datakey import DataKey, new_data_key
from parley.privacy.errors import KeyStoreUnavailable
from parley.privacy.master import MasterKeys
from parley.private_files import private_sqlite
from parley.sqlite_wal import use_wal

__all__ = ["SqliteKeyStore"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS data_keys (
        subject TEXT PRIMARY KEY, generation INTEGER NOT NULL, master_id TEXT,
        wrapped BLOB, created_at TEXT NOT NULL, destroyed_at TEXT)""",
    """CREATE TABLE IF NOT EXISTS subject_links (
        subject TEXT NOT NULL, parent TEXT NOT NULL, PRIMARY KEY (subject, parent))""",
    "CREATE INDEX IF NOT EXISTS subject_links_parent ON subject_links (parent)",
)
_Row = tuple[int, str | None, bytes | None]


class SqliteKeyStore:
    """:class:`~parley.privacy.keys.KeyStore` on a SQLite file (or ``:memory:``)."""

    def __init__(self, path: Path | str, masters: MasterKeys, *, busy_timeout_ms: int = 5000) -> None:
        self._path = path
        self._masters = masters
        self._busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None
        # Waiting for the next write transaction (group commit): first keys by subject,
        # links by (subject, parent).
        self._pending: dict[str, list[asyncio.Future[DataKey | _Row]]] = {}
        self._pending_links: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-keys")

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            db = self._db
            if db is None:
                raise KeyStoreUnavailable("the key store is not open")
            try:
                return fn(db)
            except BaseException as exc:
                if db.in_transaction:
                    db.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise KeyStoreUnavailable(f"the key store {self._path} failed: {exc}") from None
                raise
        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def open(self) -> None:
        if self._db is not None:
            return

        def connect() -> sqlite3.Connection:
            if isinstance(self._path, Path):
                private_sqlite(self._path)
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            use_wal(db)
            db.execute("PRAGMA synchronous = FULL")  # a created key must survive a power cut
            # The write lock first: creating tables from a read snapshot another process has
            # meanwhile changed fails at once, without the busy handler.
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("COMMIT")
            return db
        try:
            self._db = await asyncio.get_running_loop().run_in_executor(self._thread, connect)
        except (sqlite3.Error, OSError) as exc:
            raise KeyStoreUnavailable(f"the key store {self._path} cannot be opened: {exc}") from None

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, db.close)
        self._thread.shutdown(wait=False)

    def _key(self, subject: str, row: _Row | None) -> DataKey | None:
        if row is None or row[1] is None or row[2] is None:
            return None
        return DataKey(subject, row[0], self._masters.unwrap(subject, row[1], row[2]))

    async def get_or_create(self, subject: str, parent: str | None = None) -> DataKey:
        """Group commit: the creations (and links) asked for while one transaction runs are
        made together in the next one (one fsync for many first keys, as the receiver asks
        for them concurrently). The link to ``parent`` joins the same transaction as the
        key: the key's answer is its answer too."""
        future: asyncio.Future[DataKey | _Row] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(subject, []).append(future)
        if parent is not None:
            self._pending_links.setdefault((subject, parent), [])
        self._flush_soon()
        got = await future
        if isinstance(got, DataKey):
            return got
        key = self._key(subject, got)  # unwrapped here: a failure is this subject's alone
        assert key is not None
        return key

    def _flush_soon(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._write_pending())

    async def _write_pending(self) -> None:
        while self._pending or self._pending_links:
            batch, self._pending = self._pending, {}
            links, self._pending_links = self._pending_links, {}
            try:
                keys = await self._call(functools.partial(
                    self._create, subjects=list(batch), links=list(links)))
            except BaseException as exc:  # every waiter gets the failure, none is left hanging
                waiting: list[asyncio.Future[Any]] = [f for fs in batch.values() for f in fs]
                waiting += [f for fs in links.values() for f in fs]
                for f in waiting:
                    if not f.done():
                        f.set_exception(exc if isinstance(exc, Exception) else
                                        KeyStoreUnavailable("the key store was stopped"))
                if not isinstance(exc, Exception):
                    raise
                continue
            for subject, futures in batch.items():
                for f in futures:
                    if not f.done():
                        f.set_result(keys[subject])
            for linked in links.values():
                for done in linked:
                    if not done.done():
                        done.set_result(None)

    def _create(self, db: sqlite3.Connection, *, subjects: list[str],
                links: Sequence[tuple[str, str]] = ()) -> dict[str, DataKey | _Row]:
        """Each subject's live key row, or its key created where there is none, and the
        links, in one transaction: one read of the batch and one insert statement for what
        it lacks (a statement per subject cost more than the keys themselves:
        docs/benchmarks.md, "Privacy"). A key created here is returned as made, not
        unwrapped again."""
        db.execute("BEGIN IMMEDIATE")
        found = self._rows(db, subjects)
        keys: dict[str, DataKey | _Row] = {}
        created: list[tuple[str, int, str, bytes, str]] = []
        now = _now()
        for subject in subjects:
            row = found.get(subject)
            if row is not None and row[1] is not None and row[2] is not None:
                keys[subject] = row  # live: unwrapped by its caller
                continue
            # None yet, or destroyed: the next generation.
            key = DataKey(subject, (row[0] if row else 0) + 1, new_data_key())
            master_id, wrapped = self._masters.wrap(subject, key.secret)
            created.append((subject, key.generation, master_id, wrapped, now))
            keys[subject] = key
        db.executemany(
            "INSERT INTO data_keys (subject, generation, master_id, wrapped, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET"
            " generation = excluded.generation, master_id = excluded.master_id,"
            " wrapped = excluded.wrapped, created_at = excluded.created_at,"
            " destroyed_at = NULL", created)
        db.executemany("INSERT OR IGNORE INTO subject_links (subject, parent) VALUES (?, ?)",
                       links)
        db.execute("COMMIT")
        return keys

    @staticmethod
    def _rows(db: sqlite3.Connection, subjects: Sequence[str]) -> dict[str, _Row]:
        found: dict[str, _Row] = {}
        for start in range(0, len(subjects), 500):  # under SQLite's variable limit
            chunk = subjects[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for subject, *row in db.execute(
                    "SELECT subject, generation, master_id, wrapped FROM data_keys "  # noqa: S608
                    f"WHERE subject IN ({marks})", chunk):
                found[subject] = (row[0], row[1], row[2])
        return found

    async def get(self, subject: str) -> DataKey | None:
        return (await self.get_many([subject]))[subject]

    async def get_many(self, subjects: Sequence[str]) -> dict[str, DataKey | None]:
        wanted = list(dict.fromkeys(subjects))
        rows = await self._call(lambda db: self._rows(db, wanted))
        return {s: self._key(s, rows.get(s)) for s in wanted}

    async def destroy(self, subject: str) -> bool:
        def destroy(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            n = db.execute("UPDATE data_keys SET wrapped = NULL, master_id = NULL, "
                           "destroyed_at = ? WHERE subject = ? AND wrapped IS NOT NULL",
                           (_now(), subject)).rowcount
            db.execute("DELETE FROM subject_links WHERE subject = ?", (subject,))
            db.execute("COMMIT")
            return n > 0
        return await self._call(destroy)

    async def destroyed(self, subjects: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(subjects))
        rows = await self._call(lambda db: self._rows(db, wanted))
        return {s for s, row in rows.items() if row[2] is None}

    async def link(self, subject: str, parent: str) -> None:
        """Group commit, with the first keys (:meth:`get_or_create`): a chat's first webhook
        that names its visitor costs no durable commit of its own."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_links.setdefault((subject, parent), []).append(future)
        self._flush_soon()
        await future

    async def linked(self, parent: str) -> list[str]:
        rows = await self._call(lambda db: db.execute(
            "SELECT subject FROM subject_links WHERE parent = ? ORDER BY subject",
            (parent,)).fetchall())
        return [r[0] for r in rows]

    async def rewrap(self) -> int:
        masters = self._masters

        def rewrap(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT subject, master_id, wrapped FROM data_keys "
                              "WHERE wrapped IS NOT NULL AND master_id <> ?",
                              (masters.current.id,)).fetchall()
            for subject, master_id, wrapped in rows:
                new_id, new_wrapped = masters.wrap(subject, masters.unwrap(subject, master_id, wrapped))
                db.execute("UPDATE data_keys SET master_id = ?, wrapped = ? WHERE subject = ?",
                           (new_id, new_wrapped, subject))
            db.execute("COMMIT")
            return len(rows)
        return await self._call(rewrap)


def _now() -> str:
    return datetime.now(UTC).isoformat()

"""The default :class:`~projector.store.Store`: one SQLite file in WAL mode.

Layout: a registry table of projection copies, a one-row ``live`` pointer, the outbox of
state changes to publish (``parley_outbox``, one per store), and per copy
two tables — ``p_<name>_rows`` (one row per aggregate: encoded fold state, JSON view,
listing columns) and ``p_<name>_offsets`` (next offset per topic partition). A copy is
created, filled and dropped without touching another's tables; ``set_live`` rewrites
the pointer in one transaction, so reads switch copies atomically. SQLite compares table
names ignoring case (``p_V1_rows`` *is* ``p_v1_rows``), so names are canonical (lower
case, :func:`~projector.store.projection_name`) in the registry, the pointer and every
comparison; schema version 2 brought older files' names to that form.

Concurrency: connections each owned by one worker thread (:mod:`projector.sqlite_workers`).
The *writer* runs the runner's path (``load``, ``commit``, schema changes) one call at a
time; the projector's *reader* serves its other reads (``offsets``, the outbox, the live
projection's name for the runner); the query API reads on a pool of ``readers`` connections
of its own (``?readers=``, default 4), where at most ``read_queue`` reads (``?read_queue=``,
default 64) wait for a free one and one more is refused with
:class:`~projector.errors.Overloaded`. WAL lets every reader see the last committed snapshot
while a batch is being written, and readers never block each other: queries never wait for
a commit, slow queries run side by side, and a flood of them never delays the projector.
(An in-memory database has a single connection, so every role shares it.)

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL`` by default. Every commit is
atomic and survives a crash of the process (SIGKILL included): it is in the WAL file
before ``COMMIT`` returns. An OS crash or power cut may roll back the last few commits;
since rows and offsets are in the same transaction they roll back *together*, and the
runner re-reads the log from the restored offsets — nothing lost, nothing counted twice,
at the price of redoing a few batches. ``synchronous=FULL`` (``?synchronous=full`` in the
URL) fsyncs every commit instead, for when what clients have read must survive a power cut.
``busy_timeout`` makes a second process (``parley projections rebuild`` beside ``parley
run``) wait for the write lock instead of failing at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from parley.errors import StoreError
from parley.private_files import private_sqlite
from projector import sqlite_rollups
from projector.errors import LiveProjectionDrop, UnknownProjection
from projector.log_index import INDEXED, LOG_KINDS
from projector.outbox import OutboxEntry, encode_refs, entry_for, new_token
from projector.pg_merge import MERGED_KINDS
from projector.read_queue import DEFAULT_READ_QUEUE
from projector.row_merge import merge_rows, shared_rows
from projector.sqlite_analytics import SqliteShadow
from projector.sqlite_outbox import read_outbox
from projector.sqlite_schema import (
    OUTBOX_DELETE,
    OUTBOX_INSERT,
    ROWS_PER_STATEMENT,
    Sql,
    chunks,
    copy_schema,
    migrate,
    rows_per_statement,
    transaction,
)
from projector.sqlite_shared import in_order, stored_states
from projector.sqlite_workers import ReaderPool, Worker
from projector.states import AggregateRef
from projector.store import (
    CUSTOMER_TYPE,
    KINDS,
    Fingerprint,
    decode_cursor,
    encode_cursor,
    fingerprint,
    projection_name,
)
from projector.views import Row

__all__ = ["SqliteStore"]

Synchronous = Literal["NORMAL", "FULL"]
#: Connections serving the query API's reads, by default (``?readers=``).
DEFAULT_READERS = 4







class SqliteStore:
    """A :class:`~projector.store.Store` in one SQLite file (or ``:memory:``)."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout_ms: int = 5000,
        cache_size_kib: int = 65536,
        readers: int = DEFAULT_READERS,
        read_queue: int = DEFAULT_READ_QUEUE,
        shared: bool = False,
    ) -> None:
        """``shared``: other processes write the same copies at once (a parallel rebuild's
        workers, :mod:`projector.rebuild_worker`): ``commit`` then joins the stored states of
        visitors and agents into the rows it writes (:func:`projector.row_merge.merge_rows`),
        inside its transaction, as the PostgreSQL store always does."""
        self._shared = shared
        self._memory = str(path) == ":memory:"
        self._path = str(path) if self._memory else str(Path(path).absolute())
        self._pragmas = [
            f"PRAGMA busy_timeout = {int(busy_timeout_ms)}",
            f"PRAGMA synchronous = {synchronous}",
            f"PRAGMA cache_size = -{int(cache_size_kib)}",
            "PRAGMA temp_store = MEMORY",
        ]
        self._readers, self._read_queue = readers, read_queue
        self._writer: Worker | None = None
        self._reader: Worker | None = None
        self._api_readers: ReaderPool | None = None
        self._sql: dict[str, Sql] = {}
        self._rows_max = ROWS_PER_STATEMENT  # rows per upsert statement (set by open)

    @property
    def path(self) -> str:
        """The database file (absolute), or ``:memory:``."""
        return self._path

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; no implicit transactions.
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        # 8 KiB pages: rows are a few hundred bytes to a few KiB; measured ~15% faster
        # batch upserts than 4 KiB. Only takes effect when the file is created.
        conn.execute("PRAGMA page_size = 8192")
        for pragma in self._pragmas:
            conn.execute(pragma)
        return conn

    async def open(self) -> None:
        if self._writer is not None:
            return
        if not self._memory:
            private_sqlite(Path(self._path))  # chats and visitors: owner-only, -wal/-shm too
        writer = Worker(self._connect, "parley-sqlite-writer")
        await writer.run(migrate)
        self._rows_max = await writer.run(rows_per_statement)
        if self._memory:
            self._writer = self._reader = writer
            self._api_readers = ReaderPool([writer], self._read_queue)
            return
        self._writer, self._reader = writer, Worker(self._connect, "parley-sqlite-reader")
        self._api_readers = ReaderPool(
            [Worker(self._connect, f"parley-sqlite-api-{i}") for i in range(self._readers)],
            self._read_queue)

    async def close(self) -> None:
        writer, reader, api_readers = self._writer, self._reader, self._api_readers
        self._writer = self._reader = self._api_readers = None
        if not self._memory:  # in memory, the writer is every reader
            if api_readers is not None:
                await api_readers.close()
            if reader is not None:
                await reader.close()
        if writer is not None:
            await writer.close()

    def _w(self) -> Worker:
        if self._writer is None:
            raise StoreError("the store is not open: call `await store.open()` first")
        return self._writer

    def _r(self) -> Worker:
        if self._reader is None:
            raise StoreError("the store is not open: call `await store.open()` first")
        return self._reader

    def _api(self) -> ReaderPool:
        if self._api_readers is None:
            raise StoreError("the store is not open: call `await store.open()` first")
        return self._api_readers

    def _q(self, projection: str) -> Sql:
        sql = self._sql.get(projection)  # by the name as given: no re-validation per call
        if sql is None:
            sql = self._sql[projection] = Sql(projection_name(projection))
        return sql

    # ------------------------------------------------------------------ projections

    async def live_projection(self, *, query: bool = False) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT name FROM parley_live WHERE one = 1").fetchone()
            return None if row is None else str(row[0])

        return await (self._api().run(read) if query else self._r().run(read))

    async def create_projection(self, name: str) -> None:
        name = projection_name(name)
        statements = copy_schema(name) + sqlite_rollups.schema(name)

        def create(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO parley_projections (name) VALUES (?)", (name,))

        await self._w().run(create)

    async def set_live(self, name: str) -> None:
        name = projection_name(name)

        def switch(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                known = conn.execute("SELECT 1 FROM parley_projections WHERE name = ?", (name,)).fetchone()
                if known is None:
                    raise UnknownProjection(f"projection {name!r} does not exist; create it first")
                conn.execute(
                    "INSERT INTO parley_live (one, name) VALUES (1, ?) "
                    "ON CONFLICT (one) DO UPDATE SET name = excluded.name",
                    (name,),
                )

        await self._w().run(switch)

    async def drop_projection(self, name: str) -> None:
        name = projection_name(name)

        def drop(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                live = conn.execute("SELECT name FROM parley_live WHERE one = 1").fetchone()
                if live is not None and live[0] == name:
                    raise LiveProjectionDrop.of(name)
                conn.execute(f'DROP TABLE IF EXISTS "p_{name}_rows"')
                conn.execute(f'DROP TABLE IF EXISTS "p_{name}_offsets"')
                for statement in (*sqlite_rollups.drop(name), *sqlite_rollups.drop(name, "_next")):
                    conn.execute(statement)
                conn.execute(f"DELETE FROM {sqlite_rollups.MARKER} WHERE name = ?", (name,))  # noqa: S608
                conn.execute("DELETE FROM parley_projections WHERE name = ?", (name,))
                conn.execute("DELETE FROM parley_verifications WHERE name = ?", (name,))

        await self._w().run(drop)
        self._sql.pop(name, None)

    async def list_projections(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            return [str(row[0]) for row in conn.execute("SELECT name FROM parley_projections ORDER BY name")]

        return await self._r().run(read)

    async def set_verification(self, name: str, summary: str) -> None:
        name = projection_name(name)

        def keep(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                known = conn.execute("SELECT 1 FROM parley_projections WHERE name = ?", (name,))
                if known.fetchone() is None:
                    raise UnknownProjection(f"projection {name!r} does not exist")
                conn.execute("INSERT INTO parley_verifications (name, summary) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET summary = excluded.summary", (name, summary))

        await self._w().run(keep)

    async def verifications(self) -> dict[str, str]:
        def read(conn: sqlite3.Connection) -> dict[str, str]:
            return {str(n): str(s) for n, s in conn.execute("SELECT name, summary FROM parley_verifications")}

        return await self._r().run(read)

    async def fingerprints(self, projection: str, *, after: tuple[str, str] | None = None,
                           limit: int = 10_000) -> list[Fingerprint]:
        sql = self._q(projection)
        start = after or ("", "")  # every kind is longer than ""

        def read(conn: sqlite3.Connection) -> list[Fingerprint]:
            # Hashed here, in the reader's thread: SQLite has no SHA-256 of its own, and the
            # state bytes never leave the process.
            return [fingerprint(str(kind), str(id), bytes(state))
                    for kind, id, state in conn.execute(sql.keyed, (*start, limit))]

        return await self._r().run(read)

    # ------------------------------------------------------------------ the runner's path

    async def load(self, projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        sql = self._q(projection)
        by_kind: dict[str, list[str]] = {}
        for ref in refs:
            by_kind.setdefault(ref.kind, []).append(ref.id)

        def load(conn: sqlite3.Connection) -> dict[AggregateRef, bytes]:
            found: dict[AggregateRef, bytes] = {}
            for kind, ids in by_kind.items():
                cursor = conn.execute(sql.load, (kind, msgspec.json.encode(ids).decode()))
                for id, state in cursor:
                    found[AggregateRef(kind, id)] = state  # type: ignore[arg-type]
            return found

        if not by_kind:
            return {}
        # The reader, as PostgreSQL's pool: committed states, not queued behind a commit in
        # flight (a rebuild loads while its previous batch is written: Folder.remember).
        return await self._r().run(load)

    async def commit(
        self, projection: str, rows: Sequence[Row], offsets: Mapping[tuple[str, int], int],
        *, publish: bool = False,
    ) -> list[OutboxEntry]:
        sql = self._q(projection)
        token = new_token() if publish else 0
        name = projection_name(projection)
        published = [row for row in rows if row.kind not in LOG_KINDS]  # the index is no state
        outbox = (token, name, bytearray(encode_refs(published))) if publish else None
        # Many rows per statement, not executemany: the thread then holds the GIL once per
        # statement to bind its parameters, and runs the whole upsert without it, so a
        # commit can overlap with folding the next batch (see projector.rebuild) instead of
        # queueing for the GIL twice per row.
        # Shared: the rows of visitors and agents are joined with the stored ones inside the
        # transaction, so only theirs wait for it; every other row's parameters are built
        # here (in the writer thread that would be twice per row, holding the GIL).
        shared = shared_rows(rows) if self._shared else []
        plain = [row for row in rows if row.kind not in MERGED_KINDS] if shared else rows
        statements = [(sql.upsert_rows(n), params) for n, params in chunks(plain, self._rows_max)]
        offset_params = [(topic, partition, offset) for (topic, partition), offset in offsets.items()]

        def commit(conn: sqlite3.Connection) -> None:
            nonlocal rows
            with transaction(conn):
                todo = statements
                if shared:  # holding the write lock: nobody changes them before COMMIT
                    merged = merge_rows(shared, stored_states(conn, sql, shared))
                    todo = statements + [(sql.upsert_rows(n), params)
                                         for n, params in chunks(merged, self._rows_max)]
                    rows = in_order(rows, merged)
                for statement, params in todo:
                    conn.execute(statement, params)
                sqlite_rollups.apply(conn, name, rows)
                if outbox is not None:
                    conn.execute(OUTBOX_INSERT, outbox)
                if offset_params:
                    conn.executemany(sql.upsert_offsets, offset_params)

        await self._w().run(commit)
        return [entry_for(row, token) for row in rows if row.kind not in LOG_KINDS] if publish else []

    async def outbox(self, limit: int) -> list[OutboxEntry]:
        return await self._r().run(lambda conn: read_outbox(conn, limit))

    async def ack_outbox(self, tokens: Sequence[int]) -> None:
        if not tokens:
            return
        commits = msgspec.json.encode(list(tokens)).decode()

        def delete(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(OUTBOX_DELETE, (commits,))

        await self._w().run(delete)

    async def offsets(self, projection: str) -> dict[tuple[str, int], int]:
        sql = self._q(projection)

        def read(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
            return {(topic, partition): offset for topic, partition, offset in conn.execute(sql.offsets)}

        # The reader: read-your-writes polls this while the runner commits, and a new
        # WAL read transaction sees every commit that finished before it began.
        return await self._r().run(read)

    # ------------------------------------------------------------------ the query API's path

    async def get_view(self, projection: str, kind: str, id: str) -> bytes | None:
        sql = self._q(projection)

        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(sql.view, (kind, id)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._api().run(read)

    async def list_chats(
        self,
        projection: str,
        *,
        status: str | None = None,
        source: str | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        chat_type: str | None = None,
    ) -> tuple[list[bytes], str | None]:
        sql = self._q(projection)
        # An agent's chats are a range of the agent index; others walk the listing's index.
        query, args = (sql.chats, list[object]()) if agent is None else (sql.agent_chats, [agent])
        for column, value in (("status", status), ("source", source)):
            if value is not None:
                query += f" AND {column} = ?"
                args.append(value)
        if chat_type is not None:
            # The type is in the view only (no column): a filter, not an index, which is
            # cheap while most chats are customers' (the default listing).
            query += " AND coalesce(json_extract(CAST(view AS TEXT), '$.type'), ?) = ?"
            args.extend((CUSTOMER_TYPE, chat_type))
        return await self._page("chats", query, args, limit, cursor)

    async def list_messages(
        self, projection: str, chat_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[bytes], str | None]:
        bounds = [f"{chat_id}/", f"{chat_id}0", chat_id]
        return await self._page("messages", self._q(projection).messages, bounds, limit, cursor)

    async def list_log(
        self, projection: str, kind: str, id: str, *, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[bytes], str | None]:
        bounds = [INDEXED[kind], f"{id}/", f"{id}0", id]
        return await self._page("log", self._q(projection).log_index, bounds, limit, cursor)

    async def _page(
        self, listing: str, query: str, params: Sequence[object], limit: int, cursor: str | None
    ) -> tuple[list[bytes], str | None]:
        args = list(params)
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if cursor is not None:
            query += " AND (sort_key, id) > (?, ?)"
            args.extend(decode_cursor(listing, cursor))
        query += " ORDER BY sort_key, id LIMIT ?"
        args.append(limit + 1)  # one more than asked: is there a next page?

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, bytes]]:
            return conn.execute(query, args).fetchall()

        rows = await self._api().run(read)
        page = rows[:limit]
        next_cursor = encode_cursor(listing, page[-1][0], page[-1][1]) if len(rows) > limit else None
        return [bytes(view) for _, _, view in page], next_cursor

    async def list_agents(self, projection: str) -> list[bytes]:
        sql = self._q(projection)

        def read(conn: sqlite3.Connection) -> list[bytes]:
            return [bytes(row[0]) for row in conn.execute(sql.agents)]

        return await self._api().run(read)

    async def report_tallies(self, projection: str, dim: str,
                             reads: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, str, bytes]]:
        name = projection_name(projection)
        return await self._api().run(lambda conn: sqlite_rollups.tallies(conn, name, dim, reads))

    async def report_live(self, projection: str) -> sqlite_rollups.Live:
        name = projection_name(projection)
        return await self._api().run(lambda conn: sqlite_rollups.live(conn, name))

    def analytics_shadow(self) -> SqliteShadow:
        """This store's side of ``parley projections rebuild analytics``."""
        return SqliteShadow(self._w(), self._r())

    async def counts(self, projection: str) -> dict[str, int]:
        sql = self._q(projection)

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            counts = dict.fromkeys(KINDS, 0)
            counts.update({str(kind): int(n) for kind, n in conn.execute(sql.counts)})
            return counts

        return await self._api().run(read)

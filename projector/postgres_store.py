"""The scale-out :class:`~projector.store.Store`: PostgreSQL, shared by many projector instances.

Same layout and promises as the SQLite store (see :mod:`projector.pg_schema` for the tables):
rows and partition offsets of a batch in one transaction, isolated projection copies, an
atomic ``set_live``, byte-exact views, keyset pagination. Talks to PostgreSQL through an
asyncpg connection pools: one (``?pool_size=``, default 5) for the runner's path (commits,
loads, offsets, the outbox, the live projection's name) and a smaller one (``?read_pool=``,
default 3) for the query API's reads (views, listings, counts, and the live projection's name
it reads per request). Reads therefore queue for their own connections only: however many
requests are in flight, a commit never waits behind them for a connection, and under
PostgreSQL's MVCC a read never waits for a commit either. At most ``?read_queue=`` reads
(default 64) wait for a read connection; one more raises :class:`~projector.errors.Overloaded`
at once (asyncpg's pool would queue them without bound).

**Several writers.** Every projector instance of one consumer group commits into the same
live copy. Three rules keep their commits exactly-once together:

1. *Partitions have one owner.* Kafka assigns each partition to one instance, and the
   runner finishes its in-flight commit before a revocation completes. Chats and messages
   are keyed by their chat id, so their rows are written by one instance at a time.
2. *Rows written from several partitions are merged, not overwritten.* Visitors and agents
   (:data:`projector.pg_merge.MERGED_KINDS`) are touched from many partitions. ``commit``
   takes a transaction-scoped advisory lock per such row (in sorted order, so two writers
   never deadlock), reads the stored state and writes the *join* of the stored and the new
   state (:func:`projector.pg_merge.join`), with its view rebuilt. Whatever (stale, cached)
   state a writer started from, no other writer's events are lost, and the row equals what
   one writer folding everything would have written. A state of another source than the
   stored one is not joined but dropped (logged): the source that committed the row first
   owns it (:mod:`projector.owners`), so a foreign write cannot win through the merge.
3. *Offsets never move backwards.* An instance that lost its partitions without noticing (a
   "zombie" past its session timeout) could otherwise commit an old batch over its
   successor's progress. A commit whose offset for a partition is below the stored one is
   refused with :class:`StoreConflict` (retriable; nothing written): the runner then seeks
   back to the stored offsets and folds again from there.

A commit also takes its copy's analytics lock shared, before any row: ``parley projections
rebuild analytics`` begins and switches holding it exclusive (:mod:`projector.pg_analytics`).

Failures: a lock wait longer than ``?lock_timeout_ms=`` (default 10 s), a deadlock or a lost
connection raise :class:`~parley.errors.StoreUnavailable` (retriable: the transaction was
rolled back). The store URL — which may carry a password — is never logged nor put in an
error message.

Schema migrations are versioned (:mod:`parley.pg.migrate`) and applied when the store is
opened, unless ``?migrate=off``: then ``open`` refuses a schema that is not current and
``parley store migrate`` applies the migrations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import asyncpg

from parley.errors import StoreError
from parley.pg.migrate import Conn, MigrationStatus, advisory_key, migrate, quote_ident
from parley.pg.url import PostgresOptions, parse_postgres_url
from projector import pg_rollups
from projector.errors import LiveProjectionDrop, UnknownProjection
from projector.log_index import INDEXED, LOG_KINDS
from projector.outbox import OutboxEntry, encode_refs, entry_for, new_token, unwrap_state
from projector.pg_analytics import PgShadow
from projector.pg_errors import StoreConflict, translate
from projector.pg_outbox import ack_outbox, outbox_insert, read_outbox
from projector.pg_schema import (
    STORE_MIGRATIONS,
    CopySql,
    CopyTables,
    copy_ddl,
    rollup_ddl,
    upsert_columns,
)
from projector.read_queue import ReadQueue
from projector.row_merge import latest_rows, merge_rows, shared_rows
from projector.states import AggregateRef
from projector.store import (
    CUSTOMER_TYPE,
    KINDS,
    Fingerprint,
    decode_cursor,
    encode_cursor,
    projection_name,
)
from projector.views import Row

__all__ = ["PostgresStore", "StoreConflict"]

T = TypeVar("T")


class PostgresStore:
    """A :class:`~projector.store.Store` in PostgreSQL; see the module docstring."""

    def __init__(self, options: PostgresOptions) -> None:
        self._options = options
        self._schema = quote_ident(options.schema)
        self._pool: asyncpg.Pool | None = None
        self._read_pool: asyncpg.Pool | None = None
        self._read_queue = ReadQueue(options.read_pool_size, options.read_queue)
        self._sql: dict[str, CopySql] = {}
        self.last_migration: MigrationStatus | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        return cls(parse_postgres_url(url))

    @property
    def where(self) -> str:
        """``host:port/database`` (no credentials) and the schema, for messages."""
        return f"{self._options.where} schema {self._options.schema}"

    async def open(self) -> None:
        if self._pool is not None:
            return
        o = self._options
        pool = await self._create_pool(o.pool_size)
        try:
            async with pool.acquire() as conn:
                status = await migrate(conn, o.schema, "store", STORE_MIGRATIONS,
                                       apply=o.migrate == "auto")
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, Exception):
                raise translate(exc, o.where) from exc
            raise
        if status.pending:
            await pool.close()
            raise StoreError(
                f"the store schema in {self.where} is at version {status.current}, this Parley "
                f"needs {status.latest}: run `parley store migrate` (migrate=off is set)")
        try:
            read_pool = await self._create_pool(o.read_pool_size)
        except BaseException:
            await pool.close()
            raise
        self.last_migration = status
        self._pool, self._read_pool = pool, read_pool

    async def _create_pool(self, size: int) -> asyncpg.Pool:
        o = self._options
        try:
            return await asyncpg.create_pool(
                o.dsn, min_size=1, max_size=size, timeout=10,
                server_settings={"application_name": "parley",
                                 "lock_timeout": f"{o.lock_timeout_ms}ms"})
        except Exception as exc:  # noqa: BLE001 - any failure to connect, without the URL
            raise translate(exc, o.where) from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        read_pool, self._read_pool = self._read_pool, None
        for p in (read_pool, pool):
            if p is not None:
                await p.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[T]], *, read: bool = False) -> T:
        """``fn`` on a connection of the runner's pool, or of the read pool when ``read``
        (where at most ``read_queue`` wait: see the module docstring)."""
        pool = self._read_pool if read else self._pool
        if pool is None:
            raise StoreError("the store is not open: call `await store.open()` first")
        if read:
            with self._read_queue.admit():
                return await self._on(pool, fn)
        return await self._on(pool, fn)

    async def _on(self, pool: asyncpg.Pool, fn: Callable[[Conn], Awaitable[T]]) -> T:
        try:
            async with pool.acquire() as conn:
                return await fn(conn)
        except Exception as exc:
            raise translate(exc, self._options.where) from exc

    def _q(self, projection: str) -> CopySql:
        sql = self._sql.get(projection)  # by the name as given: no re-validation per call
        if sql is None:
            sql = self._sql[projection] = CopySql(CopyTables(self._schema, projection_name(projection)))
        return sql

    async def _ddl_lock(self, conn: Conn) -> None:
        # Copies are created, switched and dropped by several processes (every projector
        # runs ensure_live at start): one at a time, or concurrent CREATE TABLE IF NOT
        # EXISTS can fail on PostgreSQL's catalog constraints.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(self._options.schema, "ddl"))

    # ------------------------------------------------------------------ projections

    async def live_projection(self, *, query: bool = False) -> str | None:
        select = f"SELECT name FROM {self._schema}.parley_live WHERE one = 1"  # noqa: S608

        async def read(conn: Conn) -> str | None:
            name = await conn.fetchval(select)
            return None if name is None else str(name)

        return await self._run(read, read=query)

    async def create_projection(self, name: str) -> None:
        sql = self._q(name)
        name = sql.tables.name  # canonical

        async def create(conn: Conn) -> None:
            async with conn.transaction():
                await self._ddl_lock(conn)
                for statement in (*copy_ddl(sql.tables), *rollup_ddl(sql.tables)):
                    await conn.execute(statement)
                await conn.execute(
                    f"INSERT INTO {self._schema}.parley_projections (name) VALUES ($1) "  # noqa: S608
                    "ON CONFLICT (name) DO NOTHING", name)

        await self._run(create)

    async def set_live(self, name: str) -> None:
        name = projection_name(name)
        schema = self._schema

        async def switch(conn: Conn) -> None:
            async with conn.transaction():
                await self._ddl_lock(conn)
                known = await conn.fetchval(
                    f"SELECT 1 FROM {schema}.parley_projections WHERE name = $1", name)  # noqa: S608
                if known is None:
                    raise UnknownProjection(f"projection {name!r} does not exist; create it first")
                await conn.execute(
                    f"INSERT INTO {schema}.parley_live (one, name) VALUES (1, $1) "  # noqa: S608
                    "ON CONFLICT (one) DO UPDATE SET name = excluded.name", name)

        await self._run(switch)

    async def drop_projection(self, name: str) -> None:
        name = projection_name(name)
        tables = CopyTables(self._schema, name)
        schema = self._schema

        async def drop(conn: Conn) -> None:
            async with conn.transaction():
                await self._ddl_lock(conn)
                live = await conn.fetchval(f"SELECT name FROM {schema}.parley_live WHERE one = 1")  # noqa: S608
                if live == name:
                    raise LiveProjectionDrop.of(name)
                # Waits for a runner's commit in flight into this copy; its next one fails
                # with UnknownProjection and the runner follows the live copy.
                await conn.execute(f"DROP TABLE IF EXISTS {tables.rows}, {tables.offsets}, "
                                   f"{tables.facts}, {tables.rollups}, {tables.facts_next}, "
                                   f"{tables.rollups_next}, {tables.views_next}")
                await conn.execute(f"DELETE FROM {tables.marker} WHERE name = $1", name)  # noqa: S608
                await conn.execute(f"DELETE FROM {schema}.parley_projections WHERE name = $1", name)  # noqa: S608
                await conn.execute(f"DELETE FROM {schema}.parley_verifications WHERE name = $1", name)  # noqa: S608

        await self._run(drop)
        self._sql.pop(name, None)

    async def list_projections(self) -> list[str]:
        query = f"SELECT name FROM {self._schema}.parley_projections ORDER BY name COLLATE \"C\""  # noqa: S608

        async def read(conn: Conn) -> list[str]:
            return [str(row[0]) for row in await conn.fetch(query)]

        return await self._run(read)

    async def set_verification(self, name: str, summary: str) -> None:
        name = projection_name(name)
        schema = self._schema

        async def keep(conn: Conn) -> None:
            async with conn.transaction():
                await self._ddl_lock(conn)  # not beside a drop of the copy
                known = await conn.fetchval(
                    f"SELECT 1 FROM {schema}.parley_projections WHERE name = $1", name)  # noqa: S608
                if known is None:
                    raise UnknownProjection(f"projection {name!r} does not exist")
                await conn.execute(
                    f"INSERT INTO {schema}.parley_verifications (name, summary) VALUES ($1, $2) "  # noqa: S608
                    "ON CONFLICT (name) DO UPDATE SET summary = excluded.summary", name, summary)

        await self._run(keep)

    async def verifications(self) -> dict[str, str]:
        query = f"SELECT name, summary FROM {self._schema}.parley_verifications"  # noqa: S608

        async def read(conn: Conn) -> dict[str, str]:
            return {str(r[0]): str(r[1]) for r in await conn.fetch(query)}

        return await self._run(read)

    async def fingerprints(self, projection: str, *, after: tuple[str, str] | None = None,
                           limit: int = 10_000) -> list[Fingerprint]:
        sql = self._q(projection)
        kind, id = after or ("", "")

        async def read(conn: Conn) -> list[Fingerprint]:
            return [Fingerprint(str(r[0]), str(r[1]), bytes(r[2]), unwrap_state(bytes(r[3]))[0])
                    for r in await conn.fetch(sql.keyed, kind, id, limit)]

        return await self._run(read)

    # ------------------------------------------------------------------ the runner's path

    async def load(self, projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        sql = self._q(projection)
        by_kind: dict[str, list[str]] = {}
        for ref in refs:
            by_kind.setdefault(ref.kind, []).append(ref.id)
        if not by_kind:
            return {}

        async def load(conn: Conn) -> dict[AggregateRef, bytes]:
            found: dict[AggregateRef, bytes] = {}
            for kind, ids in by_kind.items():
                for id, state in await conn.fetch(sql.load, kind, ids):
                    found[AggregateRef(kind, id)] = state  # type: ignore[arg-type]
            return found

        return await self._run(load)

    async def commit(
        self, projection: str, rows: Sequence[Row], offsets: Mapping[tuple[str, int], int],
        *, publish: bool = False,
    ) -> list[OutboxEntry]:
        sql = self._q(projection)
        latest = latest_rows(rows)  # a later row of the batch wins (moves add up)
        # Sorted: concurrent writers take their row locks in the same order.
        batch = [latest[key] for key in sorted(latest)]
        parts = sorted(offsets)
        token = new_token() if publish else 0
        written: list[Row] = []

        async def commit(conn: Conn) -> None:
            written.clear()  # a retried transaction starts over
            async with conn.transaction():
                # Before any row lock: a rebuild of the analytics starts and switches holding
                # it exclusive (projector/pg_analytics.py), never waiting on this commit's rows.
                await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", sql.tables.analytics_key)
                merged = await self._merge(conn, sql, batch)
                if merged:
                    await conn.execute(sql.upsert_rows, *upsert_columns(merged))
                    await pg_rollups.apply(conn, sql.tables, merged)
                states = [row for row in merged if row.kind not in LOG_KINDS]  # the index is no state
                if publish and states:
                    # The rows as written (merged): the outbox says what the store holds.
                    written.extend(states)
                    await conn.execute(outbox_insert(self._schema), token, sql.tables.name,
                                       encode_refs(states))
                if parts:
                    moved = await conn.fetch(sql.upsert_offsets, [t for t, _ in parts],
                                             [p for _, p in parts], [offsets[tp] for tp in parts])
                    if len(moved) != len(parts):
                        behind = sorted(set(parts) - {(r[0], r[1]) for r in moved})
                        raise StoreConflict(
                            f"another writer already committed past this batch in {behind}; "
                            "nothing was written: re-read the stored offsets")

        await self._run(commit)
        return [entry_for(row, token) for row in written]

    async def _merge(self, conn: Conn, sql: CopySql, batch: list[Row]) -> list[Row]:
        """Rule 2: lock the rows several partitions write, and join their stored states in."""
        shared = shared_rows(batch)
        if not shared:
            return batch
        schema = self._options.schema
        # The canonical name: writers that spell the copy differently lock the same rows.
        keys = sorted({advisory_key(schema, sql.tables.name, row.kind, row.id) for row in shared})
        await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", keys)
        stored = {(kind, id): state for kind, id, state in await conn.fetch(
            sql.load_pairs, [row.kind for row in shared], [row.id for row in shared])}
        return merge_rows(batch, stored)

    async def outbox(self, limit: int) -> list[OutboxEntry]:
        projections = set(await self.list_projections())
        return await self._run(lambda conn: read_outbox(conn, self._schema, limit, projections,
                                                        lambda name: self._q(name).rows_of))

    async def ack_outbox(self, tokens: Sequence[int]) -> None:
        if tokens:
            await self._run(lambda conn: ack_outbox(conn, self._schema, tokens))

    async def offsets(self, projection: str) -> dict[tuple[str, int], int]:
        sql = self._q(projection)

        async def read(conn: Conn) -> dict[tuple[str, int], int]:
            return {(topic, partition): offset for topic, partition, offset in await conn.fetch(sql.offsets)}

        return await self._run(read)

    # ------------------------------------------------------------------ the query API's path

    async def get_view(self, projection: str, kind: str, id: str) -> bytes | None:
        sql = self._q(projection)

        async def read(conn: Conn) -> bytes | None:
            view = await conn.fetchval(sql.view, kind, id)
            return None if view is None else bytes(view)

        return await self._run(read, read=True)

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
        query, args = self._q(projection).chats, list[object]()
        for column, value in (("status", status), ("source", source), ("agent_id", agent)):
            if value is not None:
                args.append(value)
                query += f" AND {column} = ${len(args)}"
        if chat_type is not None:  # in the view only: see SqliteStore.list_chats
            args.extend((CUSTOMER_TYPE, chat_type))
            query += (f" AND coalesce(convert_from(view, 'UTF8')::jsonb ->> 'type', ${len(args) - 1})"
                      f" = ${len(args)}")
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
            args.extend(decode_cursor(listing, cursor))
            query += f" AND (sort_key, id) > (${len(args) - 1}, ${len(args)})"
        args.append(limit + 1)  # one more than asked: is there a next page?
        query += f" ORDER BY sort_key, id LIMIT ${len(args)}"

        async def read(conn: Conn) -> list[asyncpg.Record]:
            return await conn.fetch(query, *args)

        rows = await self._run(read, read=True)
        page = rows[:limit]
        next_cursor = encode_cursor(listing, page[-1][0], page[-1][1]) if len(rows) > limit else None
        return [bytes(row[2]) for row in page], next_cursor

    async def list_agents(self, projection: str) -> list[bytes]:
        sql = self._q(projection)

        async def read(conn: Conn) -> list[bytes]:
            return [bytes(row[0]) for row in await conn.fetch(sql.agents)]

        return await self._run(read, read=True)

    async def report_tallies(self, projection: str, dim: str,
                             reads: Sequence[tuple[str, int, int]]) -> list[tuple[str, int, str, bytes]]:
        tables = self._q(projection).tables
        return await self._run(lambda conn: pg_rollups.tallies(conn, tables, dim, reads),
                               read=True)

    async def report_live(self, projection: str) -> tuple[int, int | None, dict[str, int]]:
        tables = self._q(projection).tables
        return await self._run(lambda conn: pg_rollups.live(conn, tables), read=True)

    def analytics_shadow(self) -> PgShadow:
        """This store's side of ``parley projections rebuild analytics``."""
        return PgShadow(self._run, self._ddl_lock, self._options.schema)

    async def counts(self, projection: str) -> dict[str, int]:
        sql = self._q(projection)

        async def read(conn: Conn) -> dict[str, int]:
            counts = dict.fromkeys(KINDS, 0)
            counts.update({str(kind): int(n) for kind, n in await conn.fetch(sql.counts)})
            return counts

        return await self._run(read, read=True)

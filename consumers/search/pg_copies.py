"""Copies of the search index in PostgreSQL (see :mod:`consumers.search.copies`).

``v1`` is the store schema's ``search_*`` tables (where the index always lived); ``vN`` is a
schema of its own, ``<schema>_search_vN``, with the same migrated tables. The live copy's name
is the one row of ``<schema>.search_live`` (none: ``v1``); a copy's handoff is the table
``search_handoff`` of its schema. :meth:`PgCopies.set_live` writes the handoff and the row in
one transaction, so every process sees the switch at once, with its handoff.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from consumers.errors import ConsumerError
from consumers.search.copies import FIRST
from consumers.search.index import SearchIndex
from consumers.search.pg_index import PgSearchIndex
from parley.pg.migrate import Conn, quote_ident
from parley.pg.url import parse_postgres_url

__all__ = ["PgCopies", "live_search_schema"]


async def live_search_schema(conn: Conn, schema: str) -> str:
    """The schema of the live search index copy of store schema ``schema`` (for ``parley
    store migrate``: after a rebuild, the live copy is no longer in the store's schema)."""
    live = f"{quote_ident(schema)}.search_live"
    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", live):
        return schema
    name = await conn.fetchval(f"SELECT copy FROM {live}")  # noqa: S608
    return schema if name in (None, FIRST) else f"{schema}_search_{name}"


class PgCopies:
    """The search index's copies in the store's PostgreSQL database (``url``: the store URL)."""

    check_every_s = 1.0  # a query: at most once a second per process (and on rebalances)

    def __init__(self, url: str) -> None:
        self._url = url
        self._options = parse_postgres_url(url)
        self._schema = self._options.schema
        self._pool: asyncpg.Pool | None = None
        self._seen: str | None = None

    def schema_of(self, name: str) -> str:
        if name == FIRST:
            return self._schema
        schema = f"{self._schema}_search_{name}"
        if len(schema) > 63:
            raise ConsumerError(f"schema {schema!r} for search index copy {name} is longer than "
                                "PostgreSQL's 63 characters: use a shorter store schema name")
        return schema

    def _table(self, name: str, table: str) -> str:
        return f"{quote_ident(self.schema_of(name))}.{table}"

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._options.dsn, min_size=0, max_size=1, timeout=10,
                server_settings={"application_name": "parley-search-copies"})

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ConsumerError("the search index copies are not open")
        return self._pool

    async def live(self) -> str:
        live = self._table(FIRST, "search_live")
        async with self._p().acquire() as conn:
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", live):
                return FIRST
            name = await conn.fetchval(f"SELECT copy FROM {live}")  # noqa: S608
        return str(name) if name is not None else FIRST

    async def live_if_changed(self) -> str | None:
        name = await self.live()
        if name == self._seen:
            return None
        self._seen = name
        return name

    async def names(self) -> list[str]:
        async with self._p().acquire() as conn:
            first = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                        self._table(FIRST, "search_chats"))
            prefix = f"{self._schema}_search_"
            rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE left(nspname, $2) = $1",
                                    prefix, len(prefix))
        found = sorted(r[0][len(prefix):] for r in rows)
        return ([FIRST] if first else []) + [n for n in found if n != FIRST]

    def index(self, name: str) -> SearchIndex:
        return PgSearchIndex(self._url, schema=self.schema_of(name))

    async def create(self, name: str) -> None:
        await self.drop(name)
        index = self.index(name)
        await index.open()  # creates the schema and migrates its tables
        await index.close()
        async with self._p().acquire() as conn:
            await conn.execute(self._handoff_table(name))

    def _handoff_table(self, name: str) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self._table(name, 'search_handoff')} ("
                "topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL, "
                "PRIMARY KEY (topic, partition))")

    async def set_live(self, name: str, offsets: Mapping[TopicPartition, int]) -> None:
        live = self._table(FIRST, "search_live")
        handoff = self._table(name, "search_handoff")
        async with self._p().acquire() as conn, conn.transaction():
            await conn.execute(self._handoff_table(name))
            await conn.execute(f"DELETE FROM {handoff}")  # noqa: S608
            await conn.executemany(f"INSERT INTO {handoff} VALUES ($1, $2, $3)",  # noqa: S608
                                   [(tp.topic, tp.partition, o) for tp, o in offsets.items()])
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace "
                                       "WHERE nspname = $1)", self._schema):
                await conn.execute(f"CREATE SCHEMA {quote_ident(self._schema)}")
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {live} (one BOOLEAN PRIMARY KEY "
                               "DEFAULT true CHECK (one), copy TEXT NOT NULL)")
            await conn.execute(f"INSERT INTO {live} (copy) VALUES ($1) ON CONFLICT (one) "  # noqa: S608
                               "DO UPDATE SET copy = excluded.copy", name)

    async def handoff(self, name: str) -> dict[TopicPartition, int]:
        table = self._table(name, "search_handoff")
        async with self._p().acquire() as conn:
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                return {}
            rows: list[Any] = await conn.fetch(
                f"SELECT topic, partition, next_offset FROM {table}")  # noqa: S608
        return {TopicPartition(r[0], r[1]): r[2] for r in rows}

    async def forget(self, name: str, tps: Collection[TopicPartition]) -> None:
        async with self._p().acquire() as conn:
            await conn.executemany(
                f"DELETE FROM {self._table(name, 'search_handoff')} "  # noqa: S608
                "WHERE topic = $1 AND partition = $2", [(tp.topic, tp.partition) for tp in tps])

    async def drop(self, name: str) -> None:
        async with self._p().acquire() as conn, conn.transaction():
            if name != FIRST:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(self.schema_of(name))} "
                                   "CASCADE")
                return
            # v1 shares the store's schema: only the search index's own tables go.
            await conn.execute(f"DROP TABLE IF EXISTS {self._table(FIRST, 'search_chats')}, "
                               f"{self._table(FIRST, 'search_messages')}, "
                               f"{self._table(FIRST, 'search_handoff')}")
            migrations = self._table(FIRST, "parley_migrations")
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", migrations):
                await conn.execute(f"DELETE FROM {migrations} WHERE component = 'search'")  # noqa: S608

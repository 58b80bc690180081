"""The PostgreSQL store's side of ``parley projections rebuild analytics``
(:class:`~projector.analytics_shadow.Shadow`): a copy's roll-ups rebuilt into a shadow pair
(``p_<copy>_facts_next``, ``p_<copy>_rollups_next``) beside the live ones, then renamed in.

Several projector instances commit at once, so the steps lock:

* every commit takes the copy's analytics lock *shared* before it touches a roll-up table,
  then reads whether the copy is listed in ``parley_analytics``
  (:func:`projector.pg_rollups.apply`). The start and the switch take it *exclusive*: they
  wait for the commits in flight, and the commits after them wait for them, so each commit
  moves the shadow if and only if it commits after the start (and before the switch);
* a step of the walk locks the shadow's fact rows of its chats (made empty first if
  missing) before it reads their states, and a commit locks the same rows before it moves
  the shadow: of a step and a commit of one chat, the second waits for the first, reads the
  state or fact it left, and moves the tallies by the difference, so they commute.

Readers see the live roll-ups until the switch commits (it holds the tables' locks for the
moment of the renames), then the new ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from parley.pg.migrate import Conn, advisory_key, quote_ident
from projector import pg_rollups
from projector.analytics_shadow import Walked, changed_views, online_part, rows_of, stale
from projector.errors import UnknownProjection
from projector.pg_schema import CopyTables, rollup_ddl, shadow_names
from projector.rollups import TIMELINE
from projector.store import projection_name

__all__ = ["PgShadow", "abandon", "begin", "shadowed", "switch", "walk"]

T = TypeVar("T")


class Runs(Protocol):
    """The store's ``_run``: ``fn`` on a connection of its pool, errors translated."""

    def __call__(self, fn: Callable[[Conn], Awaitable[T]], /) -> Awaitable[T]: ...


class PgShadow:
    """:class:`~projector.analytics_shadow.Shadow` on a :class:`~projector.postgres_store.PostgresStore`'s
    pool; each call one transaction (the start, switch and abandon under the store's DDL
    lock, like the creation and drop of a copy)."""

    def __init__(self, run: Runs, ddl_lock: Callable[[Conn], Awaitable[None]], schema: str) -> None:
        """``schema``: unquoted, as configured."""
        self._run, self._ddl_lock = run, ddl_lock
        self._plain, self._schema = schema, quote_ident(schema)
        self._token = ""  # set by begin: no marker has it before

    def _tables(self, name: str) -> CopyTables:
        return CopyTables(self._schema, projection_name(name))

    async def begin(self, name: str) -> int:
        tables = self._tables(name)
        token = self._token = uuid.uuid4().hex

        async def go(conn: Conn) -> int:
            async with conn.transaction():
                await self._ddl_lock(conn)
                return await begin(conn, tables, f"{self._schema}.parley_projections", token)

        return await self._run(go)

    async def walk(self, name: str, kind: Walked, after: str, limit: int) -> tuple[str | None, int]:
        tables = self._tables(name)

        async def go(conn: Conn) -> tuple[str | None, int]:
            async with conn.transaction():
                return await walk(conn, tables, self._plain, self._token, kind, after, limit)

        return await self._run(go)

    async def switch(self, name: str) -> None:
        tables = self._tables(name)

        async def go(conn: Conn) -> None:
            async with conn.transaction():
                await self._ddl_lock(conn)
                await switch(conn, tables, self._token)

        await self._run(go)

    async def abandon(self, name: str) -> None:
        tables = self._tables(name)

        async def go(conn: Conn) -> None:
            async with conn.transaction():
                await self._ddl_lock(conn)
                await abandon(conn, tables, self._token or None)

        await self._run(go)

    async def shadowed(self) -> list[str]:
        marker = f"{self._schema}.parley_analytics"
        return await self._run(lambda conn: shadowed(conn, marker))


async def _lock(conn: Conn, tables: CopyTables) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", tables.analytics_key)


async def _ours(conn: Conn, tables: CopyTables, token: str) -> None:
    """StaleRebuild unless the copy is marked with ``token``."""
    marked = await conn.fetchval(f"SELECT token FROM {tables.marker} WHERE name = $1", tables.name)  # noqa: S608
    if marked is None or marked != token:
        raise stale(tables.name)


async def begin(conn: Conn, tables: CopyTables, registry: str, token: str) -> int:
    """:meth:`Shadow.begin` (the caller holds the store's DDL lock in its transaction)."""
    if await conn.fetchval(f"SELECT 1 FROM {registry} WHERE name = $1", tables.name) is None:  # noqa: S608
        raise UnknownProjection(f"projection {tables.name!r} does not exist")
    await _lock(conn, tables)
    await conn.execute(f"DROP TABLE IF EXISTS {tables.facts_next}, {tables.rollups_next}, "
                       f"{tables.views_next}")
    for statement in rollup_ddl(tables, shadow=True):
        await conn.execute(statement)
    days = [(str(r[0]), int(r[1]), bytes(r[2])) for r in await conn.fetch(
        f"SELECT value, period, tally FROM {tables.rollups} "  # noqa: S608
        "WHERE grain = 'd' AND dim = $1 AND tally <> ''::bytea", TIMELINE)]
    part = sorted(online_part(days).items())
    if part:
        await conn.execute(
            f"INSERT INTO {tables.rollups_next} (grain, dim, period, value, tally) "  # noqa: S608
            "SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bytea[])",
            [k[0] for k, _ in part], [k[1] for k, _ in part], [k[3] for k, _ in part],
            [k[2] for k, _ in part], [t for _, t in part])
    await conn.execute(f"INSERT INTO {tables.marker} (name, token) VALUES ($1, $2) "  # noqa: S608
                       "ON CONFLICT (name) DO UPDATE SET token = excluded.token, started_at = now()",
                       tables.name, token)
    return int(await conn.fetchval(
        f"SELECT count(*) FROM {tables.rows} WHERE kind IN ('chat', 'agent')"))  # noqa: S608


async def walk(conn: Conn, tables: CopyTables, schema: str, token: str, kind: Walked,
               after: str, limit: int) -> tuple[str | None, int]:
    """:meth:`Shadow.walk`, in the caller's transaction (``schema``: unquoted, for the
    agents' row locks)."""
    await _ours(conn, tables, token)
    ids = [str(r[0]) for r in await conn.fetch(
        f"SELECT id FROM {tables.rows} WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3",  # noqa: S608
        kind, after, limit)]
    if not ids:
        return None, 0
    if kind == "chat":
        await pg_rollups.lock_facts(conn, tables.facts_next, ids)
    else:  # the lock every commit of an agent row takes (postgres_store, rule 2)
        keys = sorted({advisory_key(schema, tables.name, kind, id) for id in ids})
        await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", keys)
    # Read after the locks (a new statement, a new snapshot): a commit of one of these rows
    # either committed before (its state is read here) or waits to move the shadow after.
    stored = [(str(r[0]), bytes(r[1]), bytes(r[2])) for r in await conn.fetch(
        f"SELECT id, state, view FROM {tables.rows} WHERE kind = $1 AND id = ANY($2::text[])",  # noqa: S608
        kind, ids)]
    rows = rows_of(kind, [(id, state) for id, state, _ in stored])
    if kind == "chat":
        await pg_rollups.apply_to(conn, tables.facts_next, tables.rollups_next,
                                  {row.id: row for row in rows}, (), walked=True)
    views = changed_views(rows, {id: view for id, _, view in stored})
    if views:
        await conn.execute(
            f"INSERT INTO {tables.views_next} (kind, id, view) "  # noqa: S608
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) "
            "ON CONFLICT (kind, id) DO UPDATE SET view = excluded.view",
            [v[0] for v in views], [v[1] for v in views], [v[2] for v in views])
    return ids[-1], len(ids)


async def switch(conn: Conn, tables: CopyTables, token: str) -> None:
    """:meth:`Shadow.switch`, in the caller's transaction."""
    await _lock(conn, tables)
    await _ours(conn, tables, token)
    base = tables.base
    fk, rk, open_ = shadow_names(tables)
    schema = tables.rows.rsplit(".", 1)[0]
    await conn.execute(f"UPDATE {tables.rows} AS r SET view = n.view FROM {tables.views_next} AS n "  # noqa: S608
                       "WHERE r.kind = n.kind AND r.id = n.id")
    await conn.execute(f"DROP TABLE {tables.facts}, {tables.rollups}, {tables.views_next}")
    for table, key, live_key in ((tables.facts_next, fk, "_facts"), (tables.rollups_next, rk, "_rollups")):
        await conn.execute(f"ALTER TABLE {table} RENAME TO {quote_ident(base + live_key)}")
        await conn.execute(f"ALTER INDEX {schema}.{quote_ident(key)} "
                           f"RENAME TO {quote_ident(base + live_key + '_pkey')}")
    await conn.execute(f"ALTER INDEX {schema}.{quote_ident(open_)} RENAME TO {tables.open_index}")
    await conn.execute(f"DELETE FROM {tables.marker} WHERE name = $1", tables.name)  # noqa: S608


async def abandon(conn: Conn, tables: CopyTables, token: str | None) -> None:
    """:meth:`Shadow.abandon`, in the caller's transaction; with ``token``, only the shadow
    of the rebuild marked with it."""
    await _lock(conn, tables)
    marked = await conn.fetchval(f"SELECT token FROM {tables.marker} WHERE name = $1", tables.name)  # noqa: S608
    if marked is not None and token is not None and marked != token:
        return  # another rebuild's shadow now: not ours to drop
    await conn.execute(f"DROP TABLE IF EXISTS {tables.facts_next}, {tables.rollups_next}, "
                       f"{tables.views_next}")
    await conn.execute(f"DELETE FROM {tables.marker} WHERE name = $1", tables.name)  # noqa: S608


async def shadowed(conn: Conn, marker: str) -> list[str]:
    """The copies listed in ``marker`` (``parley_analytics``)."""
    return [str(r[0]) for r in await conn.fetch(f"SELECT name FROM {marker} ORDER BY name")]  # noqa: S608

"""The key store in PostgreSQL: table ``parley_data_keys`` (and ``parley_subject_links``) in
the database and schema of its URL (by default the projector's store).

For several receivers and projectors at once. A first key is created with
``INSERT … ON CONFLICT DO UPDATE … WHERE wrapped IS NULL RETURNING``: of two receivers
creating one subject's first key at once, exactly one insert wins and the other reads the
winner's row (guarantee 1 of :mod:`parley.privacy.keys`). The tables are created by the
``keys`` component of :mod:`parley.pg.migrate` when the store opens (``migrate=off``:
``parley store migrate`` does it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from parley.pg.migrate import Conn, Migration, migrate, quote_ident
from parley.pg.url import parse_postgres_url
from parley.privacy.datakey import DataKey, new_data_key
from parley.privacy.errors import KeyStoreUnavailable, MasterKeyError
from parley.privacy.master import MasterKeys

__all__ = ["KEY_MIGRATIONS", "PostgresKeyStore"]

T = TypeVar("T")

KEY_MIGRATIONS = (
    Migration(version=1, description="data keys per subject, and chat-to-visitor links",
              statements=lambda s: (
                  f"""CREATE TABLE IF NOT EXISTS {s}.parley_data_keys (
                      subject TEXT PRIMARY KEY, generation INTEGER NOT NULL, master_id TEXT,
                      wrapped BYTEA, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                      destroyed_at TIMESTAMPTZ)""",
                  f"""CREATE TABLE IF NOT EXISTS {s}.parley_subject_links (
                      subject TEXT NOT NULL, parent TEXT NOT NULL, PRIMARY KEY (subject, parent))""",
                  f"CREATE INDEX IF NOT EXISTS parley_subject_links_parent "
                  f"ON {s}.parley_subject_links (parent)",
              )),
)


class PostgresKeyStore:
    """:class:`~parley.privacy.keys.KeyStore` on PostgreSQL (a small pool of its own)."""

    def __init__(self, url: str, masters: MasterKeys, *, pool_size: int = 4) -> None:
        self._options = parse_postgres_url(url)
        self._masters = masters
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        s = quote_ident(self._options.schema)
        self._keys, self._links = f"{s}.parley_data_keys", f"{s}.parley_subject_links"
        self._link_sql = (f"INSERT INTO {self._links} (subject, parent) VALUES ($1, $2) "  # noqa: S608
                          "ON CONFLICT DO NOTHING")

    async def _on(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise KeyStoreUnavailable("the key store is not open")
        try:
            async with pool.acquire() as conn:
                return await fn(conn)
        except MasterKeyError:
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise KeyStoreUnavailable(f"the key store at {self._options.where} failed: "
                                      f"{type(exc).__name__}") from None

    async def open(self) -> None:
        if self._pool is not None:
            return
        o = self._options
        try:
            pool = await asyncpg.create_pool(o.dsn, min_size=1, max_size=self._pool_size,
                                             timeout=10,
                                             server_settings={"application_name": "parley-keys"})
        except Exception as exc:  # noqa: BLE001 - any failure to connect, never the URL
            raise KeyStoreUnavailable(f"the key store at {o.where} cannot be reached: "
                                      f"{type(exc).__name__}") from None
        try:
            async with pool.acquire() as conn:
                await migrate(conn, o.schema, "keys", KEY_MIGRATIONS, apply=o.migrate == "auto")
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _key(self, subject: str, row: Any) -> DataKey | None:
        if row is None or row["wrapped"] is None:
            return None
        return DataKey(subject, row["generation"],
                       self._masters.unwrap(subject, row["master_id"], bytes(row["wrapped"])))

    async def get_or_create(self, subject: str, parent: str | None = None) -> DataKey:
        master_id, wrapped = self._masters.wrap(subject, new_data_key())

        async def create(conn: Conn) -> Any:
            if parent is None:
                return await upsert(conn)
            async with conn.transaction():  # the key and its link in one commit
                await conn.execute(self._link_sql, subject, parent)
                return await upsert(conn)

        async def upsert(conn: Conn) -> Any:
            row = await conn.fetchrow(
                f"INSERT INTO {self._keys} AS k (subject, generation, master_id, wrapped) "  # noqa: S608
                "VALUES ($1, 1, $2, $3) ON CONFLICT (subject) DO UPDATE SET "
                "generation = k.generation + 1, master_id = excluded.master_id, "
                "wrapped = excluded.wrapped, created_at = now(), destroyed_at = NULL "
                "WHERE k.wrapped IS NULL RETURNING generation, master_id, wrapped",
                subject, master_id, wrapped)
            if row is None:  # a live key exists (maybe created by another process just now)
                row = await conn.fetchrow(
                    f"SELECT generation, master_id, wrapped FROM {self._keys} "  # noqa: S608
                    "WHERE subject = $1", subject)
            return row
        key = self._key(subject, await self._on(create))
        if key is None:  # destroyed between the two statements: create its next generation
            return await self.get_or_create(subject, parent)
        return key

    async def get(self, subject: str) -> DataKey | None:
        return (await self.get_many([subject]))[subject]

    async def get_many(self, subjects: Sequence[str]) -> dict[str, DataKey | None]:
        wanted = list(dict.fromkeys(subjects))
        rows = await self._on(lambda conn: conn.fetch(
            f"SELECT subject, generation, master_id, wrapped FROM {self._keys} "  # noqa: S608
            "WHERE subject = ANY($1::text[])", wanted))
        found = {r["subject"]: r for r in rows}
        return {s: self._key(s, found.get(s)) for s in wanted}

    async def destroy(self, subject: str) -> bool:
        async def destroy(conn: Conn) -> bool:
            async with conn.transaction():
                status = await conn.execute(
                    f"UPDATE {self._keys} SET wrapped = NULL, master_id = NULL, "  # noqa: S608
                    "destroyed_at = now() WHERE subject = $1 AND wrapped IS NOT NULL", subject)
                await conn.execute(f"DELETE FROM {self._links} WHERE subject = $1", subject)  # noqa: S608
            return bool(status != "UPDATE 0")
        return await self._on(destroy)

    async def destroyed(self, subjects: Sequence[str]) -> set[str]:
        rows = await self._on(lambda conn: conn.fetch(
            f"SELECT subject FROM {self._keys} "  # noqa: S608
            "WHERE subject = ANY($1::text[]) AND wrapped IS NULL", list(subjects)))
        return {r["subject"] for r in rows}

    async def link(self, subject: str, parent: str) -> None:
        await self._on(lambda conn: conn.execute(self._link_sql, subject, parent))

    async def linked(self, parent: str) -> list[str]:
        rows = await self._on(lambda conn: conn.fetch(
            f"SELECT subject FROM {self._links} WHERE parent = $1 ORDER BY subject",  # noqa: S608
            parent))
        return [r["subject"] for r in rows]

    async def rewrap(self) -> int:
        masters = self._masters

        async def rewrap(conn: Conn) -> int:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"SELECT subject, master_id, wrapped FROM {self._keys} "  # noqa: S608
                    "WHERE wrapped IS NOT NULL AND master_id <> $1 FOR UPDATE",
                    masters.current.id)
                for r in rows:
                    key = masters.unwrap(r["subject"], r["master_id"], bytes(r["wrapped"]))
                    new_id, new_wrapped = masters.wrap(r["subject"], key)
                    await conn.execute(
                        f"UPDATE {self._keys} SET master_id = $2, wrapped = $3 "  # noqa: S608
                        "WHERE subject = $1", r["subject"], new_id, new_wrapped)
            return len(rows)
        return await self._on(rewrap)

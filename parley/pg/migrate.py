"""Versioned schema migrations for Parley's PostgreSQL tables (the store and the search index).

Each *component* (``store``, ``search``) has an ordered list of :class:`Migration`\\ s. The
versions applied are recorded in ``<schema>.parley_migrations`` (component, version,
description, applied_at). :func:`migrate` applies the pending ones in **one transaction**
(PostgreSQL's DDL is transactional: an upgrade lands whole or not at all) under a
transaction-scoped advisory lock, so several processes starting at once migrate once and the
others wait, then find nothing to do. A database whose recorded version is newer than the
code knows is refused: an older Parley must not write a newer schema.

Rules for adding a migration: append it with the next version, never edit or reorder one
that shipped; make it valid on a database that has every earlier migration. A step that
must read the data to know what to change (renaming the tables of each projection copy)
gives ``run``, called after its statements inside the same transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from parley.errors import StoreError

__all__ = ["Conn", "Migration", "MigrationStatus", "advisory_key", "migrate", "quote_ident"]

#: A connection, or one borrowed from a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


@dataclass(frozen=True, kw_only=True)
class Migration:
    """One step: ``statements(schema)`` gives the SQL, with the schema name already quoted;
    then ``run(conn, schema)``, if given, does what SQL alone cannot (``schema`` unquoted)."""

    version: int
    description: str
    statements: Callable[[str], Sequence[str]]
    run: Callable[[Conn, str], Awaitable[None]] | None = None


@dataclass(frozen=True, kw_only=True)
class MigrationStatus:
    component: str
    current: int  # version before this call
    latest: int  # newest version this code knows
    applied: tuple[Migration, ...]  # applied by this call (empty when checking only)
    pending: tuple[Migration, ...]  # still to apply (non-empty only when checking only)


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier (callers validate names; quotes are doubled anyway)."""
    return '"' + name.replace('"', '""') + '"'


def advisory_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for ``parts`` (stable across processes and runs)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _registry(schema: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.parley_migrations (
        component TEXT NOT NULL, version INTEGER NOT NULL, description TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"""


async def migrate(conn: Conn, schema: str, component: str,
                  migrations: Sequence[Migration], *, apply: bool = True) -> MigrationStatus:
    """Bring ``component`` in ``schema`` to the newest version (or only report, ``apply=False``).

    Creates the schema and the registry table if needed. Raises :class:`StoreError` if the
    database has a version this code does not know.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"{component} migrations must have increasing versions from 1")
    latest = versions[-1] if versions else 0
    quoted = quote_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(schema, "migrate"))
        exists = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f"{quoted}.parley_migrations")
        current = 0
        if exists:
            current = int(await conn.fetchval(
                f"SELECT coalesce(max(version), 0) FROM {quoted}.parley_migrations "  # noqa: S608
                "WHERE component = $1", component))
        if current > latest:
            raise StoreError(
                f"the {component} schema in PostgreSQL schema {schema!r} is at version {current}, "
                f"newer than this Parley knows ({latest}): upgrade Parley")
        pending = tuple(m for m in migrations if m.version > current)
        if not apply or not pending:
            return MigrationStatus(component=component, current=current, latest=latest,
                                   applied=(), pending=pending if not apply else ())
        # Only when missing: CREATE SCHEMA needs a privilege on the database that a role
        # given an existing schema may lack, even with IF NOT EXISTS.
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                                   schema):
            await conn.execute(f"CREATE SCHEMA {quoted}")
        await conn.execute(_registry(schema))
        for migration in pending:
            for statement in migration.statements(quoted):
                await conn.execute(statement)
            if migration.run is not None:
                await migration.run(conn, schema)
            await conn.execute(
                f"INSERT INTO {quoted}.parley_migrations (component, version, description) "  # noqa: S608
                "VALUES ($1, $2, $3)", component, migration.version, migration.description)
    return MigrationStatus(component=component, current=current, latest=latest,
                           applied=pending, pending=())

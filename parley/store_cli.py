"""``parley store migrate [--check]``: bring the store's schema (and, on PostgreSQL, the search
index's) to the version this Parley needs.

Processes migrate on start-up anyway (unless ``?migrate=off`` is in the PostgreSQL URL); this
command is for deployments that migrate as a separate step — a Kubernetes Job or an init
container before the new version rolls out. ``--check`` applies nothing and exits 1 when a
migration is pending. SQLite stores always migrate themselves when opened.

The command belongs to the composition layer, beside ``parley.cli``: it gathers the migrations
of the projector's store and of the search consumer's index, two packages that may not import
each other, whose tables share one PostgreSQL schema.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from parley.errors import ParleyError
from parley.pg.url import is_postgres_url
from parley.settings import Settings

__all__ = ["migrate_postgres", "register"]


def register(subparsers: Any) -> None:
    """Add ``parley store …`` to the top-level parser."""
    store = subparsers.add_parser("store", help="the state store: schema migrations")
    ssub = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    migrate = ssub.add_parser("migrate", help="apply pending schema migrations (PostgreSQL: store "
                                              "and search index)")
    migrate.add_argument("--check", action="store_true",
                         help="apply nothing; exit 1 if a migration is pending")
    migrate.set_defaults(handler=_cmd_migrate)


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.store.url
    try:
        if is_postgres_url(url):
            lines, pending = asyncio.run(migrate_postgres(url, apply=not args.check))
            print("\n".join(lines))
            return 1 if pending else 0
        return asyncio.run(_open_other(url))
    except ParleyError as exc:  # one line, like every `parley` error (never the URL)
        print(f"parley: error: {exc}", file=sys.stderr)
        return 1


async def migrate_postgres(url: str, *, apply: bool) -> tuple[list[str], bool]:
    """Migrate (or check) every component in the URL's database and schema.

    Returns one line per component and whether anything is still pending.
    """
    import asyncpg

    from consumers.search.pg_copies import live_search_schema
    from consumers.search.pg_index import SEARCH_MIGRATIONS
    from parley.errors import StoreUnavailable
    from parley.pg.migrate import migrate
    from parley.pg.url import parse_postgres_url
    from projector.pg_schema import STORE_MIGRATIONS

    options = parse_postgres_url(url)
    try:
        conn = await asyncpg.connect(options.dsn, timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL at {options.where}: "
                               f"{type(exc).__name__}: {exc}") from None
    lines: list[str] = []
    pending = False
    try:
        search_schema = await live_search_schema(conn, options.schema)  # a rebuild's copy
        for component, schema, steps in (("store", options.schema, STORE_MIGRATIONS),
                                         ("search", search_schema, SEARCH_MIGRATIONS)):
            status = await migrate(conn, schema, component, steps, apply=apply)
            where = f"{component} ({options.where} schema {schema})"
            if status.applied:
                done = ", ".join(f"{m.version} {m.description}" for m in status.applied)
                lines.append(f"{where}: migrated {status.current} -> {status.latest} ({done})")
            elif status.pending:
                pending = True
                todo = ", ".join(f"{m.version} {m.description}" for m in status.pending)
                lines.append(f"{where}: at version {status.current}, needs {status.latest} "
                             f"(pending: {todo})")
            else:
                lines.append(f"{where}: up to date (version {status.current})")
    finally:
        await conn.close()
    return lines, pending


async def _open_other(url: str) -> int:
    from projector.stores import open_store

    store = open_store(url)
    await store.open()  # SQLite applies its schema version here
    await store.close()
    print("store: up to date (SQLite and in-memory stores migrate themselves when opened)")
    return 0

"""``postgresql://`` URLs of the state store: which URLs are PostgreSQL's, asyncpg's DSN and
Parley's own options.

Parley's options are query parameters of the URL (``schema``, ``pool_size``, ``read_pool``,
``read_queue``, ``migrate``, ``lock_timeout_ms``); every other parameter (``sslmode``,
``connect_timeout``, …) is left in the DSN for asyncpg. The URL may carry a password: errors
name the offending option, and :attr:`PostgresOptions.where` (``host:port/database``) is what
messages may show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from parley.errors import UnsupportedStore

__all__ = ["SCHEMES", "PostgresOptions", "is_postgres_url", "parse_postgres_url"]

#: The URL schemes that mean PostgreSQL (compared ignoring case).
SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg")
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


@dataclass(frozen=True, kw_only=True)
class PostgresOptions:
    """A ``postgresql://`` store URL, split into asyncpg's DSN and Parley's own options."""

    dsn: str  # what asyncpg connects with (holds the password, if any: never log it)
    where: str  # host:port/database, safe to show
    schema: str = "public"
    pool_size: int = 5  # the runner's path: commits, loads, offsets, the outbox
    read_pool_size: int = 3  # the query API's reads, apart so they never queue a commit
    read_queue: int = 64  # reads that may wait for a read connection; one more is refused
    migrate: Literal["auto", "off"] = "auto"
    lock_timeout_ms: int = 10_000


def is_postgres_url(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (its scheme is one of :data:`SCHEMES`): the
    one test of it, for the store, the search index, ``parley store migrate`` and ``deploy/``."""
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def parse_postgres_url(url: str) -> PostgresOptions:
    """Split a store URL; Parley's options are ``schema``, ``pool_size``, ``read_pool``,
    ``read_queue``, ``migrate`` (auto, off) and ``lock_timeout_ms``; any other query parameter (``sslmode``,
    …) goes to asyncpg.

    Errors name the offending option, never the URL (it may carry a password).
    """
    if not is_postgres_url(url):
        raise UnsupportedStore("a PostgreSQL store URL starts with postgresql://")
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in ("schema", "pool_size", "read_pool", "read_queue", "migrate",
                           "lock_timeout_ms"):
            ours[key.lower()] = value
        else:
            theirs.append((key, value))
    schema = ours.get("schema", "public")
    if not _SCHEMA_NAME.fullmatch(schema):
        raise UnsupportedStore("schema must be 1-63 characters of A-Z, a-z, 0-9 and _, "
                               "not starting with a digit")
    migrate_mode = ours.get("migrate", "auto").lower()
    if migrate_mode not in ("auto", "off"):
        raise UnsupportedStore("migrate must be auto (apply migrations on start) or off")
    try:
        pool_size = int(ours.get("pool_size", "5"))
        read_pool_size = int(ours.get("read_pool", "3"))
        read_queue = int(ours.get("read_queue", "64"))
        lock_timeout_ms = int(ours.get("lock_timeout_ms", "10000"))
    except ValueError:
        raise UnsupportedStore(
            "pool_size, read_pool, read_queue and lock_timeout_ms must be integers") from None
    if not 1 <= pool_size <= 100:
        raise UnsupportedStore("pool_size must be between 1 and 100")
    if not 1 <= read_pool_size <= 100:
        raise UnsupportedStore("read_pool must be between 1 and 100")
    if not 0 <= read_queue <= 100_000:
        raise UnsupportedStore("read_queue must be between 0 and 100000")
    if lock_timeout_ms < 0:
        raise UnsupportedStore("lock_timeout_ms must not be negative")
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(theirs), ""))
    try:
        host, port = parts.hostname or "localhost", parts.port or 5432
    except ValueError:
        raise UnsupportedStore("the port of the PostgreSQL URL is not a number") from None
    where = f"{host}:{port}{parts.path or '/'}"
    return PostgresOptions(dsn=dsn, where=where, schema=schema, pool_size=pool_size,
                           read_pool_size=read_pool_size, read_queue=read_queue,
                           migrate=migrate_mode,  # type: ignore[arg-type]
                           lock_timeout_ms=lock_timeout_ms)

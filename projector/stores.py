"""Pick a :class:`~projector.store.Store` implementation from ``store.url``.

* ``sqlite:///relative/path.db`` — relative to the current directory (parents created);
* ``sqlite:////absolute/path.db`` — absolute; ``sqlite:///:memory:`` — in memory;
  optional ``?synchronous=full`` (default ``normal``, see :mod:`projector.sqlite_store`)
  and ``?busy_timeout_ms=N``;
* ``memory://`` — the in-memory twin (tests);
* ``postgresql://user:password@host:5432/db`` — PostgreSQL, for several projector instances
  (:mod:`projector.postgres_store`); optional ``?schema=``, ``pool_size=``, ``migrate=off``,
  ``lock_timeout_ms=``, and asyncpg's own parameters (``sslmode=…``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from parley.errors import UnsupportedStore
from parley.pg.url import is_postgres_url
from projector.memory_store import MemoryStore
from projector.sqlite_store import SqliteStore
from projector.store import Store

__all__ = ["open_store"]


def open_store(url: str) -> Store:
    """Build (not yet open) the store that ``url`` names; call ``await store.open()`` next.

    The path of a ``sqlite:///`` URL is resolved against the current directory now, so
    a later ``chdir`` does not move the database.
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise UnsupportedStore(f"store URL {url!r} has no scheme: use sqlite:///path/to/state.db")
    if is_postgres_url(url):
        # Imported here: only PostgreSQL deployments load asyncpg. Never echo the URL
        # (it may carry a password); see projector.postgres_store for the options.
        from projector.postgres_store import PostgresStore

        return PostgresStore.from_url(url)
    if scheme == "memory":
        return MemoryStore()
    if scheme != "sqlite":
        raise UnsupportedStore(f"unknown store URL scheme {scheme!r}: use sqlite:///path/to/state.db")
    parts = urlsplit(url)
    if parts.netloc:
        raise UnsupportedStore(
            f"store URL {url!r} has a host; SQLite URLs have three slashes: sqlite:///relative.db "
            "or sqlite:////absolute.db"
        )
    path = unquote(parts.path.removeprefix("/"))  # "%20" in a URL is a space in the file name
    if not path:
        raise UnsupportedStore(f"store URL {url!r} names no file: use sqlite:///path/to/state.db")
    options = {key.lower(): values[-1] for key, values in parse_qs(parts.query).items()}
    synchronous = options.pop("synchronous", "normal").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise UnsupportedStore(f"synchronous={synchronous.lower()!r} is not supported: use normal or full")
    try:
        busy_timeout_ms = int(options.pop("busy_timeout_ms", "5000"))
    except ValueError:
        raise UnsupportedStore("busy_timeout_ms must be an integer number of milliseconds") from None
    if options:
        raise UnsupportedStore(f"unknown store URL options: {', '.join(sorted(options))}")
    if path == ":memory:":
        return SqliteStore(":memory:", synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)  # type: ignore[arg-type]
    return SqliteStore(
        Path.cwd() / path,
        synchronous=synchronous,  # type: ignore[arg-type]
        busy_timeout_ms=busy_timeout_ms,
    )

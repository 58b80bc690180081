"""Pick a :class:`~projector.store.Store` implementation from ``store.url``.

* ``sqlite:///relative/path.db`` — relative to the current directory (parents created);
* ``sqlite:////absolute/path.db`` — absolute; ``sqlite:///:memory:`` — in memory;
  optional ``?synchronous=full`` (default ``normal``, see :mod:`projector.sqlite_store`),
  ``?busy_timeout_ms=N``, ``?readers=N`` (connections serving the query API, default 4) and
  ``?read_queue=N`` (reads that may wait for one, default 64; one more is refused);
* ``memory://`` — the in-memory twin (tests);
* ``postgresql://user:password@host:5432/db`` — PostgreSQL, for several projector instances
  (:mod:`projector.postgres_store`); optional ``?schema=``, ``pool_size=``, ``read_pool=``,
  ``read_queue=``, ``migrate=off``, ``lock_timeout_ms=``, and asyncpg's own parameters (``sslmode=…``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from parley.errors import UnsupportedStore
from parley.pg.url import is_postgres_url
from projector.memory_store import MemoryStore
from projector.read_queue import DEFAULT_READ_QUEUE
from projector.sqlite_store import DEFAULT_READERS, SqliteStore
from projector.store import Store

__all__ = ["open_store"]


def open_store(url: str, *, shared: bool = False) -> Store:
    """Build (not yet open) the store that ``url`` names; call ``await store.open()`` next.

    ``shared``: other processes write the same copies at once (a parallel rebuild's
    workers): a SQLite store then merges visitors and agents on commit (PostgreSQL always
    does) and waits at least a minute for the write lock.

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
    readers = _count(options, "readers", DEFAULT_READERS, 1, 64)
    read_queue = _count(options, "read_queue", DEFAULT_READ_QUEUE, 0, 100_000)
    if options:
        raise UnsupportedStore(f"unknown store URL options: {', '.join(sorted(options))}")
    return SqliteStore(
        ":memory:" if path == ":memory:" else Path.cwd() / path,
        synchronous=synchronous,  # type: ignore[arg-type]
        busy_timeout_ms=max(busy_timeout_ms, 60_000) if shared else busy_timeout_ms,
        readers=readers, read_queue=read_queue, shared=shared,
    )


def _count(options: dict[str, str], name: str, default: int, least: int, most: int) -> int:
    """The integer option ``name`` (taken out of ``options``), between ``least`` and ``most``."""
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = least - 1
    if not least <= value <= most:
        raise UnsupportedStore(f"{name} must be an integer between {least} and {most}")
    return value

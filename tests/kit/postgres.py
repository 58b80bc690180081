"""A real PostgreSQL for tests, chosen the way Kafka is (see tests/conftest.py):

1. ``PARLEY_TEST_POSTGRES`` — a DSN of a server you already run
   (``postgresql://user:password@127.0.0.1:5432/db``; tests create and drop their own schemas);
2. testcontainers' PostgreSQL, when a Docker engine answers;
3. a server the tests start themselves on 127.0.0.1 with :class:`parley.testing.postgres.LocalPostgres`
   (binaries from the ``pgserver`` package on PyPI, else Debian's ``postgresql``), in a
   temporary directory, stopped and wiped at the end of the session.

The fixtures ``postgres_dsn`` and ``pg_url`` in tests/conftest.py wrap :func:`shared_postgres`
(one server per session, however many test modules ask for it) and :func:`fresh_schema`
(each test its own schema, dropped afterwards).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from parley.testing.postgres import LocalPostgres
from tests.kit.docker import docker_engine_answers

__all__ = ["POSTGRES_ENV", "fresh_schema", "shared_postgres", "with_options"]

POSTGRES_ENV = "PARLEY_TEST_POSTGRES"
_shared: list[str] = []  # the DSN while the server runs
_users = 0
_stack = contextlib.ExitStack()


@contextlib.contextmanager
def _server() -> Iterator[str]:
    configured = os.environ.get(POSTGRES_ENV)
    if configured:
        yield configured
        return
    if docker_engine_answers():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    root = Path(tempfile.mkdtemp(prefix="parley-test-pg-"))  # under /tmp: reachable by `nobody`
    server = LocalPostgres(root)
    try:
        server.up()
        yield server.dsn
    finally:
        server.down(wipe=True)


@contextlib.contextmanager
def shared_postgres() -> Iterator[str]:
    """The session's server (started on first use, stopped when the last user leaves)."""
    global _users
    if not _shared:
        _shared.append(_stack.enter_context(_server()))
    _users += 1
    try:
        yield _shared[0]
    finally:
        _users -= 1
        if _users == 0:
            _shared.clear()
            _stack.close()


def with_options(dsn: str, **options: str) -> str:
    """``dsn`` with query parameters added (or replaced)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(options)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


@contextlib.asynccontextmanager
async def fresh_schema(dsn: str) -> AsyncIterator[str]:
    """A store URL on ``dsn`` with a schema of its own (``?schema=t_…``), dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    try:
        yield with_options(dsn, schema=schema)
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

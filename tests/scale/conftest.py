"""Fixtures of the scale tests: a real PostgreSQL (see tests/pg_fixture.py).

This directory is put on ``sys.path`` so its modules can import their shared helper module
(``scale_kit``), as tests/projector does for its kits.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.pg_fixture import fresh_schema, shared_postgres

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of the session's PostgreSQL server."""
    with shared_postgres() as dsn:
        yield dsn


@pytest.fixture
async def pg_url(postgres_dsn: str) -> AsyncIterator[str]:
    """A ``postgresql://`` store URL with a schema of this test's own."""
    async with fresh_schema(postgres_dsn) as url:
        yield url

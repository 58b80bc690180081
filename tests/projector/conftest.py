"""Fixtures of the projector's tests (their helpers are in tests/kit/)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from contracts.topics import Topics
from parley.kafka.clients import make_admin
from parley.settings import KafkaSettings
from projector.role import ProjectorRole
from tests.kit.postgres import fresh_schema
from tests.kit.projector_api import api, seeded  # noqa: F401 - fixtures of test_api*.py
from tests.kit.sse_streams import serving


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A ``sqlite:///`` URL of a fresh database file in this test's temporary directory."""
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh SQLite file, or a PostgreSQL schema of this test's own (a module may override
    it, e.g. to add the in-memory store)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    async with fresh_schema(request.getfixturevalue("postgres_dsn")) as url:
        yield url


@pytest.fixture
async def ledger_topic(kafka_settings: KafkaSettings, topics: Topics) -> AsyncIterator[None]:
    """Deletes the erasure ledger topic a forget created (it is not one of the test's
    prefixed event topics the ``topics`` fixture deletes)."""
    yield
    admin = make_admin(kafka_settings)
    await admin.start()
    with contextlib.suppress(Exception):
        await admin.delete_topics([topics.erasures])
    await admin.close()


@pytest.fixture
async def served(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str
                 ) -> AsyncIterator[tuple[TestClient[Any, Any], ProjectorRole]]:
    """The projector role served for live subscriptions (:func:`tests.kit.sse_streams.serving`)."""
    async with serving(kafka_settings, topics, tmp_path, unique) as got:
        yield got

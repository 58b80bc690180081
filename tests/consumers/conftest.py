"""Make ``consumer_kit`` (this directory's shared test helpers) importable: with
``--import-mode=importlib`` test modules cannot import their siblings."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
async def _drop_dead_letter_topics(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Consumers create ``<prefix>.dlq.<name>`` topics; the shared ``topics`` fixture only
    removes event topics, so delete this test's dead-letter topics too (shared dev broker)."""
    if "kafka_settings" not in request.fixturenames:
        yield
        return
    k = request.getfixturevalue("kafka_settings")
    yield
    from parley.kafka.clients import make_admin

    admin = make_admin(k)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(f"{k.topic_prefix}.dlq.")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()

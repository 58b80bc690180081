"""Consumers create ``<prefix>.dlq.<name>`` and ``<prefix>.replay.<name>`` topics; the shared
``topics`` fixture only removes event and state topics. ``dead_letter_topics_dropped`` deletes
this test's dead-letter and replay topics too when it ends (a shared dev broker would otherwise
keep them). Registered in tests/conftest.py; the folders whose tests run consumers use it for every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest


@pytest.fixture
async def dead_letter_topics_dropped(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    if "kafka_settings" not in request.fixturenames:
        yield
        return
    k = request.getfixturevalue("kafka_settings")
    yield
    from parley.kafka.clients import make_admin

    admin = make_admin(k)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics()
                if t.startswith((f"{k.topic_prefix}.dlq.", f"{k.topic_prefix}.replay."))]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()

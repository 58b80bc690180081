"""The projector's query API over a live Kafka, for the tests of tests/projector/test_api*.py:
the ``api`` fixture (a projector role serving on a test server, with small bounds on waiting
requests and reads), ``seeded`` (customer chats, a bot conversation and two agents, applied)
and :func:`get_json`. tests/projector/conftest.py registers the fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts.position import Position
from contracts.topics import Topics
from parley.http import build_app
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, StoreSettings
from projector.api import ApiOptions
from projector.role import ProjectorRole, ProjectorRoleOptions
from projector.runner import ProjectorRunnerOptions
from tests.kit.live_projector import (
    T0,
    applied,
    conversation,
    delete_dlq,
    envelope,
    eventually,
    natterly_user_status,
    produce,
    shipper_conversation,
)

MAX_WAITERS = 4  # http.max_position_waiters of the API under test
READERS, READ_QUEUE = 2, 2  # the store's ?readers= and ?read_queue=


@pytest.fixture
async def api(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path,
              unique: str) -> AsyncIterator[tuple[TestClient[Any, Any], ProjectorRole]]:
    settings = Settings(kafka=kafka_settings,
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"
                                                f"?readers={READERS}&read_queue={READ_QUEUE}"),
                        http=HttpSettings(max_position_waiters=MAX_WAITERS))
    async with serving_role(settings, ProjectorRoleOptions(
            runner=ProjectorRunnerOptions(group_id=f"{unique}-projector", poll_timeout_ms=100),
            api=ApiOptions(min_position_timeout_s=3.0, recheck_s=0.2)), topics) as served:
        yield served


@contextlib.asynccontextmanager
async def serving_role(settings: Settings, options: ProjectorRoleOptions, topics: Topics
                       ) -> AsyncIterator[tuple[TestClient[Any, Any], ProjectorRole]]:
    """A projector role of ``settings`` and ``options`` served on a test server; the server
    closed and the projector's dead-letter topic deleted afterwards."""
    rt = Runtime.from_settings(settings)
    role = ProjectorRole(rt, options)
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(rt, [role])))
    await client.start_server()
    try:
        yield client, role
    finally:
        await client.close()
        await delete_dlq(settings.kafka, topics)


@pytest.fixture
async def seeded(kafka_settings: KafkaSettings, topics: Topics,
                 api: tuple[TestClient[Any, Any], ProjectorRole]) -> list[Position]:
    """Seven customer chats (five Natterly, two ChatShipper), a ChatShipper bot conversation
    and two agents, all applied."""
    envs = []
    for i in range(5):
        envs += conversation(f"chat-{i}", n_messages=2 + i, agent="ag-1" if i % 2 else "ag-2",
                             start=T0 + timedelta(minutes=i), close=i < 3)
    envs += shipper_conversation("conv-a", n_messages=1, start=T0 + timedelta(minutes=10))
    envs += shipper_conversation("conv-b", n_messages=4, start=T0 + timedelta(minutes=11))
    envs += shipper_conversation("conv-bot", n_messages=1, start=T0 + timedelta(minutes=12),
                                 conversation_type="bot")
    envs += [envelope("natterly", "acme", natterly_user_status("ag-1", "Online", T0)),
             envelope("natterly", "acme", natterly_user_status("ag-2", "Offline", T0))]
    positions = await produce(kafka_settings, topics, envs)
    store = api[1].store
    await eventually(lambda: applied(store, positions), "seed applied")
    return positions


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    """The JSON body of ``GET path``, asserting its status and content type."""
    resp = await client.get(path)
    body = await resp.json()
    assert resp.status == status, (path, resp.status, body)
    assert resp.content_type == "application/json"
    return body

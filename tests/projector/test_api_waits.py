"""The query API's read-your-writes waits (``min_position``) and its bounds on waiting
requests and reads, against a live Kafka (the fixtures: tests/kit/projector_api.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from contracts.envelope import encode_envelope
from contracts.position import Position
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.kafka.topics import apply_topics
from parley.settings import KafkaSettings
from projector.role import ProjectorRole
from projector.sqlite_store import SqliteStore
from tests.kit.live_projector import (
    T0,
    applied,
    envelope,
    eventually,
    natterly_body,
    produce,
)
from tests.kit.projector_api import MAX_WAITERS, READ_QUEUE, READERS, get_json

pytestmark = pytest.mark.kafka


async def test_min_position_waits_until_applied(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    body = natterly_body("ChatAccepted", "chat-new", T0 + timedelta(hours=1), agent="ag-1",
                         subject="Waited for")
    env = envelope("natterly", "acme", body)
    # The record's position before it exists: the next offset of its partition, once a
    # warm-up record with the same key is applied (no one else writes to this partition).
    [warm] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
        "ChatAccepted", "chat-new", T0, agent="ag-1"))])
    await eventually(lambda: applied(role.store, [warm]), "warm-up record applied")
    upcoming = Position(warm.topic, warm.partition, warm.offset + 1)
    request = asyncio.create_task(client.get(f"/api/chats/chat-new?min_position={upcoming}"))

    async def waiting() -> bool:
        if request.done():
            resp = request.result()
            raise AssertionError(f"answered before the record existed: {resp.status}")
        [metric] = role.metrics.waiting.collect()
        return bool(metric.samples[0].value == 1)

    await eventually(waiting, "the request to wait for its position")
    assert (await get_json(client, "/api/chats/chat-new"))["subject"] == "Help"  # not there yet
    [pos] = await produce(kafka_settings, topics, [env])
    assert pos == upcoming
    resp = await asyncio.wait_for(request, 10)
    chat = await resp.json()
    assert resp.status == 200
    assert chat["subject"] == "Waited for"  # the waited-for event is in


async def test_min_position_waiters_are_bounded_and_woken_by_the_commit(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    [warm] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
        "ChatAccepted", "chat-cap", T0, agent="ag-1"))])
    await eventually(lambda: applied(role.store, [warm]), "warm-up record applied")
    upcoming = Position(warm.topic, warm.partition, warm.offset + 1)
    store_reads = 0
    real_offsets = role.store.offsets

    async def counted(projection: str) -> dict[tuple[str, int], int]:
        nonlocal store_reads
        store_reads += 1
        return await real_offsets(projection)

    role.store.offsets = counted  # type: ignore[method-assign]
    path = f"/api/chats/chat-cap?min_position={upcoming}"
    waiting = [asyncio.create_task(client.get(path)) for _ in range(MAX_WAITERS)]

    async def all_waiting() -> bool:
        [metric] = role.metrics.waiting.collect()
        return bool(metric.samples[0].value == MAX_WAITERS)

    await eventually(all_waiting, "every request to wait for its position")
    # One more is refused at once, without waiting.
    refused = await get_json(client, path, 503)
    assert refused["error"] == "overloaded"
    resp = await client.get(path)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    # The window in which a per-waiter poll (every recheck_s=0.2 s) would read the store
    # MAX_WAITERS times over; the waits themselves are woken by the runner's commit.
    await asyncio.sleep(1.0)
    [pos] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
        "ChatAccepted", "chat-cap", T0 + timedelta(hours=1), agent="ag-1", subject="Landed"))])
    assert pos == upcoming
    for resp in await asyncio.wait_for(asyncio.gather(*waiting), 10):
        assert resp.status == 200 and (await resp.json())["subject"] == "Landed"
    assert store_reads == 0  # the runner owns the partition: no store polling at all
    # The slots are free again.
    assert (await get_json(client, path))["subject"] == "Landed"


async def test_a_flood_of_slow_reads_is_refused_503_while_commits_go_on(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    client, role = api
    store = role.store
    assert isinstance(store, SqliteStore)
    # Slow reads holding every API reader inside SQLite's thread (as a costly query would).
    arrived, release = threading.Barrier(READERS + 1), threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        arrived.wait(timeout=10)
        release.wait(timeout=10)

    slow_reads = [asyncio.create_task(store._api().run(slow)) for _ in range(READERS)]
    try:
        await asyncio.to_thread(arrived.wait, 10)
        queued = [asyncio.create_task(client.get("/api/chats/chat-1")) for _ in range(READ_QUEUE)]

        async def queue_full() -> bool:
            return store._api().queue.waiting == READ_QUEUE

        await eventually(queue_full, "the requests to wait for a reader")
        resp = await client.get("/api/chats/chat-1")
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"] == "overloaded"
        # The projector's commits (and its own reads) go on meanwhile.
        [pos] = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
            "ChatAccepted", "chat-1", T0 + timedelta(hours=1), agent="ag-1", subject="Landed"))])
        await eventually(lambda: applied(store, [pos]), "the commit during the flood")
        assert not any(task.done() for task in queued)
    finally:
        release.set()
    for resp in await asyncio.wait_for(asyncio.gather(*queued), 10):
        assert resp.status == 200 and (await resp.json())["subject"] == "Landed"
    await asyncio.wait_for(asyncio.gather(*slow_reads), 10)


async def test_min_position_times_out_with_504(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        topics: Topics) -> None:
    client, _ = api
    far = Position(topics.chat, 0, 10**9)
    loop = asyncio.get_running_loop()
    started = loop.time()
    body = await get_json(client, f"/api/chats/chat-1?min_position={far}", 504)
    assert body["error"] == "timeout" and str(far) in body["detail"]
    assert 2.9 <= loop.time() - started < 10  # bounded by min_position_timeout_s=3.0
    # An applied position answers at once.
    done = seeded[-1]
    assert (await get_json(client, f"/api/agents?min_position={done}"))["items"]


async def test_min_position_on_a_partition_the_topic_lacks_is_a_400_at_once(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    # It waited the whole min_position_timeout_s, then answered 504 "retry later".
    client, _ = api
    n = kafka_settings.partitions
    loop = asyncio.get_running_loop()
    started = loop.time()
    nowhere = Position(topics.chat, n + 4, 0)
    body = await get_json(client, f"/api/chats/chat-1?min_position={nowhere}", 400)
    assert body == {"error": "bad_request", "detail": (
        f"min_position: {topics.chat} has {n} partition(s), 0 to {n - 1}; "
        f"there is no partition {n + 4}")}
    assert loop.time() - started < 2.5  # min_position_timeout_s is 3.0


async def test_min_position_on_a_partition_just_added_is_waited_for(
        api: tuple[TestClient[Any, Any], ProjectorRole], seeded: list[Position],
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    """The runner's consumer learned the partition count before the partition was added: the
    position is checked against fresh metadata, and the wait takes it once it is applied."""
    client, _ = api
    n = kafka_settings.partitions
    grown = msgspec.structs.replace(kafka_settings, partitions=n + 1)
    await apply_topics(grown, topics.specs(grown.partitions), allow_repartition=True)
    body = natterly_body("ChatAccepted", "chat-new-partition", T0, agent="ag-1", subject="New")
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            topics.chat, value=encode_envelope(envelope("natterly", "acme", body)),
            key=b"chat-new-partition", partition=n)
    finally:
        await producer.stop()
    added = Position(meta.topic, meta.partition, meta.offset)
    resp = await client.get(f"/api/chats/chat-new-partition?min_position={added}")
    answer = await resp.json()
    assert resp.status == 200, answer  # was the rebalance slower than min_position_timeout_s?
    assert answer["subject"] == "New"

"""Live subscriptions' checks and bounds, on a real broker: bad webhook positions, tokens and
kinds refused, a position the log no longer has is 410, streams capped, and a slow client cut
off rather than buffered."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any
from zlib import crc32

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.state import ChatState
from contracts.state_change import encode_state_change
from contracts.topics import Topics
from parley.kafka.clients import make_admin, make_producer
from parley.settings import KafkaSettings
from projector.role import ProjectorRole
from receiver.partitioner import partition_for
from tests.kit.live_projector import conversation, eventually, produce
from tests.kit.sse_streams import (
    AUTH,
    MAX_STREAMS,
    TOKEN,
    comment,
    equals,
    subscribe,
    until_published,
)

pytestmark = pytest.mark.kafka


async def test_bad_webhook_positions_are_refused(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, role = served
    positions = await produce(kafka_settings, topics, conversation("c1", n_messages=1))
    await until_published(kafka_settings, topics, "c1", "closed")
    n = kafka_settings.partitions
    own = partition_for(b"c1", n)
    assert {p.partition for p in positions} == {own}
    end = positions[-1].offset + 1
    for path, status in [
        (f"/api/chats/c1/stream?after={topics.chat}:{(own + 1) % n}:0", 400),  # another's
        (f"/api/chats/c1/stream?after={topics.chat}:{own}:{end}", 400),  # past the end
        (f"/api/chats/c1/stream?after={topics.visitor}:0:0", 400),  # not the chat's topic
        (f"/api/chats/c1/stream?after={topics.chat}:{own}", 400),  # malformed
        (f"/api/stream?after={positions[0]}", 400),  # a vector of state positions only
    ]:
        resp = await client.get(path, headers=AUTH)
        body = await resp.json()
        assert resp.status == status, (path, body)
        assert body["error"] == "bad_request" and body["detail"], body
    resp = await client.get(f"/api/stream?after={positions[0]}", headers=AUTH)
    assert "/api/chats/{id}/stream" in (await resp.json())["detail"]

    admin = make_admin(kafka_settings)
    await admin.start()
    try:  # retention deleted the webhook's record
        await admin.delete_records({TopicPartition(topics.chat, own):
                                    RecordsToDelete(before_offset=positions[1].offset)})
    finally:
        await admin.close()
    resp = await client.get(f"/api/chats/c1/stream?after={positions[0]}", headers=AUTH)
    body = await resp.json()
    assert resp.status == 410 and body["error"] == "gone", body
    assert role.streams.open_streams == 0


async def test_tokens_positions_and_kinds_are_checked(
        served: tuple[TestClient[Any, Any], ProjectorRole], topics: Topics) -> None:
    client, role = served
    for headers in ({}, {"Authorization": "Bearer not-the-token-at-all-000"}):
        for path in ("/api/chats/c1/stream", "/api/stream"):
            resp = await client.get(path, headers=headers)
            assert resp.status == 401, path
            assert (await resp.json())["error"] == "unauthorized"
    chat_topic = topics.state("chat")
    own = crc32(b"c1") % 3
    for path, status in [
        ("/api/chats/c1/stream?after=nonsense", 400),
        (f"/api/chats/c1/stream?after={topics.state('agent')}:{own}:0", 400),
        (f"/api/chats/c1/stream?after={chat_topic}:{(own + 1) % 3}:0", 400),
        (f"/api/chats/c1/stream?after={chat_topic}:{own}:5", 400),  # past the end
        ("/api/stream?kind=message", 400),
        ("/api/stream?kind=chat&status=online", 400),
        ("/api/stream?kind=visitor&source=acme", 400),
        ("/api/stream?kind=visitor&status=closed", 400),
    ]:
        resp = await client.get(path, headers=AUTH)
        body = await resp.json()
        assert resp.status == status, (path, body)
        assert body["error"] == "bad_request" and body["detail"], body
        if "kind=visitor&status" in path:  # said plainly (it read "one of (none: …)")
            assert body["detail"] == "status filters chats and agents only, not kind visitor"
    assert role.streams.open_streams == 0


async def test_a_position_the_log_no_longer_has_is_410(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, _ = served
    await produce(kafka_settings, topics, conversation("c1", n_messages=1))
    records = await until_published(kafka_settings, topics, "c1", "closed")
    topic, partition, offset = records[-1][0].rsplit(":", 2)
    admin = make_admin(kafka_settings)
    await admin.start()
    try:  # state topics are compacted only; an operator may add time-based deletion
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                  {"cleanup.policy": "compact,delete"})])
        await admin.delete_records({TopicPartition(topic, int(partition)):
                                    RecordsToDelete(before_offset=int(offset) + 1)})
    finally:
        await admin.close()
    resp = await client.get(f"/api/chats/c1/stream?after={records[0][0]}", headers=AUTH)
    body = await resp.json()
    assert resp.status == 410 and body["error"] == "gone", body


async def test_streams_are_capped(served: tuple[TestClient[Any, Any], ProjectorRole]) -> None:
    client, role = served
    open_ = [await subscribe(client, f"/api/chats/c{i}/stream") for i in range(MAX_STREAMS)]
    resp = await client.get("/api/stream", headers=AUTH)
    body = await resp.json()
    assert resp.status == 503 and body["error"] == "overloaded", body
    assert resp.headers["Retry-After"]
    # Heartbeats keep idle streams open, and find a closed one.
    while len(open_[0].comments) < 2:
        await comment(open_[0])
    open_[0].response.close()
    await eventually(lambda: equals(role.streams.open_streams, MAX_STREAMS - 1), "a slot freed")
    await subscribe(client, "/api/chats/c9/stream")


async def test_a_slow_client_is_cut_off_not_buffered(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, role = served
    # A client that reads its headers and then nothing, with a small receive window.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (client.host, client.port))
    await loop.sock_sendall(sock, f"GET /api/chats/slow/stream HTTP/1.1\r\nHost: x\r\n"
                                  f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    head = b""
    while b": open\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    # Large changes of that chat, straight onto its state partition, far more than fit.
    topic = topics.state("chat")
    partition = crc32(b"slow") % kafka_settings.partitions
    state = msgspec.json.encode(ChatState(id="slow", subject="x" * 20_000))
    producer = make_producer(kafka_settings)
    await producer.start()
    n = 100
    try:
        for i in range(n):
            await producer.send(topic, key=b"slow", partition=partition, value=encode_state_change(
                "chat", "slow", [(topics.event_topics[0], partition, i)], state))
        await producer.flush()
    finally:
        await producer.stop()
    started = time.monotonic()
    await eventually(lambda: equals(role.streams.open_streams, 0), "the slow client cut off")
    # The server dropped it rather than hold ~2 MB for it: what arrives ends early.
    received = head
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 10):
            received += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert received.count(b"event: chat") < n / 2, (received.count(b"event: chat"),
                                                     time.monotonic() - started)

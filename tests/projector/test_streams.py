"""Live subscriptions over HTTP (Server-Sent Events), served by the real projector role on a
real broker: states the runner commits and publishes reach subscribers, ids resume exactly,
and connections are authorised, capped and bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zlib import crc32

import msgspec
import orjson
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.position import Position
from contracts.state import ChatState
from contracts.state_change import encode_state_change
from contracts.topics import Topics
from parley.http import build_app
from parley.kafka.clients import make_admin, make_consumer, make_producer
from parley.privacy.config import build_key_ring
from parley.privacy.seal import subject_in
from parley.privacy.states import open_state
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from projector.role import ProjectorRole, ProjectorRoleOptions
from projector.runner import ProjectorRunnerOptions
from projector.sse import SseOptions
from projector.streams import StreamOptions
from receiver.partitioner import partition_for
from receiver.role import ReceiverRole
from tests.kit.live_projector import conversation, delete_dlq, eventually, produce, produce_raw
from tests.kit.receiver_app import privacy_for_test

pytestmark = pytest.mark.kafka

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "natterly"
TOKEN = "stream-token-5d1e9a7c3b8f2046"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_STREAMS = 2
BUFFER_EVENTS = 2


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]


class Sse:
    """Reads one event stream: events in order, comments counted."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []

    async def next(self, timeout_s: float = 30.0) -> Event:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout_s):
            while True:
                line = (await self.response.content.readline()).decode()
                assert line, f"stream ended; fields so far {fields}"
                line = line.rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif fields:
                    return Event(fields.get("id", ""), fields["event"], orjson.loads(fields["data"]))

    async def opened(self) -> None:
        """Wait for the ``: open`` comment: from here on, every change is seen."""
        async with asyncio.timeout(30):
            line = await self.response.content.readline()
        assert line == b": open\n", line


@pytest.fixture
async def served(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path,
                 unique: str) -> AsyncIterator[tuple[TestClient[Any, Any], ProjectorRole]]:
    settings = Settings(kafka=kafka_settings, data_dir=str(tmp_path),
                        privacy=privacy_for_test(kafka_settings),  # states sealed, the default
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
                        http=HttpSettings(api_tokens=(TOKEN,), max_streams=MAX_STREAMS))
    rt = Runtime.from_settings(settings)
    role = ProjectorRole(rt, ProjectorRoleOptions(
        runner=ProjectorRunnerOptions(group_id=f"{unique}-projector", poll_timeout_ms=100),
        streams=StreamOptions(poll_ms=100, sse=SseOptions(
            heartbeat_s=0.3, buffer_events=BUFFER_EVENTS, stall_timeout_s=0.5, send_buffer_bytes=4096,
            final_write_timeout_s=0.5))))
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(rt, [role])))
    await client.start_server()
    try:
        yield client, role
    finally:
        await client.close()
        await delete_dlq(kafka_settings, topics)


async def subscribe(client: TestClient[Any, Any], path: str, **headers: str) -> Sse:
    resp = await client.get(path, headers=AUTH | headers)
    assert resp.status == 200, (resp.status, await resp.text())
    assert resp.content_type == "text/event-stream"
    sse = Sse(resp)
    await sse.opened()
    return sse


async def chat_records(kafka: KafkaSettings, topics: Topics, chat: str, *, raw: bool = False
                       ) -> list[tuple[str, dict[str, Any]]]:
    """Every record of ``chat`` (and its messages) on the chat state topic: (position, value),
    the value opened with the test's keys as another process would (``raw``: as stored)."""
    return [(p, orjson.loads(v)) for p, v in await chat_values(kafka, topics, chat, raw=raw)]


async def chat_values(kafka: KafkaSettings, topics: Topics, chat: str, *, raw: bool = False
                      ) -> list[tuple[str, bytes]]:
    """:func:`chat_records`, the values as bytes."""
    values = await _chat_values(kafka, topics, chat)
    if raw:
        return values
    ring = build_key_ring(Settings(kafka=kafka, privacy=privacy_for_test(kafka)))
    try:
        await ring.load(s for _, v in values if (s := subject_in(v)) is not None)
        return [(p, open_state(ring, v)) for p, v in values]
    finally:
        await ring.close()


async def _chat_values(kafka: KafkaSettings, topics: Topics, chat: str
                       ) -> list[tuple[str, bytes]]:
    topic = topics.state("chat")
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, crc32(chat.encode()) % kafka.partitions)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        out = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out += [(f"{topic}:{r.partition}:{r.offset}", r.value or b"")
                        for r in records
                        if r.key == chat.encode() or (r.key or b"").startswith(f"{chat}/".encode())]
        return out
    finally:
        await consumer.stop()


async def until_published(kafka: KafkaSettings, topics: Topics, chat: str, status: str
                          ) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []

    async def published() -> bool:
        found[:] = await chat_records(kafka, topics, chat)
        return any(v["kind"] == "chat" and v["state"]["status"] == status for _, v in found)

    await eventually(published, f"chat {chat} published {status}")
    return found


async def test_a_chat_subscriber_sees_its_committed_changes_and_no_other_chats(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, _ = served
    sse = await subscribe(client, "/api/chats/c1/stream")
    await produce(kafka_settings, topics, conversation("c1", n_messages=2) + conversation("c2"))
    records = await until_published(kafka_settings, topics, "c1", "closed")
    seen = [await sse.next() for _ in records]
    # Ids are the records' positions; the data the records themselves, in log order.
    assert [(e.id, e.data) for e in seen] == records
    assert {e.data["id"].split("/")[0] for e in seen} == {"c1"}
    assert {e.event for e in seen} == {"chat", "message"}
    assert all(e.event == e.data["kind"] for e in seen)


async def test_a_webhook_posted_to_the_receiver_reaches_the_chat_subscriber(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str) -> None:
    seed = json.loads((WEBHOOKS / "chat_initiated_seed.json").read_bytes())
    chat_id = seed["payload"]["chat"]["uuid"]
    settings = Settings(kafka=kafka_settings, data_dir=str(tmp_path),
                        privacy=privacy_for_test(kafka_settings),
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
                        http=HttpSettings(api_tokens=(TOKEN,)),
                        sources={"acme": SourceSettings(provider="natterly",
                                                        auth_tokens=(seed["auth_token"],))})
    rt = Runtime.from_settings(settings)
    roles = [ReceiverRole(rt), ProjectorRole(rt, ProjectorRoleOptions(
        runner=ProjectorRunnerOptions(group_id=f"{unique}-projector", poll_timeout_ms=100),
        streams=StreamOptions(poll_ms=100)))]
    async with TestClient(TestServer(build_app(rt, roles))) as client:
        sse = await subscribe(client, f"/api/chats/{chat_id}/stream")
        resp = await client.post("/webhooks/acme", data=(WEBHOOKS / "chat_initiated_seed.json")
                                 .read_bytes(), headers={"Content-Type": "application/json"})
        assert resp.status == 200, await resp.text()
        seen = [await sse.next()]
        while seen[-1].event != "chat":
            seen.append(await sse.next())
        assert seen[-1].data["state"]["id"] == chat_id
        assert seen[-1].data["state"]["status"] == "waiting"
        # The change covers the webhook's record: its position is among those folded in.
        accepted = (await resp.json())["position"]
        topic, partition, offset = accepted.rsplit(":", 2)
        assert {"topic": topic, "partition": int(partition), "offset": int(offset)} in \
            seen[-1].data["positions"]
        await delete_dlq(kafka_settings, topics)


async def test_resume_after_last_event_id_gets_exactly_the_missed_changes(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, role = served
    life = conversation("c1", n_messages=3)
    sse = await subscribe(client, "/api/chats/c1/stream")
    await produce(kafka_settings, topics, life[:2])  # initiated, accepted
    first = [await sse.next()]
    while first[-1].data.get("state", {}).get("status") != "active":
        first.append(await sse.next())
    sse.response.close()
    await eventually(lambda: _is(role.streams.open_streams, 0), "the first stream closed")

    await produce(kafka_settings, topics, life[2:])  # more messages, closed: missed
    records = await until_published(kafka_settings, topics, "c1", "closed")
    positions = [p for p, _ in records]
    missed = positions[positions.index(first[-1].id) + 1:]
    assert missed

    for how in ({"Last-Event-ID": first[-1].id}, {}):
        path = "/api/chats/c1/stream" + ("" if how else f"?after={first[-1].id}")
        again = await subscribe(client, path, **how)
        got = [await again.next() for _ in missed]  # more than the buffer holds: paced
        assert [e.id for e in got] == missed
        assert [e.data for e in got] == [v for _, v in records][len(positions) - len(missed):]
        again.response.close()


def _reflects(value: dict[str, Any], event: Position) -> bool:
    """Whether a state record folded the event record ``event`` (or a later one of its
    partition)."""
    return any(p["topic"] == event.topic and p["partition"] == event.partition
               and p["offset"] >= event.offset for p in value["positions"])


async def test_a_stream_after_a_webhooks_position_starts_with_its_change(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, role = served
    life = conversation("w1", n_messages=3)  # initiated, accepted, 2 messages, closed
    # Another chat on the same state partition, before and around: never sent.
    other = next(c for c in (f"o{i}" for i in range(100)) if c != "w1" and crc32(c.encode())
                 % kafka_settings.partitions == crc32(b"w1") % kafka_settings.partitions)
    await produce(kafka_settings, topics, life[:1] + conversation(other, n_messages=1))
    await until_published(kafka_settings, topics, "w1", "waiting")
    accepted = (await produce(kafka_settings, topics, life[1:2]))[0]  # the webhook's 2xx
    records = await until_published(kafka_settings, topics, "w1", "active")
    expected = next(i for i, (_, v) in enumerate(records) if _reflects(v, accepted))
    assert expected > 0  # the initiated change came before: it must not be sent

    sse = await subscribe(client, f"/api/chats/w1/stream?after={accepted}")
    seen = [await sse.next() for _ in records[expected:]]
    assert [(e.id, e.data) for e in seen] == records[expected:]
    assert _reflects(seen[0].data, accepted)
    assert [e.data["state"]["status"] for e in seen if e.event == "chat"] == ["active"]

    # Later webhooks' changes follow live, with state-topic ids.
    await produce(kafka_settings, topics, life[2:])
    records = await until_published(kafka_settings, topics, "w1", "closed")
    later = records[expected + len(seen):]
    seen += [await sse.next() for _ in later]
    assert [(e.id, e.data) for e in seen] == records[expected:]
    assert [e.data["state"]["status"] for e in seen if e.event == "chat"][-1] == "closed"
    sse.response.close()
    await eventually(lambda: _is(role.streams.open_streams, 0), "the stream closed")

    # Resuming with the last id (a state position, as before) repeats nothing.
    again = await subscribe(client, "/api/chats/w1/stream", **{"Last-Event-ID": seen[-1].id})
    lines = [await asyncio.wait_for(again.response.content.readline(), 5) for _ in range(2)]
    assert lines == [b"\n", b": heartbeat\n"], lines  # the end of `: open`, then nothing new


async def test_a_stream_after_a_webhook_not_yet_applied_waits_for_its_change(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, _ = served
    # Two records of chat h1 the projector cannot fold (it dead-letters them), so no state
    # reflects them until one is published here by hand.
    before, webhook = [await produce_raw(kafka_settings, topics.chat, b"h1", b"{}")
                       for _ in range(2)]
    sse = await subscribe(client, f"/api/chats/h1/stream?after={webhook}")
    while len(sse.comments) < 1:
        await _comment(sse)  # nothing to send yet: heartbeats
    assert sse.comments == [": heartbeat\n"]
    state = msgspec.json.encode(ChatState(id="h1", status="active"))
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        for covered in (before, webhook):
            await producer.send_and_wait(
                topics.state("chat"), key=b"h1", value=encode_state_change(
                    "chat", "h1", [(covered.topic, covered.partition, covered.offset)], state),
                partition=crc32(b"h1") % kafka_settings.partitions)
    finally:
        await producer.stop()
    first = await sse.next()
    assert first.data["positions"] == [msgspec.to_builtins(webhook)], first


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


async def test_the_stream_of_a_kind_filters_and_resumes_per_partition(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, _ = served
    sse = await subscribe(client, "/api/stream?kind=chat&status=closed&source=acme")
    chats = [f"k{i}" for i in range(4)]
    await produce(kafka_settings, topics, [e for c in chats[:2] for e in conversation(c)])
    first = [await sse.next() for _ in range(2)]
    assert sorted(e.data["id"] for e in first) == chats[:2]
    assert all(e.data["state"]["status"] == "closed" for e in first)
    sse.response.close()
    # The id names each partition passed (one empty at the start is absent: read from its
    # beginning); resuming after it sends the other chats, once each.
    assert 1 <= len(first[-1].id.split(",")) <= kafka_settings.partitions
    await produce(kafka_settings, topics, [e for c in chats[2:] for e in conversation(c)])
    again = await subscribe(client, "/api/stream?kind=chat&status=closed",
                            **{"Last-Event-ID": first[-1].id})
    rest = [await again.next() for _ in range(2)]
    assert sorted(e.data["id"] for e in rest) == chats[2:]
    # No earlier chat again: the next thing on the stream is a heartbeat.
    line = await asyncio.wait_for(again.response.content.readline(), 5)
    assert line == b": heartbeat\n", line


async def test_state_topics_hold_no_personal_data_readable_yet_streams_deliver_it(
        served: tuple[TestClient[Any, Any], ProjectorRole], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    """Sealed states (docs/privacy.md): a plain Kafka read of the chat state topic finds none
    of the chat's personal strings, while both streams deliver them, filters included."""
    client, _ = served
    personal = ("Visitor vis-p1", "message 0", "message 1")
    kinds = await subscribe(client, "/api/stream?kind=chat&status=closed&source=acme")
    one = await subscribe(client, "/api/chats/p1/stream")
    await produce(kafka_settings, topics, conversation("p1", n_messages=2))
    closed = await kinds.next()
    assert closed.data["state"]["visitor"]["name"] == "Visitor vis-p1"
    assert closed.data["state"]["status"] == "closed"
    raw = await until_published(kafka_settings, topics, "p1", "closed")  # opened: all there
    texts = [await one.next() for _ in raw]
    assert {e.data["state"].get("text") for e in texts if e.event == "message"} == {
        "message 0", "message 1"}
    assert [(e.id, e.data) for e in texts] == raw
    stored = b"".join(v for _, v in await chat_values(kafka_settings, topics, "p1", raw=True))
    assert [s for s in personal if s.encode() in stored] == []
    assert b'"status":"closed"' in stored and b'"source":"acme"' in stored  # facts: readable


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
    ]:
        resp = await client.get(path, headers=AUTH)
        body = await resp.json()
        assert resp.status == status, (path, body)
        assert body["error"] == "bad_request" and body["detail"], body
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
        await _comment(open_[0])
    open_[0].response.close()
    await eventually(lambda: _is(role.streams.open_streams, MAX_STREAMS - 1), "a slot freed")
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
    await eventually(lambda: _is(role.streams.open_streams, 0), "the slow client cut off")
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


async def _comment(sse: Sse) -> None:
    line = await asyncio.wait_for(sse.response.content.readline(), 5)
    if line.startswith(b":"):
        sse.comments.append(line.decode())


async def _is(value: int, expected: int) -> bool:
    return value == expected

"""Live subscriptions over HTTP (Server-Sent Events), served by the real projector role on a
real broker: states the runner commits and publishes reach subscribers, ids resume exactly,
a stream after a webhook's position starts with its change, and a kind's stream filters
and resumes per partition (checks, caps and bounds: test_streams_bounds.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from zlib import crc32

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts.position import Position
from contracts.state import ChatState
from contracts.state_change import encode_state_change
from contracts.topics import Topics
from parley.http import build_app
from parley.kafka.clients import make_producer
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings, StoreSettings
from projector.role import ProjectorRole, ProjectorRoleOptions
from projector.runner import ProjectorRunnerOptions
from projector.streams import StreamOptions
from receiver.role import ReceiverRole
from tests.kit.live_projector import conversation, delete_dlq, eventually, produce, produce_raw
from tests.kit.receiver_app import privacy_for_test
from tests.kit.sse_streams import (
    TOKEN,
    WEBHOOKS,
    chat_values,
    comment,
    equals,
    subscribe,
    until_published,
)

pytestmark = pytest.mark.kafka


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
    await eventually(lambda: equals(role.streams.open_streams, 0), "the first stream closed")

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
    await eventually(lambda: equals(role.streams.open_streams, 0), "the stream closed")

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
        await comment(sse)  # nothing to send yet: heartbeats
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

"""Source ownership end to end (docs/security.md, hole 10): webhooks of three authenticated
sources — two Natterly, one ChatShipper — reusing one another's ids go through the real
receiver, a real broker and the real projector; only the owner's writes show, the others
are counted, and a rebuild of the log folds to the same state.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition

from contracts.timestamps import MAX_UNIX_S
from contracts.topics import Topics
from parley.http import build_app
from parley.kafka.clients import make_consumer
from parley.runtime import Runtime
from parley.settings import HttpSettings, KafkaSettings, Settings, SourceSettings
from receiver.role import ReceiverRole
from tests.kit.live_projector import (
    T0,
    chatshipper_body,
    eventually,
    natterly_body,
    natterly_user_status,
    rebuilt_snapshot,
    running_projector,
    snapshot,
    view,
)
from tests.kit.receiver_app import privacy_for_test

TOKENS = {"acme": secrets.token_urlsafe(24), "rival": secrets.token_urlsafe(24)}
SHOP_SECRET = secrets.token_urlsafe(24)
JSON = {"Content-Type": "application/json"}
CHAT = "5c138790ec944f05ff5f6d78"  # a ChatShipper-shaped id, used by all three sources


@pytest.fixture
async def receiver(kafka_settings: KafkaSettings, topics: Topics) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    settings = Settings(kafka=kafka_settings, http=HttpSettings(shutdown_timeout_s=5.0),
                        privacy=privacy_for_test(kafka_settings), sources={
        "acme": SourceSettings(provider="natterly", auth_tokens=(TOKENS["acme"],)),
        "rival": SourceSettings(provider="natterly", auth_tokens=(TOKENS["rival"],)),
        "shop": SourceSettings(provider="chatshipper", secrets=(SHOP_SECRET,)),
    })
    rt = Runtime.from_settings(settings)
    server = TestServer(build_app(rt, [ReceiverRole(rt)]))
    await server.start_server(access_log=None, shutdown_timeout=5.0)
    client = TestClient(server)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def post_natterly(client: TestClient, source: str, body: bytes) -> None:  # type: ignore[type-arg]
    doc = orjson.loads(body)
    doc["auth_token"] = TOKENS[source]
    async with client.post(f"/webhooks/{source}", data=orjson.dumps(doc), headers=JSON) as resp:
        assert resp.status < 300, await resp.text()


async def post_shop(client: TestClient, body: bytes) -> None:  # type: ignore[type-arg]
    signature = "sha1=" + hmac.new(SHOP_SECRET.encode(), body, hashlib.sha1).hexdigest()
    async with client.post("/webhooks/shop", data=body,
                           headers=JSON | {"X-Hub-Signature": signature}) as resp:
        assert resp.status < 300, await resp.text()


async def end_offsets(kafka: KafkaSettings, topics: Topics) -> dict[tuple[str, int], int]:
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics.event_topics for p in range(kafka.partitions)]
        return {(tp.topic, tp.partition): off
                for tp, off in (await consumer.end_offsets(tps)).items() if off}
    finally:
        await consumer.stop()


async def test_sources_cannot_write_each_others_aggregates_through_the_receiver(
        receiver: TestClient, kafka_settings: KafkaSettings, topics: Topics,  # type: ignore[type-arg]
        tmp_path: Path) -> None:
    # acme's chat (a message, its visitor, its agent online), then the others reuse its ids.
    m0 = (f"{CHAT}-m0", "hello", T0)
    await post_natterly(receiver, "acme", natterly_body(
        "ChatInitiated", CHAT, T0, visitor="vis-1", messages=[m0], status="Initiated"))
    await post_natterly(receiver, "acme", natterly_body(
        "ChatAccepted", CHAT, T0 + timedelta(seconds=5), agent="ag-1", visitor="vis-1",
        messages=[m0]))
    await post_natterly(receiver, "acme", natterly_user_status("ag-1", "Online", T0))
    later = T0 + timedelta(hours=1)
    await post_natterly(receiver, "rival", natterly_body(
        "ChatClosed", CHAT, later, agent="ag-evil", visitor="vis-1", subject="pwned",
        messages=[(f"{CHAT}-evil", "click here", later)]))
    await post_natterly(receiver, "rival", natterly_user_status("ag-1", "Offline", later))
    await post_shop(receiver, chatshipper_body("cs-evil", CHAT, later, message="m-shop",
                                               text="overwritten"))
    # acme itself, with a body time from the year 9999: clamped, so it does not win either.
    doc = orjson.loads(natterly_body("ChatAccepted", CHAT, T0 + timedelta(minutes=1),
                                     agent="ag-1", visitor="vis-1",
                                     messages=[(f"{CHAT}-m1", "later", T0)]))
    doc["payload"]["messages"][0]["created_at"] = MAX_UNIX_S
    doc["payload"]["chat"]["last_message_at"] = MAX_UNIX_S
    await post_natterly(receiver, "acme", orjson.dumps(doc))
    target = await end_offsets(kafka_settings, topics)

    url = f"sqlite:///{tmp_path / 'state.db'}"
    async with running_projector(kafka_settings, topics, url, group_id="owners") as p:
        async def caught_up() -> bool:
            live = await p.store.live_projection()
            stored = await p.store.offsets(live) if live else {}
            return all(stored.get(tp, 0) >= off for tp, off in target.items())

        await eventually(caught_up, "the projector to apply every webhook")
        chat = await view(p.store, "chat", CHAT)
        assert chat is not None
        assert (chat["source"], chat["provider"], chat["subject"]) == ("acme", "natterly", "Help")
        assert (chat["status"], chat["agent"]["id"], chat["message_count"]) == ("active", "ag-1", 2)
        assert chat["last_message_at"].startswith("2026-03-01T09:01")  # clamped to the webhook
        assert await view(p.store, "message", f"{CHAT}/{CHAT}-evil") is None
        assert await view(p.store, "message", f"{CHAT}/m-shop") is None
        visitor = await view(p.store, "visitor", "vis-1")
        assert visitor is not None and visitor["name"] == "Visitor vis-1"
        agent = await view(p.store, "agent", "ag-1")
        assert agent is not None and agent["status"] == "online"
        [family] = p.metrics.foreign_source.collect()
        refused = {(s.labels["kind"], s.labels["source"])
                   for s in family.samples if s.name.endswith("_total") and s.value}
        assert {("chat", "rival"), ("message", "rival"), ("agent", "rival"),
                ("chat", "shop"), ("message", "shop")} <= refused
        live_name = await p.store.live_projection()
        assert live_name is not None
        live = await snapshot(p.store, live_name)
    # `parley projections rebuild` folds the same log to the same state.
    _, rebuilt = await rebuilt_snapshot(kafka_settings, topics)
    assert rebuilt == live

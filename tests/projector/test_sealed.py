"""The projector opens sealed records (docs/privacy.md) on a real broker: with the subject's
key the chat is whole; once the key is destroyed a rebuild folds the same log to the chat's
facts (times, status, counts), with no dead letter; and while the key store cannot be
reached the projector waits, then folds the held records, skipping none."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from contracts.envelope import Envelope
from contracts.ingest import parse_webhook
from contracts.topics import Topics
from parley.privacy import MasterKeys, MemoryKeyStore
from parley.privacy.master import new_master_key, parse_master_key
from parley.privacy.ring import KeyRing
from parley.settings import KafkaSettings
from projector.folder import Folder
from projector.rebuild import rebuild
from projector.stores import open_store
from tests.kit.live_projector import applied, eventually, produce, running_projector, snapshot, view
from tests.kit.receiver_app import FIXTURES

pytestmark = pytest.mark.kafka

CHAT = "5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"
SUBJECT = f"natterly:chat:{CHAT}"


def _ring() -> KeyRing:
    return KeyRing(MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "test"))))


async def _sealed(ring: KeyRing) -> list[Envelope]:
    body = (FIXTURES / "natterly" / "chat_initiated_identified_visitor.json").read_bytes()
    env = parse_webhook("natterly", "acme", body, received_at=datetime(2026, 12, 7, tzinfo=UTC))
    return [await ring.seal(env)]


async def test_sealed_chat_folds_whole_then_to_its_facts_once_its_key_is_gone(
        kafka_settings: KafkaSettings, topics: Topics, unique: str) -> None:
    ring = _ring()
    positions = await produce(kafka_settings, topics, await _sealed(ring))
    async with running_projector(
            kafka_settings, topics, "memory://", group_id=f"{unique}.projector",
            folder=lambda store, metrics: Folder(store, metrics=metrics, ring=ring)) as p:
        await eventually(lambda: applied(p.store, positions), "the sealed chat folded")
        chat = await view(p.store, "chat", CHAT)
        assert chat is not None
        assert chat["visitor"]["name"] == "Priya Patel" and chat["location"]["city"] == "Manchester"
        whole_count, whole_status = chat["message_count"], chat["status"]

    assert await ring.store.destroy(SUBJECT)
    ring.forget(SUBJECT)
    clean = open_store("memory://")
    await clean.open()
    try:
        report = await rebuild(clean, kafka_settings, topics, out=io.StringIO(), ring=ring)
        assert report.dead_letters == 0
        shot = await snapshot(clean, report.name)
    finally:
        await clean.close()
    (chat,) = shot["chats"]
    assert (chat["status"], chat["message_count"]) == (whole_status, whole_count)
    assert chat["initiated_at"] is not None and chat["department"]["name"] == "Sales"
    text = repr(shot)
    for personal in ("Priya", "priya@example.org", "Manchester", "81.2.69.160", "ORD-10442",
                     "where is my order"):
        assert personal not in text, personal


async def test_the_projector_waits_while_the_key_store_is_away(
        kafka_settings: KafkaSettings, topics: Topics, unique: str) -> None:
    ring = _ring()
    envelopes = await _sealed(ring)  # the key exists; now the store goes away
    store = ring.store
    assert isinstance(store, MemoryKeyStore)
    ring.forget(SUBJECT)
    store.available = False
    positions = await produce(kafka_settings, topics, envelopes)
    async with running_projector(
            kafka_settings, topics, "memory://", group_id=f"{unique}.projector",
            folder=lambda s, metrics: Folder(s, metrics=metrics, ring=ring)) as p:

        async def failing() -> bool:
            return p.runner.problem is not None and "last batch failed" in p.runner.problem

        await eventually(failing, "the batch fails while the key store is away")
        assert not await applied(p.store, positions)
        assert await view(p.store, "chat", CHAT) is None
        store.available = True
        await eventually(lambda: applied(p.store, positions), "folded once the store is back")
        chat = await view(p.store, "chat", CHAT)
        assert chat is not None and chat["visitor"]["name"] == "Priya Patel"
        assert sum(s.value for m in p.metrics.dead_letters.collect() for s in m.samples
                   if s.name.endswith("_total")) == 0

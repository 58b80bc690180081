"""The consumer runtime opens sealed records for an unchanged ``@consumer`` handler; a record
whose key is destroyed reaches it as facts (never a dead letter); while the key store is
away the batch waits and nothing is skipped (docs/privacy.md, docs/consumers.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from consumers.api import ConsumedEvent, consumer
from consumers.dlq_ops import dlq_entries
from consumers.runner import ConsumerRunnerOptions
from contracts.domain import VisitorRef
from contracts.ingest import parse_webhook
from contracts.state import ChatState
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.privacy import MasterKeys, MemoryKeyStore
from parley.privacy.master import new_master_key, parse_master_key
from parley.privacy.ring import KeyRing
from parley.settings import KafkaSettings
from projector.state_publisher import StatePublisher
from projector.stores import open_store
from projector.views import Row
from tests.kit.consumers.events import produce
from tests.kit.consumers.helpers import running, wait_for
from tests.kit.receiver_app import FIXTURES

pytestmark = pytest.mark.kafka
FILES = ("chat_initiated_identified_visitor.json", "chat_initiated_seed.json")


async def _sealed_pair(ring: KeyRing, kafka: KafkaSettings, topics: Topics) -> list[str]:
    envs = [await ring.seal(parse_webhook("natterly", "acme", (FIXTURES / "natterly" / f).read_bytes(),
                                          received_at=datetime(2026, 12, 7, tzinfo=UTC)))
            for f in FILES]
    await produce(kafka, topics, envs)
    return [str(e.subject) for e in envs]


async def test_handlers_see_whole_bodies_and_facts_once_a_key_is_gone(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    ring = KeyRing(MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "test"))))
    first, _ = await _sealed_pair(ring, kafka_settings, topics)
    await ring.store.destroy(first)
    ring.forget(first)
    bodies: dict[str, bytes] = {}

    @consumer("sealed", topics=("chat",))
    async def handle(ev: ConsumedEvent) -> None:  # as any handler written before issue 20
        bodies[ev.key or ""] = bytes(ev.envelope.body)
        assert ev.domain is not None

    async with running(handle, kafka_settings, topics, ring=ring):
        await wait_for(lambda: len(bodies) == 2, what="both events")
    forgotten, kept = (bodies["5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"],
                       bodies["287146e8-68fd-43c5-b79a-911058bc1c9c"])
    assert b"Priya" not in forgotten and b'"status":"Initiated"' in forgotten
    assert b'"text": "test"' in kept  # the seed body, opened byte for byte (pretty-printed)
    assert await dlq_entries(kafka_settings, topics, "sealed") == []


async def test_a_batch_waits_while_the_key_store_is_away(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    store = MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "test")))
    await _sealed_pair(KeyRing(store), kafka_settings, topics)
    store.available = False
    ring = KeyRing(store)
    seen: list[bytes] = []

    @consumer("waiting", topics=("chat",))
    async def handle(ev: ConsumedEvent) -> None:
        seen.append(bytes(ev.envelope.body))

    options = ConsumerRunnerOptions(key_store_retry_s=0.05)
    async with running(handle, kafka_settings, topics, options=options, ring=ring) as runner:
        await wait_for(lambda: runner.assignment != set(), what="partitions assigned")
        assert seen == []
        store.available = True
        await wait_for(lambda: len(seen) == 2, what="both events once the store is back")
    assert any(b"Priya Patel" in b for b in seen)


async def test_a_state_consumer_sees_sealed_states_whole_and_facts_once_a_key_is_gone(
        kafka_settings: KafkaSettings, topics: Topics) -> None:
    """States the projector published sealed (docs/privacy.md) reach a ``states=`` handler
    opened, like events; a forgotten chat's reach it as facts."""
    ring = KeyRing(MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "test"))))
    store = open_store("memory://")
    await store.open()
    await store.create_projection("p")

    def row(chat: str) -> Row:
        view = ChatState(id=chat, provider="natterly", source="acme", status="active",
                         visitor=VisitorRef(id=f"v-{chat}", name=f"Priya {chat}"))
        return Row(kind="chat", id=chat, state=b"", view=msgspec.json.encode(view),
                   chat_id=chat, provider="natterly")

    await store.commit("p", [row("kept"), row("gone")], {}, publish=True)
    await StatePublisher.ensure_topics(kafka_settings, topics)
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        assert await StatePublisher(store, producer, topics, ring=ring).publish_pending() == 2
    finally:
        await producer.stop()
    await store.close()
    assert await ring.store.destroy("natterly:chat:gone")
    ring.forget("natterly:chat:gone")
    names: dict[str, str | None] = {}

    @consumer("sealed-states", states=("chat",))
    async def handle(ev: ConsumedEvent) -> None:
        state = ev.state.state
        assert isinstance(state, ChatState) and state.visitor is not None
        names[state.id] = state.visitor.name

    async with running(handle, kafka_settings, topics, ring=KeyRing(ring.store)):
        await wait_for(lambda: len(names) == 2, what="both states")
    assert names == {"kept": "Priya kept", "gone": None}
    assert await dlq_entries(kafka_settings, topics, "sealed-states") == []

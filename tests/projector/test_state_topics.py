"""State topics on a real broker: the runner publishes every committed state through the
store's outbox, after the commit, and a crash between the two loses nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from contracts.state_change import StateChange, decode_state_change
from contracts.topics import Topics
from parley.kafka.clients import make_consumer, make_producer
from parley.settings import KafkaSettings
from projector.outbox import OutboxEntry, entry_for, wrap_state
from projector.state_publisher import StatePublisher
from projector.states import AggregateRef, ChatFold
from projector.store import Store
from projector.stores import open_store
from projector.views import row_for
from tests.kit.live_projector import (
    applied,
    conversation,
    eventually,
    produce,
    running_projector,
    shipper_conversation,
)
from tests.kit.store_contract import chat

pytestmark = pytest.mark.asyncio


async def read_states(kafka: KafkaSettings, topics: Topics) -> list[tuple[str, int, StateChange]]:
    """Every record of the three state topics: (key, partition, change), in log order."""
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics.state_topics for p in range(kafka.partitions)]
        consumer.assign(parts)
        end = await consumer.end_offsets(parts)
        await consumer.seek_to_beginning(*parts)
        out: list[tuple[str, int, StateChange]] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for recs in batch.values():
                out += [(r.key.decode(), r.partition, decode_state_change(r.value)) for r in recs]
        return out
    finally:
        await consumer.stop()


async def views(store: Store) -> dict[tuple[str, str], dict[str, object]]:
    live = await store.live_projection()
    assert live is not None
    out = {}
    for kind, ids in (("chat", ["c1", "c2", "s1"]), ("visitor", ["vis-c1", "vis-c2"])):
        for id in ids:
            view = await store.get_view(live, kind, id)
            if view is not None:
                out[(kind, id)] = orjson.loads(view)
    return out


def latest(changes: Sequence[tuple[str, int, StateChange]]) -> dict[tuple[str, str], StateChange]:
    """The greatest version per (kind, key): what a consumer idempotent by version keeps."""
    out: dict[tuple[str, str], StateChange] = {}
    for _, _, change in changes:
        key = (change.kind, change.id)
        if key not in out or change.version >= out[key].version:
            out[key] = change
    return out


def check_published(changes: Sequence[tuple[str, int, StateChange]],
                    stored: dict[tuple[str, str], dict[str, object]]) -> None:
    # Duplicates only with the same version: one (key, version) is always one state.
    seen: dict[tuple[str, str, int], StateChange] = {}
    for _, _, change in changes:
        first = seen.setdefault((change.kind, change.id, change.version), change)
        assert first == change
    # Versions only grow along a key's records.
    last: dict[tuple[str, str], int] = {}
    for _, _, change in changes:
        assert change.version >= last.get((change.kind, change.id), 0)
        last[(change.kind, change.id)] = change.version
    final = latest(changes)
    for key, view in stored.items():
        assert orjson.loads(msgspec.json.encode(final[key].state)) == view, key
    # A chat's messages are in its chat's partition, keyed "{chat}/{message}".
    chat_partition = {c.id: p for _, p, c in changes if c.kind == "chat"}
    messages = [(k, p, c) for k, p, c in changes if c.kind == "message"]
    assert messages
    for key, partition, change in messages:
        chat_id = key.rsplit("/", 1)[0]
        assert key == change.id and partition == chat_partition[chat_id]


async def test_the_runner_publishes_every_committed_state(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str
) -> None:
    envs = conversation("c1") + shipper_conversation("s1")
    positions = await produce(kafka_settings, topics, envs)
    async with running_projector(
        kafka_settings, topics, f"sqlite:///{tmp_path / 'state.db'}", group_id=f"g-{unique}",
        publisher=lambda store, producer: StatePublisher(store, producer, topics, poll_s=0.1),
    ) as p:
        await eventually(lambda: applied(p.store, positions), "the events applied")
        await eventually(lambda: _empty_outbox(p.store), "the outbox drained")
        stored = await views(p.store)
    changes = await read_states(kafka_settings, topics)
    check_published(changes, stored)
    final = latest(changes)
    chat = final[("chat", "c1")]
    assert chat.state.status == "closed"  # type: ignore[union-attr]
    # The positions a chat covers are its records' (one partition, the last offset).
    chat_positions = {(p.topic, p.partition): p.offset for p in positions[:len(conversation("c1"))]}
    assert {(p.topic, p.partition): p.offset for p in chat.positions} == chat_positions


async def _empty_outbox(store: Store) -> bool:
    return await store.outbox(1) == []


class _Unpublishing(StatePublisher):
    """A publisher whose process dies before anything it sends is acknowledged."""

    async def _send(self, entries: list[OutboxEntry]) -> None:
        raise ConnectionError("killed before publishing")


async def test_states_committed_but_not_published_are_published_by_the_next_runner(
    kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = await produce(kafka_settings, topics, conversation("c1") + conversation("c2"))
    async with running_projector(
        kafka_settings, topics, url, group_id=f"g-{unique}",
        publisher=lambda store, producer: _Unpublishing(store, producer, topics, poll_s=0.1,
                                                        retry_backoff_s=0.1),
    ) as p:
        await eventually(lambda: applied(p.store, first), "the events applied")
        pending = await p.store.outbox(10_000)
    assert pending, "the committed states wait in the outbox"
    assert await read_states(kafka_settings, topics) == []  # nothing published yet
    # A new process over the same store: it publishes what the dead one left, then goes on.
    more = await produce(kafka_settings, topics, conversation("c1", n_messages=4))
    store = open_store(url)
    await store.open()
    try:
        async with running_projector(
            kafka_settings, topics, url, group_id=f"g-{unique}", store=store,
            publisher=lambda store, producer: StatePublisher(store, producer, topics, poll_s=0.1),
        ) as p:
            await eventually(lambda: applied(p.store, first + more), "the events applied")
            await eventually(lambda: _empty_outbox(p.store), "the outbox drained")
            stored = await views(p.store)
    finally:
        await store.close()
    changes = await read_states(kafka_settings, topics)
    check_published(changes, stored)
    published = {(c.kind, c.id, c.version) for _, _, c in changes}
    left = {(c.kind, c.id, c.version) for c in map(decode_state_change, (e.value for e in pending))}
    assert left <= published, "every state left in the outbox was published"


async def test_sent_but_not_deleted_is_sent_again_with_the_same_version(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    """Killed after Kafka acknowledged but before the outbox delete: a duplicate, same version."""
    store = open_store("memory://")
    await store.open()
    await store.create_projection("p")
    await store.commit("p", [chat("c1")], {}, publish=True)
    await StatePublisher.ensure_topics(kafka_settings, topics)
    producer: AIOKafkaProducer = make_producer(kafka_settings)
    await producer.start()
    try:
        dying = StatePublisher(store, producer, topics)
        await dying._send(await store.outbox(10))  # acknowledged; the process dies here
        assert len(await store.outbox(10)) == 1
        assert await StatePublisher(store, producer, topics).publish_pending() == 1
    finally:
        await producer.stop()
    assert await store.outbox(10) == []
    [(key, _, first), (again, _, second)] = await read_states(kafka_settings, topics)
    assert key == again == "c1" and first == second


async def test_a_rebuild_writes_the_outbox_only_when_asked(
    kafka_settings: KafkaSettings, topics: Topics
) -> None:
    import io

    from projector.rebuild import rebuild

    await produce(kafka_settings, topics, conversation("c1") + conversation("c2"))
    store = open_store("memory://")
    await store.open()
    quiet = await rebuild(store, kafka_settings, topics, out=io.StringIO())
    assert await store.outbox(10) == []
    loud = await rebuild(store, kafka_settings, topics, out=io.StringIO(), publish_states=True)
    entries = await store.outbox(10_000)
    counts = await store.counts(loud.name)
    assert len(entries) >= sum(counts.values()) > 0
    # The same log gives the same versions, whatever the batching: as the live copy had.
    final = {(c.kind, c.id): c for c in map(decode_state_change, (e.value for e in entries))}
    for (kind, id), change in final.items():
        view = await store.get_view(loud.name, kind, id)
        assert view is not None and orjson.loads(view) == orjson.loads(msgspec.json.encode(change.state))
    assert quiet.name != loud.name


async def test_an_entry_names_the_provider_whose_subject_seals_it() -> None:
    """The publisher seals a state under its provider's subject (parley/privacy/states.py):
    the folder's rows carry the provider, and a row read back from a store (the slow path,
    no provider column) names it from its fold state."""
    fold = ChatFold(id="c1", provider="chatshipper", source="shop")
    row = row_for(AggregateRef("chat", "c1"), fold)
    assert entry_for(row).provider == "chatshipper"
    read_back = msgspec.structs.replace(row, provider=None,
                                        state=wrap_state(row.state, (("t", 0, 4),)))
    assert entry_for(read_back).provider == "chatshipper"
    assert entry_for(chat("c2")).provider is None  # a state that does not decode: none

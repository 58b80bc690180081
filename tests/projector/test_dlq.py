"""Bad records are dead-lettered with their coordinates and skipped; the projection carries on."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from contracts.dead_letter import DeadLetterEntry, decode
from contracts.domain import DomainEvent
from contracts.envelope import encode_envelope
from contracts.position import Position
from contracts.topics import PROJECTOR, Topics
from parley.kafka.clients import make_consumer, make_producer
from parley.settings import KafkaSettings
from projector.dlq import DeadLetter, KafkaDeadLetters
from projector.fold import apply
from projector.folder import Folder
from projector.states import AggregateRef, FoldState
from projector.stores import open_store
from tests.kit.consumers.cli import parley
from tests.kit.live_projector import (
    T0,
    applied,
    chatshipper_body,
    delete_dlq,
    envelope,
    eventually,
    natterly_body,
    produce,
    produce_raw,
    running_projector,
    view,
)

pytestmark = pytest.mark.kafka



def poisoned_apply(ref: AggregateRef, state: FoldState | None, event: DomainEvent) -> FoldState:
    """The real fold, except that it fails on events of webhook ``poison-…`` (a fold bug)."""
    if event.event_id.startswith("poison"):
        raise ValueError("cannot apply this event")
    return apply(ref, state, event)


async def test_garbage_and_unappliable_records_are_dead_lettered_and_skipped(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str,
        caplog: pytest.LogCaptureFixture) -> None:
    first = envelope("natterly", "acme", natterly_body(
        "ChatInitiated", "chat-x", T0, visitor="v-x", messages=[("m0", "hi", T0)]))
    [p_first] = await produce(kafka_settings, topics, [first])
    garbage = b"\x00this is not JSON{"
    p_garbage = await produce_raw(kafka_settings, topics.chat, b"chat-x", garbage)
    # From the chat's own source: another source's events never reach the fold (owners.py).
    poison = envelope("chatshipper", "acme", chatshipper_body(
        "poison-1", "chat-x", T0 + timedelta(seconds=1), message="pm", text="poison"))
    [p_poison] = await produce(kafka_settings, topics, [poison])
    later = envelope("natterly", "acme", natterly_body(
        "ChatClosed", "chat-x", T0 + timedelta(seconds=30), agent="ag-1", visitor="v-x",
        messages=[("m0", "hi", T0), ("m1", "bye", T0 + timedelta(seconds=20))]))
    [p_later] = await produce(kafka_settings, topics, [later])
    # One key, one partition: the bad records sit between the good ones.
    assert len({(p.topic, p.partition) for p in (p_first, p_garbage, p_poison, p_later)}) == 1
    positions = [p_first, p_garbage, p_poison, p_later]

    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    caplog.set_level(logging.WARNING, logger="parley.projector.dlq")
    try:
        async with running_projector(
                kafka_settings, topics, "", group_id=f"{unique}-projector", store=store,
                # Real store, real fold, except that it fails on the poison event.
                folder=lambda s, m: Folder(s, metrics=m, apply_fn=poisoned_apply)) as p:
            await eventually(lambda: applied(store, positions), "all four records committed")
            chat = await view(store, "chat", "chat-x")
            assert chat is not None
            assert (chat["status"], chat["message_count"]) == ("closed", 2)  # poison's message absent
            dead = {(s.labels["stage"], s.labels["error"]): s.value
                    for m in p.metrics.dead_letters.collect() for s in m.samples
                    if s.name.endswith("_total")}
            assert dead == {("decode", "ContractError"): 1.0, ("apply", "ValueError"): 1.0}
            letters = await _read(kafka_settings, p.dlq_topic, 2)
    finally:
        await store.close()
    assert len(letters) == 2
    # The one dead-letter format of every group (contracts/dead_letter.py).
    entries = [decode(r.offset, r.key, r.headers, r.value, keep_value=True) for r in letters]
    by_offset = {e.origin.offset: e for e in entries if isinstance(e, DeadLetterEntry)}
    g = by_offset[p_garbage.offset]
    assert g.value == garbage and g.key == "chat-x" and g.kind == "dead"
    assert (g.group, g.error_type, g.reason) == (PROJECTOR, "ContractError", "decode")
    assert g.origin == Position(topics.chat, p_garbage.partition, p_garbage.offset)
    assert g.error and g.attempts == 1 and g.at is not None and g.first_failed_at == g.at
    x = by_offset[p_poison.offset]
    assert x.value == encode_envelope(poison)
    assert (x.error_type, x.reason) == ("ValueError", "apply")
    assert x.error == "cannot apply this event"
    assert x.projection == "v1"
    logged = " ".join(r.getMessage() for r in caplog.records)
    for pos in (p_garbage, p_poison):
        assert f"{pos.topic}:{pos.partition}:{pos.offset}" in logged


async def _read(kafka: KafkaSettings, topic: str, want: int) -> list[ConsumerRecord]:
    consumer = make_consumer(kafka, topic, group_id=None)
    letters: list[ConsumerRecord] = []
    try:
        await consumer.start()

        async def enough() -> bool:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                letters.extend(recs)
            return len(letters) >= want

        await eventually(enough, f"{want} dead letters")
    finally:
        await consumer.stop()
    return letters


async def test_parley_dlq_projector_lists_and_skips_letters_of_every_format(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    """`parley dlq projector` (and its alias `parley consumers dlq projector`) reads the
    projector's letters, those written before the one format too, and resolves them."""
    await KafkaDeadLetters.ensure_topic(kafka_settings, topics)
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        # A letter as the projector wrote it before contracts/dead_letter.py...
        await producer.send_and_wait(topics.dlq(PROJECTOR), b"\x00old", key=b"chat-old", headers=[
            ("parley.error", b"ContractError"), ("parley.error.stage", b"decode"),
            ("parley.error.detail", b"envelope: not JSON"),
            ("parley.origin.topic", topics.chat.encode()), ("parley.origin.partition", b"3"),
            ("parley.origin.offset", b"17"), ("parley.origin.timestamp_ms", b"1767603600000"),
            ("parley.consumer", b"projector"), ("parley.projection", b"v1")])
        # ...and one it writes now.
        await KafkaDeadLetters(producer, topics).send([DeadLetter(
            topic=topics.chat, partition=4, offset=9, timestamp_ms=1767603600000, key=b"chat-new",
            value=b"{}", stage="apply", error="ValueError", detail="cannot apply")], "v2")

        for command in (("dlq",), ("consumers", "dlq")):
            code, out = await parley(tmp_path, kafka_settings, *command, "projector", "list")
            assert code == 0, out
            assert f"key=chat-old origin={topics.chat}:3:17" in out
            assert "decode ContractError: envelope: not JSON after 1 attempt(s)" in out
            assert f"key=chat-new origin={topics.chat}:4:9" in out and "projection v2" in out
            assert "2 unresolved entries" in out
        code, out = await parley(tmp_path, kafka_settings, "dlq", "projector", "replay")
        assert code == 1 and out.count("\n") == 1 and "projections rebuild" in out, out
        code, out = await parley(tmp_path, kafka_settings, "dlq", "projector", "skip",
                                  "--key", "chat-old")
        assert code == 0 and "skipped 1 entry" in out, out
        code, out = await parley(tmp_path, kafka_settings, "dlq", "projector", "list")
        assert "chat-old" not in out and "chat-new" in out and "1 unresolved entry" in out, out
    finally:
        await producer.stop()
        await delete_dlq(kafka_settings, topics)

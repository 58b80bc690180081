"""Bad records are dead-lettered with their coordinates and skipped; the projection carries on."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from contracts.domain import DomainEvent
from contracts.envelope import encode_envelope
from contracts.topics import Topics
from parley.kafka.clients import make_consumer
from parley.settings import KafkaSettings
from projector.fold import AggregateRef, FoldState, apply
from projector.runner import Folder
from projector.stores import open_store
from tests.projector.test_runner_kit import (
    T0,
    applied,
    chatshipper_body,
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
    by_offset = {int(dict(r.headers)["parley.origin.offset"]): r for r in letters}
    g = by_offset[p_garbage.offset]
    gh = {k: v.decode() for k, v in g.headers}
    assert g.value == garbage and g.key == b"chat-x"
    assert gh["parley.error"] == "ContractError" and gh["parley.error.stage"] == "decode"
    assert gh["parley.origin.topic"] == topics.chat
    assert gh["parley.origin.partition"] == str(p_garbage.partition)
    assert gh["parley.error.detail"]
    x = by_offset[p_poison.offset]
    xh = {k: v.decode() for k, v in x.headers}
    assert x.value == encode_envelope(poison)
    assert (xh["parley.error"], xh["parley.error.stage"]) == ("ValueError", "apply")
    assert xh["parley.error.detail"] == "cannot apply this event"
    assert xh["parley.projection"] == "v1"
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

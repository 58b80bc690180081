"""The runner's Folder (steps 3-6 and the rows of step 8) on the real fold and SQLite store.

No Kafka here: records are built in memory exactly as aiokafka hands them over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from contracts.envelope import Envelope, encode_envelope
from projector.fold import AggregateRef, FoldState
from projector.metrics import ProjectorMetrics
from projector.runner import Folder
from projector.store import Store
from projector.stores import open_store
from projector.views import Row, row_for
from tests.projector.test_runner_kit import T0, conversation, shipper_conversation


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await s.open()
    await s.create_projection("p")
    try:
        yield s
    finally:
        await s.close()


def records(envs: Sequence[Envelope | bytes], topic: str = "t.events.chat", partition: int = 0,
            first_offset: int = 0) -> list[ConsumerRecord]:
    out = []
    for i, env in enumerate(envs):
        value = env if isinstance(env, bytes) else encode_envelope(env)
        key = b"k" if isinstance(env, bytes) else env.record_key
        out.append(ConsumerRecord(topic, partition, first_offset + i, 0, 0, key, value, None,
                                  len(key), len(value), []))
    return out


async def test_rows_offsets_and_cache(store: Store) -> None:
    metrics = ProjectorMetrics.create(CollectorRegistry())
    folder = Folder(store, cache_size=1000, metrics=metrics)
    batch = records(conversation("c1", n_messages=2)) + records(
        shipper_conversation("s1", n_messages=1), partition=2, first_offset=40)
    result = await folder.fold("p", batch)
    assert result.offsets == {("t.events.chat", 0): 4, ("t.events.chat", 2): 42}
    assert result.dead == []
    kinds = sorted((r.kind, r.id) for r in result.rows)
    assert kinds == [("chat", "c1"), ("chat", "s1"), ("message", "c1/c1-m0"),
                     ("message", "c1/c1-m1"), ("message", "s1/s1-m0"), ("visitor", "vis-c1")]
    await store.commit("p", result.rows, result.offsets)
    folder.remember(result.states)
    # Next batch: the same chat again, its state comes from the cache, not the store.
    more = await folder.fold("p", records(conversation("c1", n_messages=3), first_offset=4))
    [hits] = metrics.cache_hits.collect()
    assert next(s.value for s in hits.samples if s.name.endswith("_total")) >= 2
    chat = next(r for r in more.rows if r.kind == "chat")
    assert orjson.loads(chat.view)["message_count"] == 3
    # A fresh folder (after a revocation) loads the committed state from the store.
    fresh = await Folder(store).fold("p", records(conversation("c1", n_messages=1),
                                                  first_offset=9))
    chat = next(r for r in fresh.rows if r.kind == "chat")
    assert orjson.loads(chat.view)["message_count"] == 2  # m0, m1 from the store; m0 again


async def test_a_record_is_all_or_nothing_and_view_failures_are_dead_lettered(store: Store) -> None:
    def fragile_row(ref: AggregateRef, state: FoldState) -> Row:
        row = row_for(ref, state)
        if ref.kind == "chat" and orjson.loads(row.view)["message_count"] == 2:
            raise OverflowError("view cannot be built")
        return row

    envs = conversation("c1", n_messages=2, close=False)  # initiated(m0), accepted, accepted(m1)
    batch = records([envs[0], b"{garbage", envs[1], envs[2]])
    result = await Folder(store, row_fn=fragile_row).fold("p", batch)
    assert [(d.offset, d.stage, d.error) for d in result.dead] == [
        (1, "decode", "ContractError"), (3, "apply", "OverflowError")]
    assert result.offsets == {("t.events.chat", 0): 4}  # skipped records are consumed too
    by_id = {r.id: r for r in result.rows}
    # The failing record changed nothing: neither its message nor the chat's count.
    assert "c1/c1-m1" not in by_id
    assert orjson.loads(by_id["c1"].view)["message_count"] == 1
    assert orjson.loads(by_id["c1"].view)["agent"]["id"] == "ag-1"  # from the good record


async def test_duplicates_inside_one_batch_count_once(store: Store) -> None:
    envs = conversation("c9", n_messages=3, start=T0 + timedelta(days=1))
    result = await Folder(store).fold("p", records(envs + envs[::-1]))
    chat = next(r for r in result.rows if r.kind == "chat")
    assert orjson.loads(chat.view)["message_count"] == 3
    assert len([r for r in result.rows if r.kind == "chat"]) == 1  # one row per aggregate


async def test_a_fresh_copy_reads_back_only_what_it_wrote_and_was_evicted(store: Store) -> None:
    """``fresh=True`` (a rebuild's copy): misses for aggregates this folder never committed
    skip the store, but one that was committed and then evicted from the cache is read
    back, so the fold still continues from its stored state."""
    folder = Folder(store, cache_size=1000, fresh=True)
    first = await folder.fold("p", records(conversation("c1", n_messages=2, close=False)))
    await store.commit("p", first.rows, first.offsets)
    folder.remember(first.states)
    folder.clear()  # as if evicted: c1 is known to be written, but no longer cached
    more = await folder.fold("p", records(conversation("c1", n_messages=1), first_offset=3))
    chat = next(r for r in more.rows if r.kind == "chat")
    assert orjson.loads(chat.view)["message_count"] == 2  # m0, m1 read back from the store
    # Never written by this folder: not looked up at all (the store has no such row either).
    calls: list[int] = []
    load = store.load

    async def counting_load(projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        calls.append(len(refs))
        return await load(projection, refs)

    store.load = counting_load  # type: ignore[method-assign]
    await folder.fold("p", records(conversation("c2", n_messages=1), first_offset=10))
    assert calls == []

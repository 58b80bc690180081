"""The runner's Folder (steps 3-6 and the rows of step 8) on the real fold and SQLite store.

No Kafka here: records are built in memory exactly as aiokafka hands them over.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import msgspec
import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from contracts.domain import DomainEvent
from contracts.envelope import Envelope, decode_envelope, encode_envelope
from contracts.errors import ContractError
from contracts.ingest import parse_webhook
from contracts.normalise import normalise, normalise_decoded
from projector.fold import affected, apply
from projector.folder import Folder, gc_paused
from projector.metrics import ProjectorMetrics
from projector.states import AggregateRef, FoldState
from projector.store import Store
from projector.stores import open_store
from projector.views import Row, row_for
from tests.kit.live_projector import T0, conversation, shipper_conversation


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
    kinds = sorted((r.kind, r.id) for r in result.rows if not r.kind.endswith("_log"))
    # Each chat's and agent's log index (projector.log_index): a row per record folded in.
    assert sorted(r.id for r in result.rows if r.kind == "chat_log") == [
        *(f"c1/t.events.chat:0:{o:020d}" for o in range(4)),
        *(f"s1/t.events.chat:2:{o:020d}" for o in (40, 41))]
    assert sorted(r.id for r in result.rows if r.kind == "agent_log") == [
        f"ag-1/t.events.chat:0:{o:020d}" for o in range(1, 4)]
    # The chat webhooks name agent ag-1, which names its agent row too.
    assert kinds == [("agent", "ag-1"), ("chat", "c1"), ("chat", "s1"), ("message", "c1/c1-m0"),
                     ("message", "c1/c1-m1"), ("message", "s1/s1-m0"), ("visitor", "vis-c1")]
    await store.commit("p", result.rows, result.offsets)
    folder.remember(result.states, result.covers)
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
    folder.remember(first.states, first.covers)
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
    # (Another agent: c1's agent row was written, so ag-1 would rightly be read back.)
    await folder.fold("p", records(conversation("c2", n_messages=1, agent="ag-2"),
                                   first_offset=10))
    assert calls == []


async def test_the_cache_keeps_a_whole_batch_however_small_it_is(store: Store) -> None:
    """A rebuild remembers a batch while its transaction is in flight and then loads what
    it misses from the store without waiting for it: so no state of the batch just
    remembered may be evicted, even when the batch has more states than the cache holds."""
    folder = Folder(store, cache_size=1, fresh=True)
    first = await folder.fold("p", records(conversation("c1", n_messages=2, close=False)))
    assert len(first.states) > 1
    folder.remember(first.states, first.covers)  # not committed: the store has none of them
    calls: list[list[AggregateRef]] = []
    load = store.load

    async def counting_load(projection: str, refs: Sequence[AggregateRef]) -> dict[AggregateRef, bytes]:
        calls.append(list(refs))
        return await load(projection, refs)

    store.load = counting_load  # type: ignore[method-assign]
    more = await folder.fold("p", records(conversation("c1", n_messages=1), first_offset=3))
    assert calls == []  # every state of the first batch came from the cache
    chat = next(r for r in more.rows if r.kind == "chat")
    assert orjson.loads(chat.view)["message_count"] == 2
    # The next batch's remember trims the cache to its size again (but never below a batch).
    folder.remember(more.states, more.covers)
    assert len(folder._cache) == max(1, len(more.states))


async def test_a_record_failing_to_apply_is_undone_and_the_rest_commits(store: Store) -> None:
    """The fold first applies a batch optimistically, without remembering prior states; an
    event that fails sends it back to the careful record-by-record fold from the states the
    batch started with. The failing record's earlier writes (its chat, messages) are all
    undone, it is dead-lettered, and the records before *and after* it fold as if it had
    never been there."""
    envs = conversation("c1", n_messages=3)  # initiated, accepted, accepted(m1), (m2), closed
    poison = envs[3]  # its last event is a VisitorSeen: chat and message writes come first
    calls: list[str] = []

    def poisoned(ref: AggregateRef, state: FoldState | None, event: DomainEvent) -> FoldState:
        calls.append(ref.kind)
        if event.event_id == poison.event_id + "#visitor":
            raise ValueError("cannot apply this event")
        return apply(ref, state, event)

    result = await Folder(store, apply_fn=poisoned).fold("p", records(envs))
    assert [(d.offset, d.stage, d.error, d.detail) for d in result.dead] == [
        (3, "apply", "ValueError", "cannot apply this event")]
    assert result.offsets == {("t.events.chat", 0): 5}
    # The same rows, states and event count as a batch that never had the poison record.
    without = await Folder(store).fold("p", records(envs[:3]) + records(envs[4:], first_offset=4))
    assert sorted(result.rows, key=_row_key) == sorted(without.rows, key=_row_key)
    assert result.states == without.states
    assert result.events == without.events
    # The optimistic pass was tried first: more applications than one careful pass makes.
    assert len(calls) > sum(len(affected(ev)) for env in envs for ev in normalise(env))


async def test_a_batch_that_applies_cleanly_folds_once(store: Store) -> None:
    calls: list[str] = []

    def counting(ref: AggregateRef, state: FoldState | None, event: DomainEvent) -> FoldState:
        calls.append(ref.kind)
        return apply(ref, state, event)

    envs = conversation("c1", n_messages=2) + shipper_conversation("s1")
    result = await Folder(store, apply_fn=counting).fold("p", records(envs))
    events = [ev for env in envs for ev in normalise(env)]
    assert result.dead == [] and result.events == len(events)
    assert len(calls) == sum(len(affected(ev)) for ev in events)


def test_normalise_decoded_skips_only_the_body_check_decode_envelope_made() -> None:
    """The folder normalises with ``normalise_decoded``: the same events as ``normalise``
    for whatever ``decode_envelope`` returns, which has checked the body's UTF-8 already."""
    for env in conversation("c1") + shipper_conversation("s1"):
        decoded = decode_envelope(encode_envelope(env))
        assert normalise_decoded(decoded) == normalise(decoded) == normalise(env) != []
    # Invalid UTF-8 where msgspec does not look (a key it skips): ``normalise`` still says
    # "no events", and such a record value never gets past decode_envelope.
    env = conversation("c1")[0]
    body = bytes(env.body)
    bad = msgspec.structs.replace(env, body=msgspec.Raw(body[:1] + b'"x":"\xff",' + body[1:]))
    assert normalise(bad) == []
    with pytest.raises(ContractError):
        decode_envelope(encode_envelope(bad))


def _row_key(row: Row) -> tuple[str, str]:
    return (row.kind, row.id)


async def test_unusable_fields_are_counted_and_logged_and_the_rest_folded(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    metrics = ProjectorMetrics.create(CollectorRegistry())
    body = orjson.dumps({"event": "ChatAccepted", "timestamp": 1772355600,
                         "payload": {"chat": {"uuid": "c-bad", "subject": 42, "browser": "Firefox"}}})
    env = parse_webhook("natterly", "acme", body, received_at=T0)
    with caplog.at_level("WARNING", logger="parley.projector.runner"):
        result = await Folder(store, metrics=metrics).fold("p", records([env]))
    assert result.dead == []
    chat = msgspec.json.decode(next(r.view for r in result.rows if r.kind == "chat"))
    assert (chat["status"], chat["browser"], chat["subject"]) == ("active", "Firefox", None)
    [family] = metrics.dropped_fields.collect()
    assert [(s.labels, s.value) for s in family.samples if s.name.endswith("_total")] == [
        ({"provider": "natterly", "field": "payload.chat.subject"}, 1.0)]
    assert any(env.event_id in r.getMessage() and "payload.chat.subject" in r.getMessage()
               and "42" not in r.getMessage().replace(env.event_id, "") for r in caplog.records)


async def _fold_in_batches(store: Store, projection: str, batch: list[ConsumerRecord],
                           cuts: Sequence[int]) -> dict[tuple[str, str], bytes]:
    """Fold ``batch`` cut at ``cuts``, committing each part; the rows' state bytes at the end."""
    await store.create_projection(projection)
    folder = Folder(store)
    bounds = [0, *cuts, len(batch)]
    for lo, hi in pairwise(bounds):
        result = await folder.fold(projection, batch[lo:hi])
        await store.commit(projection, result.rows, result.offsets)
        if lo == 0:
            folder.remember(result.states, result.covers)  # one part from the cache, others stored
        else:
            folder.clear()
    refs = [AggregateRef("chat", "c1"), AggregateRef("visitor", "vis-c1"),
            AggregateRef("message", "c1/c1-m1")]
    return {(r.kind, r.id): s for r, s in (await store.load(projection, refs)).items()}


async def test_rows_carry_the_positions_they_cover_whatever_the_batching(store: Store) -> None:
    from contracts.state_change import decode_state_change
    from projector.outbox import entry_for, unwrap_state

    batch = records(conversation("c1", n_messages=3), partition=4, first_offset=100)
    batch += records([b"not an envelope"], partition=4, first_offset=100 + len(batch))
    whole = await _fold_in_batches(store, "whole", batch, [])
    assert await _fold_in_batches(store, "cut", batch, [2, 5]) == whole
    assert await _fold_in_batches(store, "each", batch, list(range(1, len(batch)))) == whole
    chat_covers, _ = unwrap_state(whole[("chat", "c1")])
    last = 100 + len(batch) - 2  # the dead letter at the end covers nothing
    assert chat_covers == (("t.events.chat", 4, last),)
    message_covers, _ = unwrap_state(whole[("message", "c1/c1-m1")])
    assert len(message_covers) == 1 and message_covers[0][:2] == ("t.events.chat", 4)
    # The published version is the sum of offsets + 1 of the positions covered.
    more = records(conversation("c1", n_messages=1), partition=1, first_offset=7)
    result = await Folder(store).fold("whole", more)
    row = next(r for r in result.rows if r.kind == "chat")
    change = decode_state_change(entry_for(row).value)
    end = more[-1].offset
    assert [str(p) for p in change.positions] == [f"t.events.chat:1:{end}", f"t.events.chat:4:{last}"]
    assert change.version == end + 1 + last + 1


def test_wrapped_states_keep_their_covers_and_older_states_read_as_covering_nothing() -> None:
    from projector.outbox import unwrap_state, wrap_state
    from projector.states import ChatFold, encode_state

    state = encode_state(ChatFold(id="c1"))
    covers = (("t.events.chat", 0, 7), ("t.events.visitor", 3, 2))
    assert unwrap_state(wrap_state(state, covers)) == (covers, state)
    assert unwrap_state(state) == ((), state)  # written before states carried positions
    assert wrap_state(state, ()) == state


@pytest.mark.parametrize("first_out", [True, False])
def test_overlapping_gc_pauses_never_leave_the_collector_off(first_out: bool) -> None:
    """Two folds' pauses overlapping (a rebuild beside the runner), ending in either order:
    collection is paused while the first runs and on again once both are done; a process
    that had turned it off keeps it off."""
    assert gc.isenabled()
    try:
        first, second = gc_paused(), gc_paused()
        first.__enter__()
        assert not gc.isenabled()
        second.__enter__()
        for pause in (first, second) if first_out else (second, first):
            pause.__exit__(None, None, None)
        assert gc.isenabled()
        gc.disable()
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()

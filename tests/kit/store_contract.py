"""The one contract every :class:`projector.store.Store` implementation must pass.

A test module subclasses :class:`StoreContract` and provides a ``harness`` fixture (a
:class:`Harness`): tests/projector/'s ``test_store_memory.py``, ``test_store_sqlite.py``
and ``test_store_postgres.py``. Nothing here is collected on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import msgspec
import pytest

from contracts.state_change import decode_state_change
from projector.errors import (
    InvalidProjectionName,
    LiveProjectionDrop,
    UnknownProjection,
)
from projector.outbox import OutboxEntry, entry_for, wrap_state
from projector.states import AggregateRef
from projector.store import KINDS, Store
from tests.kit.rollup_contract import RollupContract
from tests.kit.store_read_contract import ReadContract
from tests.kit.store_rows import agent, all_chats, chat, message, views_of, visitor

__all__ = ["Harness", "StoreContract", "agent", "all_chats", "chat", "message", "views_of",
           "visitor"]


class Harness(Protocol):
    """How the contract drives one implementation."""

    store: Store

    async def reopen(self) -> Store:
        """Close the store and return a new one over the same data (memory: the same)."""

    def break_offset_writes(self, projection: str) -> contextlib.AbstractAsyncContextManager[None]:
        """While active, a commit fails when it writes offsets: after its rows were written."""

    # Optional, for stores that several processes write at once (PostgreSQL):
    # ``async def second_store(self) -> Store`` — another, open store over the same data.


class StoreContract(RollupContract, ReadContract):
    """Behaviour shared by every store. Subclasses provide the ``harness`` fixture."""

    @pytest.fixture
    async def store(self, harness: Harness) -> Store:
        await harness.store.create_projection("p1")
        return harness.store

    # ------------------------------------------------------------------ lifecycle

    async def test_open_is_idempotent_and_starts_empty(self, harness: Harness) -> None:
        store = harness.store
        await store.open()
        assert await store.live_projection() is None
        assert await store.list_projections() == []

    async def test_data_survives_reopen(self, store: Store, harness: Harness) -> None:
        await store.set_live("p1")
        await store.commit("p1", [chat("c1")], {("t", 0): 7})
        reopened = await harness.reopen()
        assert await reopened.live_projection() == "p1"
        assert await reopened.get_view("p1", "chat", "c1") == chat("c1").view
        assert await reopened.offsets("p1") == {("t", 0): 7}

    # ------------------------------------------------------------------ projections

    async def test_create_is_idempotent_and_keeps_rows(self, store: Store) -> None:
        await store.commit("p1", [chat("c1")], {})
        await store.create_projection("p1")
        assert await store.list_projections() == ["p1"]
        assert await store.get_view("p1", "chat", "c1") == chat("c1").view

    async def test_set_live_switches_reads_atomically(self, store: Store) -> None:
        await store.create_projection("p2")
        await store.set_live("p1")
        assert await store.live_projection() == "p1"
        await store.set_live("p2")
        assert await store.live_projection() == "p2"

    async def test_set_live_of_unknown_projection_fails(self, store: Store) -> None:
        with pytest.raises(UnknownProjection):
            await store.set_live("nope")
        assert await store.live_projection() is None

    async def test_drop_live_projection_is_refused(self, store: Store) -> None:
        await store.set_live("p1")
        with pytest.raises(LiveProjectionDrop):
            await store.drop_projection("p1")
        assert await store.list_projections() == ["p1"]

    async def test_drop_unknown_projection_is_a_no_op(self, store: Store) -> None:
        await store.drop_projection("nope")
        assert await store.list_projections() == ["p1"]

    @pytest.mark.parametrize("name", ["", "a-b", 'x"; DROP TABLE y; --', "é", "a" * 65, "a b"])
    async def test_invalid_projection_names_are_refused(self, store: Store, name: str) -> None:
        for step in (store.create_projection, store.set_live, store.drop_projection):
            with pytest.raises(InvalidProjectionName, match="use 1-64 characters of a-z"):
                await step(name)
        assert await store.list_projections() == ["p1"]
        assert await store.live_projection() is None

    async def test_names_ignore_case_and_come_back_in_lower_case(self, store: Store) -> None:
        await store.commit("p1", [chat("c1")], {("t", 0): 7})
        await store.create_projection("P1")  # the same copy: nothing created, nothing emptied
        await store.create_projection("Blue_2")
        assert await store.list_projections() == ["blue_2", "p1"]
        assert await store.get_view("P1", "chat", "c1") == chat("c1").view
        assert await store.offsets("P1") == {("t", 0): 7}
        await store.commit("BLUE_2", [chat("c2")], {("t", 0): 1})
        assert await store.get_view("blue_2", "chat", "c2") == chat("c2").view
        assert await store.get_view("p1", "chat", "c2") is None
        await store.set_live("P1")
        assert await store.live_projection() == "p1"
        await store.drop_projection("Blue_2")
        assert await store.list_projections() == ["p1"]

    async def test_the_live_copy_is_not_dropped_under_another_case(self, store: Store) -> None:
        rows = [chat("c1"), message("c1", "m1", sort_key="1"), visitor("v1"), agent("a1")]
        await store.commit("p1", rows, {("t", 0): 7, ("t", 1): 3})
        await store.set_live("p1")
        before = await store.counts("p1")
        for name in ("P1", "p1"):
            with pytest.raises(LiveProjectionDrop,
                               match="'p1' serves reads; a rebuild makes another copy live"):
                await store.drop_projection(name)
        assert await store.list_projections() == ["p1"]
        assert await store.live_projection() == "p1"
        assert await store.counts("p1") == before == {"chat": 1, "message": 1, "visitor": 1, "agent": 1}
        assert await store.offsets("p1") == {("t", 0): 7, ("t", 1): 3}
        assert await store.get_view("p1", "chat", "c1") == chat("c1").view

    async def test_projections_are_isolated(self, store: Store) -> None:
        await store.create_projection("p2")
        await store.commit("p1", [chat("c1", version=1), agent("a1")], {("t", 0): 10})
        await store.commit("p2", [chat("c1", version=2)], {("t", 0): 3, ("t", 1): 4})
        assert await store.get_view("p1", "chat", "c1") == chat("c1", version=1).view
        assert await store.get_view("p2", "chat", "c1") == chat("c1", version=2).view
        assert await store.offsets("p1") == {("t", 0): 10}
        assert await store.offsets("p2") == {("t", 0): 3, ("t", 1): 4}
        assert await store.list_agents("p2") == []
        assert (await store.counts("p1"))["agent"] == 1

        await store.set_live("p2")
        await store.drop_projection("p1")
        assert await store.list_projections() == ["p2"]
        assert await store.get_view("p2", "chat", "c1") == chat("c1", version=2).view
        # Re-created after a drop: empty, with no offsets left behind.
        await store.create_projection("p1")
        assert await store.get_view("p1", "chat", "c1") is None
        assert await store.offsets("p1") == {}
        assert await store.counts("p1") == dict.fromkeys(KINDS, 0)

    async def test_unknown_projection_is_an_error_everywhere(self, store: Store) -> None:
        ref = AggregateRef("chat", "c1")
        with pytest.raises(UnknownProjection):
            await store.load("nope", [ref])
        with pytest.raises(UnknownProjection):
            await store.commit("nope", [chat("c1")], {("t", 0): 1})
        with pytest.raises(UnknownProjection):
            await store.offsets("nope")
        with pytest.raises(UnknownProjection):
            await store.get_view("nope", "chat", "c1")
        with pytest.raises(UnknownProjection):
            await store.list_chats("nope")
        with pytest.raises(UnknownProjection):
            await store.counts("nope")

    # ------------------------------------------------------------------ load / commit / offsets

    async def test_load_returns_the_states_that_exist(self, store: Store) -> None:
        rows = [chat("c1"), message("c1", "m1", sort_key="1"), visitor("v1"), agent("a1")]
        await store.commit("p1", rows, {})
        refs = [AggregateRef(row.kind, row.id) for row in rows]  # type: ignore[arg-type]
        missing = [AggregateRef("chat", "c2"), AggregateRef("message", "c1/m2"), AggregateRef("agent", "v1")]
        loaded = await store.load("p1", refs + missing)
        assert loaded == {ref: row.state for ref, row in zip(refs, rows, strict=True)}
        assert await store.load("p1", []) == {}

    async def test_load_many_refs(self, store: Store) -> None:
        rows = [message(f"c{i % 7}", f"m{i}", sort_key=f"{i:05d}") for i in range(3000)]
        rows += [chat(f"c{i}") for i in range(7)]
        await store.commit("p1", rows, {})
        refs = [AggregateRef(row.kind, row.id) for row in rows]  # type: ignore[arg-type]
        loaded = await store.load("p1", [*refs, AggregateRef("message", "c1/zzz")])
        assert len(loaded) == len(rows)
        assert all(loaded[ref] == row.state for ref, row in zip(refs, rows, strict=True))

    async def test_commit_upserts_and_last_row_of_a_batch_wins(self, store: Store) -> None:
        await store.commit("p1", [chat("c1", version=1)], {})
        await store.commit("p1", [chat("c1", version=2), chat("c1", version=3, status="closed")], {})
        assert await store.get_view("p1", "chat", "c1") == chat("c1", version=3).view
        assert await store.load("p1", [AggregateRef("chat", "c1")]) == {
            AggregateRef("chat", "c1"): chat("c1", version=3).state
        }
        assert await all_chats(store, "p1", 10, status="closed") == [chat("c1", version=3).view]
        assert await all_chats(store, "p1", 10, status="active") == []
        assert (await store.counts("p1"))["chat"] == 1

    async def test_large_batch_lands_whole_and_last_row_wins(self, store: Store) -> None:
        """A rebuild-sized batch: more rows than a store may write per statement, with
        rows of one aggregate far apart in the batch (the later one must win)."""
        first = [message("c1", f"m{i}", sort_key=f"{i:05d}") for i in range(3000)]
        again = [message("c1", f"m{i}", sort_key=f"{i:05d}", version=1) for i in range(0, 3000, 7)]
        chats = [chat(f"c{i}", version=i % 3) for i in range(1, 1077)]
        await store.commit("p1", first + chats + again, {("t", 0): 5000})
        assert await store.counts("p1") == {"chat": 1076, "message": 3000, "visitor": 0, "agent": 0}
        latest = {row.id: row for row in first + again}
        views, cursor = await store.list_messages("p1", "c1", limit=5000)
        assert cursor is None
        assert views == views_of(list(latest.values()))
        assert await all_chats(store, "p1", 500) == views_of(chats)
        assert await store.offsets("p1") == {("t", 0): 5000}

    async def test_offsets_round_trip_and_merge(self, store: Store) -> None:
        assert await store.offsets("p1") == {}
        await store.commit(
            "p1", [], {("parley.chat", 0): 5, ("parley.chat", 1): 0, ("parley.agent", 2): 2**40}
        )
        await store.commit("p1", [], {("parley.chat", 1): 9})
        assert await store.offsets("p1") == {
            ("parley.chat", 0): 5,
            ("parley.chat", 1): 9,
            ("parley.agent", 2): 2**40,
        }

    async def test_failed_commit_writes_neither_rows_nor_offsets(
        self, store: Store, harness: Harness
    ) -> None:
        await store.commit("p1", [chat("c1", version=1)], {("t", 0): 10})
        async with harness.break_offset_writes("p1"):
            with pytest.raises(Exception) as failure:
                await store.commit(
                    "p1",
                    [chat("c1", version=2), chat("c2", version=2), agent("a1")],
                    {("t", 0): 20, ("t", 1): 5},
                )
            assert "injected" in str(failure.value)
        # The rows were written before the offsets failed; none of them may remain.
        assert await store.get_view("p1", "chat", "c1") == chat("c1", version=1).view
        assert await store.get_view("p1", "chat", "c2") is None
        assert await store.load("p1", [AggregateRef("chat", "c1"), AggregateRef("agent", "a1")]) == {
            AggregateRef("chat", "c1"): chat("c1", version=1).state
        }
        assert await store.offsets("p1") == {("t", 0): 10}
        assert await store.counts("p1") == {"chat": 1, "message": 0, "visitor": 0, "agent": 0}
        # And the store is usable afterwards: the same batch commits.
        await store.commit("p1", [chat("c1", version=2), chat("c2", version=2)], {("t", 0): 20})
        assert await store.offsets("p1") == {("t", 0): 20}
        assert await store.get_view("p1", "chat", "c2") == chat("c2", version=2).view

    # ------------------------------------------------------------------ the outbox

    async def test_publish_returns_and_keeps_one_outbox_entry_per_row(self, store: Store) -> None:
        assert await store.commit("p1", [chat("c0")], {("t", 0): 1}) == []  # publish=False
        assert await store.outbox(100) == []
        covered = msgspec.structs.replace(chat("c1", version=1),
                                          state=wrap_state(b"S", (("t", 0, 4), ("u", 2, 9))))
        rows = [covered, message("c1", "m1", sort_key="1"), visitor("v1"), agent("a1")]
        returned = await store.commit("p1", rows, {("t", 0): 5}, publish=True)
        # Within one commit the order is the store's (PostgreSQL sorts rows to lock them).
        def fields(entries: Sequence[OutboxEntry]) -> list[tuple[str, str, str, bytes]]:
            return sorted((e.kind, e.key, e.route, e.value) for e in entries)

        assert fields(returned) == fields([entry_for(row) for row in rows])
        [token] = {e.token for e in returned}
        assert token != 0
        stored = await store.outbox(100)
        assert fields(stored) == fields(returned)  # read back: the rows' states
        assert {e.token for e in stored} == {token}
        assert len({e.seq for e in stored}) == 1  # one outbox row per commit
        [first] = [e for e in stored if e.kind == "chat"]
        change = decode_state_change(first.value)
        assert (change.kind, change.id, change.version) == ("chat", "c1", 5 + 10)
        assert [str(p) for p in change.positions] == ["t:0:4", "u:2:9"]
        assert (await store.outbox(2)) == stored  # whole commits

    async def test_an_entry_read_back_has_the_state_its_row_holds_now(self, store: Store) -> None:
        await store.commit("p1", [chat("c1", version=1)], {}, publish=True)
        await store.commit("p1", [chat("c1", version=2)], {})
        [entry] = await store.outbox(10)
        assert entry.value == entry_for(chat("c1", version=2)).value

    async def test_acknowledged_entries_are_deleted_and_the_rest_survive_reopen(
        self, store: Store, harness: Harness
    ) -> None:
        tokens = []
        for n in (1, 2, 3, 4):
            written = await store.commit("p1", [chat(f"c{n}")], {("t", 0): n}, publish=True)
            tokens.append(written[0].token)
        first, second, _third, fourth = await store.outbox(10)
        assert first.seq < second.seq < fourth.seq
        assert (await store.outbox(2)) == [first, second]
        await store.ack_outbox([first.token, tokens[2], 12345])
        store = await harness.reopen()
        assert await store.outbox(10) == [second, fourth]
        await store.commit("p1", [chat("c5")], {("t", 0): 5}, publish=True)
        later = await store.outbox(10)
        assert later[:2] == [second, fourth] and later[2].key == "c5" and later[2].seq > fourth.seq

    async def test_the_outbox_is_one_per_store(self, store: Store) -> None:
        await store.create_projection("p2")
        await store.commit("p1", [chat("c1")], {}, publish=True)
        await store.commit("p2", [chat("c2")], {}, publish=True)
        assert [e.key for e in await store.outbox(10)] == ["c1", "c2"]
        await store.set_live("p2")
        await store.drop_projection("p1")
        gone, kept = await store.outbox(10)
        assert (gone.key, gone.value) == ("c1", b"")  # its copy was dropped: nothing to send
        assert kept.key == "c2" and kept.value

    async def test_a_failed_commit_writes_no_outbox_entries(
        self, store: Store, harness: Harness
    ) -> None:
        async with harness.break_offset_writes("p1"):
            with pytest.raises(Exception, match="injected"):
                await store.commit("p1", [chat("c1"), agent("a1")], {("t", 0): 20}, publish=True)
        assert await store.outbox(10) == []
        await store.commit("p1", [chat("c1")], {("t", 0): 20}, publish=True)
        assert [e.key for e in await store.outbox(10)] == ["c1"]

    async def test_concurrent_writers_of_disjoint_partitions_both_land(
        self, store: Store, harness: Harness
    ) -> None:
        """Two store objects over the same data (two projector instances) committing at once,
        each its own partition and rows: every commit lands whole."""
        second_store = getattr(harness, "second_store", None)
        if second_store is None:
            pytest.skip("this store has a single writer")
        other: Store = await second_store()
        try:
            async def writer(target: Store, n: int) -> None:
                for i in range(15):
                    rows = [chat(f"c{n}-{i}"), message(f"c{n}-{i}", "m1", sort_key="1")]
                    await target.commit("p1", rows, {("t", n): i + 1})

            await asyncio.gather(writer(store, 0), writer(other, 1))
            assert await store.offsets("p1") == {("t", 0): 15, ("t", 1): 15}
            assert await other.offsets("p1") == {("t", 0): 15, ("t", 1): 15}
            assert await store.counts("p1") == {"chat": 30, "message": 30, "visitor": 0, "agent": 0}
        finally:
            await other.close()

    async def test_a_verification_is_kept_with_its_copy_and_dropped_with_it(
            self, store: Store, harness: Harness) -> None:
        assert await store.verifications() == {}
        await store.create_projection("P2")
        await store.set_verification("p2", '{"differ": 1}')
        await store.set_verification("P2", '{"differ": 0}')  # replaces; names ignore case
        assert await store.verifications() == {"p2": '{"differ": 0}'}
        store = await harness.reopen()
        assert await store.verifications() == {"p2": '{"differ": 0}'}
        with pytest.raises(UnknownProjection):
            await store.set_verification("nope", "{}")
        await store.drop_projection("p2")
        assert await store.verifications() == {}
        await store.create_projection("p2")  # a new copy of the name starts without one
        assert await store.verifications() == {}

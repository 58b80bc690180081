"""The one contract every :class:`projector.store.Store` implementation must pass.

A test module subclasses :class:`StoreContract` and provides a ``harness`` fixture (a
:class:`Harness`): tests/projector/'s ``test_store_memory.py``, ``test_store_sqlite.py``
and ``test_store_postgres.py``. Nothing here is collected on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Sequence
from typing import Protocol

import msgspec
import pytest

from contracts.state_change import decode_state_change
from projector.errors import (
    InvalidCursor,
    InvalidProjectionName,
    LiveProjectionDrop,
    UnknownProjection,
)
from projector.log_index import log_row, position_of
from projector.outbox import OutboxEntry, entry_for, wrap_state
from projector.states import AggregateRef
from projector.store import CUSTOMER_TYPE, KINDS, Fingerprint, Store
from projector.views import Row
from tests.kit.rollup_contract import RollupContract


class Harness(Protocol):
    """How the contract drives one implementation."""

    store: Store

    async def reopen(self) -> Store:
        """Close the store and return a new one over the same data (memory: the same)."""

    def break_offset_writes(self, projection: str) -> contextlib.AbstractAsyncContextManager[None]:
        """While active, a commit fails when it writes offsets: after its rows were written."""

    # Optional, for stores that several processes write at once (PostgreSQL):
    # ``async def second_store(self) -> Store`` — another, open store over the same data.


def chat(
    id: str,
    *,
    sort_key: str = "5",
    status: str | None = "active",
    source: str | None = "acme",
    agent: str | None = None,
    version: int = 0,
) -> Row:
    return Row(
        kind="chat",
        id=id,
        state=f"S{id}.{version}".encode(),
        view=f'{{"id":"{id}","v":{version}}}'.encode(),
        chat_id=id,
        status=status,
        source=source,
        agent_id=agent,
        sort_key=sort_key,
    )


def message(chat_id: str, id: str, *, sort_key: str, version: int = 0) -> Row:
    ref = f"{chat_id}/{id}"
    return Row(
        kind="message",
        id=ref,
        state=f"S{ref}.{version}".encode(),
        view=f'{{"id":"{id}","chat_id":"{chat_id}","v":{version}}}'.encode(),
        chat_id=chat_id,
        sort_key=sort_key,
    )


def agent(id: str, *, status: str = "online") -> Row:
    return Row(
        kind="agent",
        id=id,
        state=f"S{id}".encode(),
        view=f'{{"id":"{id}"}}'.encode(),
        status=status,
        sort_key=id,
    )


def visitor(id: str) -> Row:
    return Row(kind="visitor", id=id, state=f"S{id}".encode(), view=f'{{"id":"{id}"}}'.encode(), sort_key=id)


async def all_chats(
    store: Store,
    projection: str,
    limit: int,
    *,
    status: str | None = None,
    source: str | None = None,
    agent: str | None = None,
    chat_type: str | None = None,
) -> list[bytes]:
    """Every page of a chat listing, following cursors."""
    filters = {"status": status, "source": source, "agent": agent, "chat_type": chat_type}
    views, cursor = await store.list_chats(projection, limit=limit, **filters)
    pages = 1
    while cursor is not None:
        more, cursor = await store.list_chats(projection, limit=limit, cursor=cursor, **filters)
        assert more, "a cursor was returned but the next page is empty"
        views += more
        pages += 1
        assert pages < 10_000
    return views


def views_of(rows: Sequence[Row]) -> list[bytes]:
    return [row.view for row in sorted(rows, key=lambda row: (row.sort_key, row.id))]


class StoreContract(RollupContract):
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
            with pytest.raises(LiveProjectionDrop, match="'p1' serves reads"):
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

    # ------------------------------------------------------------------ reads

    async def test_views_are_returned_byte_exact(self, store: Store) -> None:
        odd = [
            b'{"text":"caf\xc3\xa9 \xf0\x9f\x98\x80 \\u0000"}',
            b"\x00\xff\xfe not even utf-8 \x00",
            b" " * 70_000,
            b"",
        ]
        rows = [
            Row(kind="chat", id=f"c{i}", state=b"\x00s" * i, view=view, chat_id=f"c{i}", sort_key="1")
            for i, view in enumerate(odd)
        ]
        await store.commit("p1", rows, {})
        for row in rows:
            got = await store.get_view("p1", "chat", row.id)
            assert type(got) is bytes
            assert got == row.view
        assert sorted(await all_chats(store, "p1", 2)) == sorted(odd)
        assert await store.get_view("p1", "chat", "missing") is None
        assert await store.get_view("p1", "message", "c0") is None  # kinds are separate

    async def test_list_chats_filters(self, store: Store) -> None:
        rows = [
            chat("c1", status="active", source="acme", agent="a1", sort_key="1"),
            chat("c2", status="closed", source="acme", agent="a1", sort_key="2"),
            chat("c3", status="active", source="shop", agent="a2", sort_key="3"),
            chat("c4", status="waiting", source="shop", agent=None, sort_key="4"),
            chat("c5", status=None, source=None, agent=None, sort_key="5"),
            message("c1", "m1", sort_key="0"),
            agent("a1"),
        ]
        await store.commit("p1", rows, {})
        ids = {row.view: row.id for row in rows}

        async def listed(
            status: str | None = None, source: str | None = None, agent: str | None = None
        ) -> list[str]:
            views = await all_chats(store, "p1", 50, status=status, source=source, agent=agent)
            return [ids[view] for view in views]

        assert await listed() == ["c1", "c2", "c3", "c4", "c5"]
        assert await listed(status="active") == ["c1", "c3"]
        assert await listed(source="shop") == ["c3", "c4"]
        assert await listed(agent="a1") == ["c1", "c2"]
        assert await listed(status="active", source="acme") == ["c1"]
        assert await listed(status="active", source="acme", agent="a2") == []
        assert await listed(status="idle") == []

    async def test_an_agents_chats_page_in_order_and_follow_reassignment(self, store: Store
                                                                         ) -> None:
        """The agent filter (its own index in the SQL stores) pages like the listing, and a
        chat handed to another agent leaves the first one's list."""
        rows = [chat(f"c{i:02d}", agent=("a1", "a2", None)[i % 3], sort_key=f"{(i * 7) % 10}",
                     status=("active", "closed")[i % 2]) for i in range(30)]
        await store.commit("p1", rows, {})
        by_agent = {a: [r for r in rows if r.agent_id == a] for a in ("a1", "a2")}
        for limit in (1, 3, 50):
            assert await all_chats(store, "p1", limit, agent="a1") == views_of(by_agent["a1"])
        assert await all_chats(store, "p1", 2, agent="a2", status="closed") == views_of(
            [r for r in by_agent["a2"] if r.status == "closed"])
        await store.commit("p1", [chat("c00", agent="a2", sort_key="99")], {})
        assert chat("c00").view not in await all_chats(store, "p1", 4, agent="a1")
        assert (await all_chats(store, "p1", 4, agent="a2"))[-1] == chat("c00").view
        assert await all_chats(store, "p1", 4, agent="nobody") == []

    async def test_list_chats_by_conversation_type(self, store: Store) -> None:
        def typed(id: str, chat_type: str | None, sort_key: str) -> Row:
            view = {"id": id, "type": chat_type} if chat_type is not None else {"id": id}
            return Row(kind="chat", id=id, state=b"s", view=msgspec.json.encode(view), chat_id=id,
                       status="active", source="acme", sort_key=sort_key)

        rows = [typed("c1", "contact", "1"), typed("c2", "bot", "2"), typed("c3", None, "3"),
                typed("c4", "agent", "4"), typed("c5", "bot", "5")]
        await store.commit("p1", rows, {})

        async def listed(chat_type: str | None, limit: int = 50) -> list[str]:
            views = await all_chats(store, "p1", limit, chat_type=chat_type)
            return [msgspec.json.decode(view)["id"] for view in views]

        assert await listed(None) == ["c1", "c2", "c3", "c4", "c5"]
        assert await listed(CUSTOMER_TYPE) == await listed(CUSTOMER_TYPE, limit=1) == ["c1", "c3"]
        assert await listed("bot") == ["c2", "c5"]
        assert await listed("system") == []

    async def test_list_chats_orders_by_sort_key_then_id(self, store: Store) -> None:
        rows = [chat(f"c{i}", sort_key=key) for i, key in enumerate(["b", "a", "b", "c", "a"])]
        await store.commit("p1", rows, {})
        assert await all_chats(store, "p1", 50) == views_of(rows)

    @pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
    async def test_pagination_visits_every_row_once(self, store: Store, limit: int) -> None:
        rng = random.Random(limit)
        rows = [
            chat(f"c{i:03d}", sort_key=f"{rng.randrange(5)}", status=rng.choice(["active", "closed"]))
            for i in range(40)
        ]
        await store.commit("p1", rows, {})
        assert await all_chats(store, "p1", limit) == views_of(rows)
        actives = [row for row in rows if row.status == "active"]
        assert await all_chats(store, "p1", limit, status="active") == views_of(actives)

    async def test_last_page_has_no_cursor(self, store: Store) -> None:
        await store.commit("p1", [chat("c1", sort_key="1"), chat("c2", sort_key="2")], {})
        page, cursor = await store.list_chats("p1", limit=2)
        assert len(page) == 2
        assert cursor is None
        page, cursor = await store.list_chats("p1", limit=1)
        assert page == [chat("c1").view]
        assert cursor is not None
        page, cursor = await store.list_chats("p1", limit=1, cursor=cursor)
        assert page == [chat("c2").view]
        assert cursor is None

    async def test_pagination_is_stable_under_concurrent_inserts(self, store: Store) -> None:
        """Keyset pages: rows inserted between pages never duplicate or skip listed rows."""
        rows = [chat(f"c{i:02d}", sort_key=f"{i:02d}") for i in range(0, 40, 2)]  # even keys
        await store.commit("p1", rows, {})
        seen: list[bytes] = []
        page, cursor = await store.list_chats("p1", limit=5)
        seen += page
        inserted: list[Row] = []
        while cursor is not None:
            # Insert one row before the cursor (must not appear: its place is already
            # passed) and one after it (must appear, exactly once).
            n = len(inserted)
            before = chat(f"x{n:02d}", sort_key="00")
            after = chat(f"y{n:02d}", sort_key="99")
            inserted += [before, after]
            await store.commit("p1", [before, after], {})
            page, cursor = await store.list_chats("p1", limit=5, cursor=cursor)
            seen += page
        assert len(seen) == len(set(seen)), "a row was listed twice"
        original = [row.view for row in rows]
        assert [view for view in seen if view in original] == original, "a listed row was skipped"
        afters = [row.view for row in inserted if row.id.startswith("y")]
        assert [view for view in seen if view in afters] == sorted(afters)
        assert not set(seen) & {row.view for row in inserted if row.id.startswith("x")}

    async def test_bad_cursors_are_refused(self, store: Store) -> None:
        await store.commit(
            "p1",
            [
                chat("c1", sort_key="1"),
                chat("c2", sort_key="2"),
                message("c1", "m1", sort_key="1"),
                message("c1", "m2", sort_key="2"),
            ],
            {},
        )
        _, message_cursor = await store.list_messages("p1", "c1", limit=1)
        assert message_cursor is not None
        for bad in ["", "garbage", "!!!!", "eyJ4IjoxfQ", message_cursor]:
            with pytest.raises(InvalidCursor):
                await store.list_chats("p1", cursor=bad)

    async def test_list_messages_of_one_chat_in_order(self, store: Store) -> None:
        rows = [message("c1", f"m{i}", sort_key=key) for i, key in enumerate(["3", "1", "2", "1"])]
        others = [
            message("c2", "m1", sort_key="0"),
            message("c10", "m1", sort_key="0"),
            message("c1/x", "m1", sort_key="0"),  # a chat id may contain "/"
            message("c", "1/m1", sort_key="0"),  # and so may a message id
            chat("c1"),
        ]
        await store.commit("p1", rows + others, {})
        listed, cursor = await store.list_messages("p1", "c1", limit=100)
        assert cursor is None
        assert listed == views_of(rows)
        paged: list[bytes] = []
        cursor = None
        while True:
            page, cursor = await store.list_messages("p1", "c1", limit=1, cursor=cursor)
            paged += page
            if cursor is None:
                break
        assert paged == views_of(rows)
        assert await store.list_messages("p1", "nope") == ([], None)
        assert await store.list_messages("p1", "c1/x") == ([message("c1/x", "m1", sort_key="0").view], None)

    async def test_a_log_index_is_read_by_range_and_is_no_state(self, store: Store) -> None:
        entries = [log_row("chat", "c1", "ev", 1, offset, timestamp_ms=ts)
                   for offset, ts in ((7, 300), (2, 100), (12, 200))]
        others = [log_row("chat", "c10", "ev", 0, 1, 50), log_row("chat", "c1/x", "ev", 2, 3, 50),
                  log_row("agent", "c1", "ev", 4, 9, 50), chat("c1")]
        returned = await store.commit("p1", entries + others, {("ev", 1): 13}, publish=True)
        # Oldest record first (by its Kafka timestamp), paged like messages.
        listed: list[bytes] = []
        cursor = None
        while True:
            page, cursor = await store.list_log("p1", "chat", "c1", limit=2, cursor=cursor)
            listed += page
            if cursor is None:
                break
        assert [str(position_of(v)) for v in listed] == ["ev:1:2", "ev:1:12", "ev:1:7"]
        assert [str(position_of(v)) for v in (await store.list_log("p1", "chat", "c1/x"))[0]
                ] == ["ev:2:3"]
        assert [str(position_of(v)) for v in (await store.list_log("p1", "agent", "c1"))[0]
                ] == ["ev:4:9"]  # an agent's index is its own, even under the same id
        assert await store.list_log("p1", "chat", "nope") == ([], None)
        # No state: not published, not counted, not compared by a rebuild's verification.
        assert [e.kind for e in returned] == ["chat"]
        assert [e.kind for e in await store.outbox(100)] == ["chat"]
        assert await store.counts("p1") == {"chat": 1, "message": 0, "visitor": 0, "agent": 0}
        assert [(fp.kind, fp.id) for fp in await store.fingerprints("p1")] == [("chat", "c1")]
        await store.create_projection("p2")
        assert await store.list_log("p2", "chat", "c1") == ([], None)

    async def test_list_agents_by_id(self, store: Store) -> None:
        rows = [agent("b"), agent("a"), agent("c", status="offline"), chat("c1")]
        await store.commit("p1", rows, {})
        assert await store.list_agents("p1") == [agent("a").view, agent("b").view, agent("c").view]

    async def test_counts(self, store: Store) -> None:
        assert await store.counts("p1") == {"chat": 0, "message": 0, "visitor": 0, "agent": 0}
        rows = [chat("c1"), chat("c2"), message("c1", "m1", sort_key="1"), visitor("v1"), agent("a1")]
        await store.commit("p1", rows, {})
        assert await store.counts("p1") == {"chat": 2, "message": 1, "visitor": 1, "agent": 1}

    # ------------------------------------------------------------------ verification

    async def test_fingerprints_page_in_code_point_order_with_digest_and_covers(
            self, store: Store) -> None:
        covers = (("parley.events.natterly", 0, 7), ("parley.events.natterly", 1, 12))
        wrapped = Row(kind="chat", id="c-wrapped", state=wrap_state(b"\x81\xa1s\x01", covers),
                      view=b"{}", chat_id="c-wrapped", sort_key="1")
        # Upper case before lower case, "/" before "0", non-ASCII after ASCII: code points.
        ids = ["Z", "a", "a/b", "a0", "\u00e9", "\u4e2d", "\U0001f600"]
        rows = [chat(i) for i in ids] + [wrapped, agent("x"), visitor("v")]
        await store.commit("p1", rows, {})
        pages: list[list[Fingerprint]] = []
        after: tuple[str, str] | None = None
        while page := await store.fingerprints("p1", after=after, limit=3):
            assert len(page) <= 3
            pages.append(page)
            after = (page[-1].kind, page[-1].id)
        got = [fp for page in pages for fp in page]
        by_key = {(row.kind, row.id): row for row in rows}
        assert [(fp.kind, fp.id) for fp in got] == sorted(by_key)
        for fp in got:
            assert fp.digest == hashlib.sha256(by_key[(fp.kind, fp.id)].state).digest()
            assert fp.covers == (covers if fp.id == "c-wrapped" else ())
        assert await store.fingerprints("p1", after=("visitor", "v")) == []
        await store.create_projection("p2")
        assert await store.fingerprints("p2") == []
        with pytest.raises(UnknownProjection):
            await store.fingerprints("nope")

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

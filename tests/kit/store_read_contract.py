"""The reads' part of the store contract (:class:`~tests.kit.store_contract.StoreContract`
inherits it): views byte-exact, chat listings filtered and paged by keyset (stable under
concurrent inserts, bad cursors refused), an agent's chats, messages of one chat, the log
index, agents, counts and fingerprints."""

from __future__ import annotations

import hashlib
import random

import msgspec
import pytest

from projector.errors import InvalidCursor, UnknownProjection
from projector.log_index import log_row, position_of
from projector.outbox import wrap_state
from projector.store import CUSTOMER_TYPE, Fingerprint, Store
from projector.views import Row
from tests.kit.store_rows import agent, all_chats, chat, message, views_of, visitor


class ReadContract:
    """Reads every store answers alike (the ``store`` fixture is the contract's)."""

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

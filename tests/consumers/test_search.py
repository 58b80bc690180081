"""The search consumer: the FTS5 index (ranking, snippets, filters, pagination, idempotence,
edits and deletions), and GET /api/search fed by the consumer from the real broker."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from consumers.api import ConsumedEvent
from consumers.role import BuiltinConsumersRole
from consumers.search.consumer import search_consumer
from consumers.search.index import SqliteSearchIndex
from consumers.search.queries import (
    HIT_END,
    HIT_START,
    SearchQuery,
    iso_utc,
    marked_snippet,
    match_expression,
)
from contracts.domain import DomainEvent, MessageDeleted, MessageEdited
from contracts.errors import ContractError
from contracts.state_change import StateChange, encode_state_change
from contracts.topics import Topics
from parley.http import build_app
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings, StoreSettings
from projector.role import ProjectorRole
from tests.kit.consumers.domain_events import T, chat_events, common
from tests.kit.consumers.events import chat_body, envelope, message, produce
from tests.kit.consumers.helpers import eventually
from tests.kit.consumers.notes import assert_notes_stay_unsearchable
from tests.kit.consumers.snippets import HOSTILE, assert_escaped_snippet, hostile_chats


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[SqliteSearchIndex]:
    idx = SqliteSearchIndex(tmp_path / "search.db")
    await idx.open()
    yield idx
    await idx.close()


async def _ids(index: SqliteSearchIndex, q: str, **kw: object) -> list[str]:
    page = await index.search(SearchQuery(q=q, **kw))  # type: ignore[arg-type]
    return [h.chat_id for h in page.hits]


def test_user_text_never_becomes_fts_syntax() -> None:
    assert match_expression('refund" OR NOT xy*') == '"refund" "OR" "NOT" "xy"*'
    assert match_expression("  ?! ") is None


async def test_one_letter_prefixes_are_refused(index: SqliteSearchIndex) -> None:
    """A one-letter prefix would expand to nearly every term (and chat) of the index."""
    await index.apply(chat_events("c1", subject="Refund", texts=["refund please"]))
    for q in ("r", "refund r", "r*", "é"):
        with pytest.raises(ContractError, match="at least 2 characters"):
            await index.search(SearchQuery(q=q))
    assert await _ids(index, "re") == ["c1"]  # two letters are enough
    assert await _ids(index, "r refund") == []  # a one-letter word not last is matched whole


def test_marks_are_always_balanced_whatever_delimiters_a_message_holds() -> None:
    s, e = HIT_START, HIT_END
    assert marked_snippet(f"<i>{s}a&b{e}</i>") == "&lt;i&gt;<mark>a&amp;b</mark>&lt;/i&gt;"
    assert marked_snippet(f"{e}a{s}b{s}c{e}{e}d{s}e") == "a<mark>bc</mark>d<mark>e</mark>"


async def test_ranked_chats_with_highlighted_snippets(index: SqliteSearchIndex) -> None:
    await index.apply(chat_events("c1", subject="Order question", texts=["where is my parcel"])
                      + chat_events("c2", subject="Refund", texts=["refund please", "refund refund now"])
                      + chat_events("c3", subject="Hello", texts=["I would like a refund of my order"]))
    page = await index.search(SearchQuery(q="refund"))
    assert page.hits[0].chat_id == "c2"  # most relevant first
    assert {h.chat_id for h in page.hits} == {"c2", "c3"}  # one hit per chat
    assert all("<mark>refund</mark>" in h.snippet.lower() for h in page.hits)
    assert page.hits[0].subject == "Refund" and page.hits[0].department == "Billing"
    assert await _ids(index, "parc") == ["c1"]  # the last word matches as a prefix
    # visitor and agent names, department and site are searchable too
    assert len(await _ids(index, "Webshop Billing Vera")) == 3


async def test_snippets_are_escaped_text_with_only_our_marks(index: SqliteSearchIndex) -> None:
    """Visitor-typed markup never reaches a UI as markup (stored XSS): the snippet is the
    HTML-escaped text, then ``<mark>`` around the hits."""
    await index.apply(hostile_chats())
    page = await index.search(SearchQuery(q="refund"))
    assert sorted(h.chat_id for h in page.hits) == sorted(HOSTILE)
    for hit in page.hits:
        assert_escaped_snippet(hit.snippet, HOSTILE[hit.chat_id])
    [adjacent] = [h for h in page.hits if h.chat_id == "x-adjacent"]
    assert adjacent.snippet == "&lt;b&gt;<mark>refund</mark>&lt;/b&gt;\nVera Visitor"


async def test_every_commit_is_on_disk_before_its_offsets_reach_kafka(
        index: SqliteSearchIndex) -> None:
    """The consumer commits its Kafka offsets after apply() returns, and they are not stored in
    the index: each transaction must be fsynced (WAL with synchronous=FULL), or a power cut
    could lose index writes that Kafka already counts as done."""
    def pragmas() -> list[object]:
        assert index._db is not None
        return [index._db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous")]

    await index.apply(chat_events("c1", subject="Hi", texts=["written"]))
    assert await index._run(pragmas) == ["wal", 2]  # synchronous: 1 = NORMAL, 2 = FULL


async def test_filters_and_pagination(index: SqliteSearchIndex) -> None:
    events: list[DomainEvent] = []
    for i in range(25):
        events += chat_events(f"c{i:02}", subject="invoice", texts=[f"invoice number {i}"],
                        at=T + timedelta(days=i), source="acme" if i % 2 else "shop",
                        agent="Alice" if i % 3 == 0 else "Bob", closed=i % 5 == 0)
    await index.apply(events)
    assert len(await _ids(index, "invoice", source="shop", limit=100)) == 13
    assert len(await _ids(index, "invoice", agent="Alice", limit=100)) == 9
    assert len(await _ids(index, "invoice", agent="alice", limit=100)) == 9  # by id
    assert await _ids(index, "invoice", status="closed", limit=100) == sorted(
        await _ids(index, "invoice", status="closed", limit=100))
    assert len(await _ids(index, "invoice", status="closed", limit=100)) == 5
    # time range on last activity: chats of days 10..14
    window = await _ids(index, "invoice", from_=T + timedelta(days=10),
                        to=T + timedelta(days=15), limit=100)
    assert sorted(window) == [f"c{i}" for i in range(10, 15)]
    seen: list[str] = []
    cursor: str | None = None
    offset = 0
    while True:
        page = await index.search(SearchQuery(q="invoice", limit=10, offset=offset))
        seen += [h.chat_id for h in page.hits]
        if page.next_cursor is None:
            break
        from consumers.search.queries import decode_cursor

        cursor = page.next_cursor
        offset = decode_cursor(cursor)
    assert len(seen) == len(set(seen)) == 25


async def test_agent_only_notes_stay_unsearchable_through_edits(index: SqliteSearchIndex) -> None:
    await assert_notes_stay_unsearchable(index)


async def test_idempotent_and_edits_and_deletes_update_the_index(
        index: SqliteSearchIndex) -> None:
    events = chat_events("c1", subject="Hi", texts=["the blue parrot", "green apples"])
    await index.apply(events)
    await index.apply(events)  # redelivered
    await index.apply(list(reversed(events)))  # and out of order
    page = await index.search(SearchQuery(q="parrot"))
    assert [h.chat_id for h in page.hits] == ["c1"]
    edited = MessageEdited(**common("e1", T + timedelta(hours=2)), chat_id="c1",
                           message_id="m0", text="the red squirrel",
                           edited_at=T + timedelta(hours=2))
    await index.apply([edited])
    assert await _ids(index, "parrot") == []
    assert await _ids(index, "squirrel") == ["c1"]
    await index.apply(events)  # a late redelivery of the original post does not undo the edit
    assert await _ids(index, "parrot") == [] and await _ids(index, "squirrel") == ["c1"]
    await index.apply([MessageDeleted(**common("d1", T + timedelta(hours=3)), chat_id="c1",
                                      message_id="m1", deleted_at=T + timedelta(hours=3))])
    assert await _ids(index, "apples") == []
    await index.apply(events)  # a deletion is final
    assert await _ids(index, "apples") == []


@pytest.mark.kafka
async def test_api_search_fed_by_the_search_consumer(tmp_path: Path,
                                                     kafka_settings: KafkaSettings,
                                                     topics: Topics) -> None:
    vis = {"uuid": "v1", "name": "Grace Hopper", "email_address": "grace@example.com"}
    await produce(kafka_settings, topics, [
        envelope(chat_body("ChatInitiated", "chat-a", subject="Broken compiler", visitor=vis,
                           department="Support", site="Navy",
                           messages=[message("m1", "my compiler emits a moth")])),
        envelope(chat_body("ChatInitiated", "chat-b", subject="Pricing", visitor=vis,
                           messages=[message("m2", "how much is the compiler licence")])),
    ])
    # The projector publishes the chats' states; the search consumer indexes those.
    rt = Runtime.from_settings(Settings(kafka=kafka_settings, data_dir=str(tmp_path),
                                        store=StoreSettings(url=f"sqlite:///{tmp_path}/state.db")))
    role = BuiltinConsumersRole(rt)
    async with TestClient(TestServer(build_app(rt, [ProjectorRole(rt), role]))) as client:
        async def search(query: str) -> dict:  # type: ignore[type-arg]
            resp = await client.get(f"/api/search?{query}")
            assert resp.status == 200, await resp.text()
            return await resp.json()  # type: ignore[no-any-return]

        hits: list[dict] = []  # type: ignore[type-arg]

        async def found() -> bool:
            hits[:] = (await search("q=compiler"))["hits"]
            return len(hits) == 2

        await eventually(found, what="both chats indexed")
        assert hits[0]["chat_id"] == "chat-a"  # subject and message both match
        assert "<mark>" in hits[0]["snippet"] and hits[0]["visitor"] == "Grace Hopper"
        assert [h["chat_id"] for h in (await search("q=moth"))["hits"]] == ["chat-a"]
        assert (await search("q=compiler&source=other"))["hits"] == []
        page = await search("q=compiler&limit=1")
        assert len(page["hits"]) == 1 and page["next_cursor"]
        rest = await search(f"q=compiler&limit=1&cursor={page['next_cursor']}")
        assert rest["hits"][0]["chat_id"] != page["hits"][0]["chat_id"]
        bad = await client.get("/api/search")
        assert bad.status == 400 and (await bad.json())["error"] == "bad_request"
        assert (await client.get("/api/search?q=xy&limit=0")).status == 400
        assert (await client.get("/api/search?q=xy&cursor=%%%")).status == 400
        short = await client.get("/api/search?q=compiler%20m")
        assert short.status == 400
        assert (await short.json()) == {
            "error": "bad_request", "detail": "q: the last word is matched as a prefix and "
                                              "needs at least 2 characters (got 'm')"}
        consumers = await (await client.get("/api/consumers")).json()
        assert [g["consumer"] for g in consumers["groups"]] == ["search"]


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)),
                                               timezone(timedelta(hours=5, minutes=30))])))
def test_the_index_time_format_is_isoformat_in_utc_with_microseconds(at: datetime) -> None:
    # iso_utc builds the text from msgspec's RFC 3339 (a tenth of isoformat's cost); the
    # stored times, filters and last_activity_at must be the same text as before.
    assert iso_utc(at) == at.astimezone(UTC).isoformat(timespec="microseconds")
    assert iso_utc(at.replace(microsecond=0)) == (
        at.replace(microsecond=0).astimezone(UTC).isoformat(timespec="microseconds"))


async def test_the_cyclic_collector_waits_while_a_batch_is_indexed(tmp_path: Path) -> None:
    # A batch's objects hold no cycles; collecting while they live cost a quarter of the CPU.
    seen: list[bool] = []

    class Watched(SqliteSearchIndex):
        async def apply_states(self, changes: Sequence[StateChange]) -> None:
            seen.append(gc.isenabled())
            await super().apply_states(changes)

    index = Watched(tmp_path / "search.db")
    consumer = search_consumer(index)
    assert consumer.handle_batch is not None and consumer.max_records == 10_000
    await index.open()
    try:
        await consumer.handle_batch([ConsumedEvent.of(
            topic="p.state.chat", partition=0, offset=0, key="c1",
            value=encode_state_change("chat", "c1", [("p.chat", 0, 4)], b'{"id":"c1"}'))])
        assert seen == [False] and gc.isenabled()
    finally:
        await index.close()

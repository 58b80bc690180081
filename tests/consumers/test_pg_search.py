"""The search index on PostgreSQL full-text search: the same behaviour as the SQLite index
(ranking, snippets, filters, pagination, idempotence, edits and deletions), the same hits
for the same events, picked when the store is PostgreSQL, and fed by the search consumer
from the real broker into GET /api/search."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.role import BuiltinConsumersRole
from consumers.search.backends import search_index_for
from consumers.search.copies import SqliteCopies, SwitchingSearchIndex
from consumers.search.index import SearchIndex, SqliteSearchIndex
from consumers.search.pg_copies import PgCopies
from consumers.search.pg_index import PgSearchIndex, tsquery
from consumers.search.queries import SearchQuery
from contracts.domain import DomainEvent, MessageDeleted, MessageEdited
from contracts.topics import Topics
from parley.http import build_app
from parley.runtime import Runtime
from parley.settings import KafkaSettings, PrivacySettings, Settings, StoreSettings
from projector.role import ProjectorRole
from tests.kit.consumers.domain_events import T, chat_events, common
from tests.kit.consumers.notes import assert_notes_stay_unsearchable
from tests.kit.consumers.snippets import HOSTILE, assert_escaped_snippet, hostile_chats
from tests.kit.live_projector import conversation, eventually, produce
from tests.kit.postgres import with_options
from tests.kit.receiver_app import TEST_MASTER_KEY


@pytest.fixture
async def index(pg_url: str) -> AsyncIterator[PgSearchIndex]:
    idx = PgSearchIndex(pg_url)
    await idx.open()
    yield idx
    await idx.close()


async def _ids(index: SearchIndex, q: str, **kw: object) -> list[str]:
    page = await index.search(SearchQuery(q=q, **kw))  # type: ignore[arg-type]
    return [h.chat_id for h in page.hits]


def test_user_text_never_becomes_tsquery_syntax() -> None:
    assert tsquery("refund' | !x & yz:*") == "'refund' & 'x' & 'yz':*"
    assert tsquery("  ?! ") is None


async def test_ranked_chats_with_highlighted_snippets(index: PgSearchIndex) -> None:
    await index.apply(chat_events("c1", subject="Order question", texts=["where is my parcel"])
                      + chat_events("c2", subject="Refund", texts=["refund please", "refund refund now"])
                      + chat_events("c3", subject="Hello", texts=["I would like a refund of my order"]))
    page = await index.search(SearchQuery(q="refund"))
    assert page.hits[0].chat_id == "c2"  # most relevant first
    assert {h.chat_id for h in page.hits} == {"c2", "c3"}  # one hit per chat
    assert all("<mark>refund</mark>" in h.snippet.lower() for h in page.hits)
    assert page.hits[0].subject == "Refund" and page.hits[0].department == "Billing"
    assert page.hits[0].score > page.hits[1].score > 0
    assert await _ids(index, "parc") == ["c1"]  # the last word matches as a prefix
    assert len(await _ids(index, "Webshop Billing Vera")) == 3  # names, department, site
    assert await _ids(index, "'; DROP TABLE xy; --") == []


async def test_snippets_are_escaped_text_with_only_our_marks(index: PgSearchIndex) -> None:
    """As on SQLite: the HTML-escaped text, then ``<mark>`` around the hits."""
    await index.apply(hostile_chats())
    page = await index.search(SearchQuery(q="refund"))
    assert sorted(h.chat_id for h in page.hits) == sorted(HOSTILE)
    for hit in page.hits:
        assert_escaped_snippet(hit.snippet, HOSTILE[hit.chat_id])


@pytest.mark.parametrize(("configured", "runs_with"), [
    ("off", "on"), ("on", "on"), ("remote_apply", "remote_apply")])
async def test_every_commit_is_flushed_whatever_synchronous_commit_says(
        pg_url: str, configured: str, runs_with: str) -> None:
    """The consumer commits its Kafka offsets after apply() returns, not in the index's
    transaction: so ``synchronous_commit = off`` (from the server, the role or the URL) is
    turned on for the index's connections; a stricter setting is kept."""
    index = PgSearchIndex(with_options(pg_url, synchronous_commit=configured))
    await index.open()
    try:
        await index.apply(chat_events("c1", subject="Hi", texts=["written"]))
        pool = index._p()
        async with pool.acquire() as one, pool.acquire() as two:  # every connection of the pool
            assert [await c.fetchval("SHOW synchronous_commit") for c in (one, two)] == \
                [runs_with, runs_with]
    finally:
        await index.close()


async def test_filters_and_pagination(index: PgSearchIndex) -> None:
    events: list[DomainEvent] = []
    for i in range(25):
        events += chat_events(f"c{i:02}", subject="invoice", texts=[f"invoice number {i}"],
                        at=T + timedelta(days=i), source="acme" if i % 2 else "shop",
                        agent="Alice" if i % 3 == 0 else "Bob", closed=i % 5 == 0)
    await index.apply(events)
    assert len(await _ids(index, "invoice", source="shop", limit=100)) == 13
    assert len(await _ids(index, "invoice", agent="Alice", limit=100)) == 9
    assert len(await _ids(index, "invoice", agent="alice", limit=100)) == 9  # by id
    assert len(await _ids(index, "invoice", status="closed", limit=100)) == 5
    window = await _ids(index, "invoice", from_=T + timedelta(days=10),
                        to=T + timedelta(days=15), limit=100)
    assert sorted(window) == [f"c{i}" for i in range(10, 15)]
    seen: list[str] = []
    offset = 0
    while True:
        page = await index.search(SearchQuery(q="invoice", limit=10, offset=offset))
        seen += [h.chat_id for h in page.hits]
        if page.next_cursor is None:
            break
        offset += 10
    assert len(seen) == len(set(seen)) == 25


async def test_agent_only_notes_stay_unsearchable_through_edits(index: PgSearchIndex) -> None:
    await assert_notes_stay_unsearchable(index)


async def test_idempotent_and_edits_and_deletes_update_the_index(index: PgSearchIndex) -> None:
    events = chat_events("c1", subject="Hi", texts=["the blue parrot", "green apples"])
    await index.apply(events)
    await index.apply(events)  # redelivered
    await index.apply(list(reversed(events)))  # and out of order
    assert await _ids(index, "parrot") == ["c1"]
    edited = MessageEdited(**common("e1", T + timedelta(hours=2)), chat_id="c1",
                           message_id="m0", text="the red squirrel", edited_at=T + timedelta(hours=2))
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


async def test_same_hits_as_the_sqlite_index(index: PgSearchIndex, tmp_path: Path) -> None:
    """Random chats, applied in random batches to both indexes: every query finds the same
    chats with the same fields (the order of equally relevant hits may differ)."""
    rng = random.Random(7)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    events: list[DomainEvent] = []
    for i in range(30):
        texts = [" ".join(rng.sample(words, 3)) for _ in range(rng.randrange(1, 4))]
        events += chat_events(f"c{i}", subject=rng.choice(words), texts=texts, at=T + timedelta(hours=i),
                        source=rng.choice(["acme", "shop"]), agent=rng.choice([None, "Alice", "Bob"]),
                        closed=rng.random() < 0.3)
    rng.shuffle(events)
    sqlite = SqliteSearchIndex(tmp_path / "search.db")
    await sqlite.open()
    try:
        for start in range(0, len(events), 17):
            await index.apply(events[start:start + 17])
            await sqlite.apply(events[start:start + 17])
        for q in [*words, "alpha bravo", "ch", "Webshop", "vera"]:
            for filters in ({}, {"source": "shop"}, {"status": "closed"}, {"agent": "Alice"}):
                query = SearchQuery(q=q, limit=100, **filters)  # type: ignore[arg-type]
                got = {h.chat_id: _fields(h) for h in (await index.search(query)).hits}
                want = {h.chat_id: _fields(h) for h in (await sqlite.search(query)).hits}
                assert got == want, (q, filters)
    finally:
        await sqlite.close()


def _fields(hit: object) -> dict[str, object]:
    fields = msgspec.structs.asdict(hit)  # type: ignore[call-overload]
    for varying in ("score", "snippet", "matched"):  # ranking functions differ
        fields.pop(varying)
    return fields  # type: ignore[no-any-return]


def test_the_store_url_picks_the_index(tmp_path: Path) -> None:
    pg = Settings(store=StoreSettings(url="postgresql://parley:pw@db/parley?schema=x"))
    index = search_index_for(pg)
    assert isinstance(index, SwitchingSearchIndex) and isinstance(index.copies, PgCopies)
    lite = Settings(data_dir=str(tmp_path))
    index = search_index_for(lite, {"path": str(tmp_path / "s.db")})
    assert isinstance(index, SwitchingSearchIndex) and isinstance(index.copies, SqliteCopies)
    assert index.copies.path == tmp_path / "s.db"


@pytest.mark.kafka
async def test_api_search_fed_by_the_search_consumer_on_postgres(
        pg_url: str, kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    await produce(kafka_settings, topics, conversation("chat-a", n_messages=3)
                  + conversation("chat-b", n_messages=2))
    # A PostgreSQL deployment must be given its master key (docs/privacy.md).
    settings = Settings(kafka=kafka_settings, data_dir=str(tmp_path), store=StoreSettings(url=pg_url),
                        privacy=PrivacySettings(master_key=TEST_MASTER_KEY))
    rt = Runtime.from_settings(settings)
    role = BuiltinConsumersRole(rt)
    assert isinstance(role.index, SwitchingSearchIndex)
    assert isinstance(role.index.copies, PgCopies)
    async with TestClient(TestServer(build_app(rt, [ProjectorRole(rt), role]))) as client:
        hits: list[dict] = []  # type: ignore[type-arg]

        async def found() -> bool:
            resp = await client.get("/api/search?q=message")
            assert resp.status == 200, await resp.text()
            hits[:] = (await resp.json())["hits"]
            return len(hits) == 2

        await eventually(found, "both chats indexed in PostgreSQL")
        assert {h["chat_id"] for h in hits} == {"chat-a", "chat-b"}
        assert all("<mark>message</mark>" in h["snippet"] for h in hits)

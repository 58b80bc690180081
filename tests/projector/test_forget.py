"""Forgetting a visitor on a real broker: keys destroyed, the projection erased, search
documents dropped, every group told, the erasure ledger filled; an unknown subject changes
nothing (projector.forget, parley.erasure_ledger, consumers.erasures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from consumers.api import ConsumedEvent, consumer
from consumers.search.consumer import search_consumer
from consumers.search.index import SqliteSearchIndex
from consumers.search.queries import SearchQuery
from contracts.forgotten import ErasureProcessed, ErasureRequest
from contracts.topics import Topics
from parley.erasure_ledger import LedgerWriter, read_ledger
from parley.privacy.keys import MemoryKeyStore
from parley.privacy.master import MasterKeys, new_master_key, parse_master_key
from parley.settings import KafkaSettings
from projector.erasure_status import erasure_status, latest_request, render
from projector.forget import UnknownSubject, erased_in, forget, resolve
from projector.state_publisher import StatePublisher
from projector.store import Store
from projector.subject_export import export_subject
from tests.kit.consumers.helpers import running, wait_for
from tests.kit.live_projector import applied, conversation, eventually, produce, running_projector

PERSONAL = ("Visitor vis-1", "message 1", "message 2")


async def test_forget_erases_everywhere_and_fills_the_ledger(
        kafka_settings: KafkaSettings, topics: Topics, unique: str, tmp_path: Path,
        ledger_topic: None) -> None:
    await StatePublisher.ensure_topics(kafka_settings, topics)
    index = SqliteSearchIndex(tmp_path / "search.db")
    told: list[tuple[str, str]] = []

    @consumer(f"mine-{unique}", topics=("chat", "visitor"), kinds=("ChatClosed",))
    async def mine(event: ConsumedEvent) -> None:
        if event.forgotten is not None:
            told.append((event.forgotten.kind, event.forgotten.id))

    keys = MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "test")))
    await keys.open()
    for subject in ("acme:visitor:vis-1", "natterly:visitor:vis-1", "natterly:chat:c1",
                    "natterly:chat:c2", "natterly:chat:other"):
        await keys.get_or_create(subject)
    positions = await produce(kafka_settings, topics, [
        *conversation("c1", visitor="vis-1"), *conversation("c2", visitor="vis-1"),
        *conversation("other", visitor="vis-2")])
    ledger = LedgerWriter(kafka_settings, topics)
    async with running_projector(
            kafka_settings, topics, "memory://", group_id=f"{unique}-projector", ledger=ledger,
            publisher=lambda store, producer: StatePublisher(store, producer, topics, poll_s=0.1)
    ) as projector, running(search_consumer(index, name=f"search-{unique}"), kafka_settings,
                            topics), running(mine, kafka_settings, topics):
        store = projector.store
        await eventually(lambda: applied(store, positions), "the conversations folded")

        async def hits(q: str) -> int:
            return len((await index.search(SearchQuery(q=q))).hits)

        async def indexed() -> bool:
            return await hits("message") == 3  # c1, c2, other

        await eventually(indexed, "search indexed")
        subject = await resolve(store, visitor="vis-1")
        assert (subject.subject, subject.visitors, sorted(subject.chats)) == (
            "natterly:visitor:vis-1", ["vis-1"], ["c1", "c2"])
        assert subject.chats["c1"] == ["c1-m0", "c1-m1", "c1-m2"]
        exported = msgspec.json.encode(await export_subject(store, subject)).decode()
        assert all(s in exported for s in PERSONAL)

        request = await forget(subject, store=store, kafka=kafka_settings, topics=topics,
                               keys=keys)
        assert request.keys_destroyed == 3  # the visitor and its two chats, not "other"
        assert await keys.get("natterly:chat:c1") is None
        assert await keys.get("natterly:chat:other") is not None

        live = await store.live_projection()
        assert live is not None
        aggregates = ["visitor:vis-1", "chat:c1", "chat:c2"]

        async def erased() -> bool:
            return len(await erased_in(store, live, request.erasure_id, aggregates)) == 3

        await eventually(erased, "the projection erased")
        for kind, id in (("chat", "c1"), ("chat", "c2"), ("visitor", "vis-1"),
                         ("message", "c1/c1-m1")):
            view = (await store.get_view(live, kind, id) or b"").decode()
            assert not [s for s in PERSONAL if s in view], (kind, id, view)
        assert "Visitor vis-2" in (await store.get_view(live, "chat", "other") or b"").decode()

        async def search_clean() -> bool:
            return await hits("message") == 1  # only "other"'s chat is left

        await eventually(search_clean, "search dropped the chats")
        await wait_for(lambda: sorted(told) == [("chat", "c1"), ("chat", "c2"),
                                                ("visitor", "vis-1")], what="the group told")

        async def ledger_full() -> bool:
            entries = await read_ledger(kafka_settings, topics)
            groups = {(e.group, e.aggregate) for e in entries if isinstance(e, ErasureProcessed)}
            return {("projector", a) for a in aggregates} | {(f"mine-{unique}", a)
                                                           for a in aggregates} <= groups and {
                (f"search-{unique}", "chat:c1"), (f"search-{unique}", "chat:c2")} <= groups

        await eventually(ledger_full, "every group in the ledger")
        entries = await read_ledger(kafka_settings, topics)
        found = latest_request(entries, "vis-1")
        assert isinstance(found, ErasureRequest) and found.erasure_id == request.erasure_id
        assert latest_request(entries, "c2") == found
        shown = render(await erasure_status(store, entries, found))
        assert f"projection {live} (live)  done: erased 3/3" in shown
        assert f"consumer search-{unique}  processed 2 aggregates" in shown
        assert f"consumer mine-{unique}  processed 3 aggregates" in shown
    await ledger.close()
    await keys.close()


async def test_an_unknown_subject_changes_nothing(store_in_memory: Store) -> None:
    await store_in_memory.create_projection("v1")
    await store_in_memory.set_live("v1")
    for who in ({"visitor": "nobody"}, {"email": "nobody@example.org"}, {"chat": "nochat"}):
        with pytest.raises(UnknownSubject):
            await resolve(store_in_memory, **who)


@pytest.fixture
async def store_in_memory() -> AsyncIterator[Store]:
    from projector.stores import open_store

    store = open_store("memory://")
    await store.open()
    yield store
    await store.close()


async def test_a_visitor_is_found_by_email_case_ignored(store_in_memory: Store) -> None:
    from datetime import UTC, datetime

    from projector.states import AggregateRef, Reg, VisitorFold
    from projector.views import row_for

    at = datetime(2026, 3, 1, tzinfo=UTC)
    await store_in_memory.create_projection("v1")
    await store_in_memory.set_live("v1")
    rows = [row_for(AggregateRef("visitor", f"v{n}"), VisitorFold(
        id=f"v{n}", provider="natterly", source="acme",
        email=Reg(at=at, rank=0, event_id=f"e{n}", value=f"person{n}@example.org")))
        for n in range(1500)]  # more than one page of the scan
    await store_in_memory.commit("v1", rows, {})
    found = await resolve(store_in_memory, email=" Person1234@EXAMPLE.org ")
    assert (found.visitor, found.subject) == ("v1234", "natterly:visitor:v1234")

"""An erased chat leaves the search index: its rows and documents are dropped (SQLite and
PostgreSQL), erased states are never written, other chats stay (docs/privacy.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.search.index import SearchIndex, SqliteSearchIndex
from consumers.search.pg_index import PgSearchIndex
from consumers.search.queries import SearchQuery
from contracts.domain import Author
from contracts.state import ChatState, Erasure, MessageState
from contracts.state_change import StateChange

AT = datetime(2026, 3, 1, 9, tzinfo=UTC)
ERASED = Erasure(id="e1", at=AT)


def chat(id: str, version: int, erasure: Erasure | None = None) -> StateChange:
    return StateChange(kind="chat", id=id, version=version, positions=(), state=ChatState(
        id=id, status="active", initiated_at=AT, subject=None if erasure else f"parcel {id}",
        erasure=erasure))


def message(chat_id: str, version: int, erasure: Erasure | None = None) -> StateChange:
    return StateChange(kind="message", id=f"{chat_id}/m1", version=version, positions=(),
                       state=MessageState(id="m1", chat_id=chat_id, posted_at=AT,
                                          text=None if erasure else "my secret address",
                                          author=Author(role="visitor"), erasure=erasure))


@pytest.fixture
async def sqlite_index(tmp_path: Path) -> AsyncIterator[SearchIndex]:
    idx = SqliteSearchIndex(tmp_path / "search.db")
    await idx.open()
    yield idx
    await idx.close()


@pytest.fixture
async def pg_index(pg_url: str) -> AsyncIterator[SearchIndex]:
    idx = PgSearchIndex(pg_url)
    await idx.open()
    yield idx
    await idx.close()


async def hits(index: SearchIndex, q: str) -> list[str]:
    return sorted(h.chat_id for h in (await index.search(SearchQuery(q=q))).hits)


async def test_an_erased_chat_is_dropped_and_others_stay_sqlite(sqlite_index: SearchIndex) -> None:
    await erased_chat_is_dropped(sqlite_index)


async def test_an_erased_chat_is_dropped_and_others_stay_postgresql(pg_index: SearchIndex) -> None:
    await erased_chat_is_dropped(pg_index)


async def erased_chat_is_dropped(index: SearchIndex) -> None:
    await index.apply_states([chat("c1", 1), message("c1", 2), chat("c2", 1), message("c2", 2)])
    assert await hits(index, "secret") == ["c1", "c2"]
    assert await hits(index, "parcel") == ["c1", "c2"]
    # The projector's erased states: the chat's and its message's, in one batch or two.
    await index.apply_states([chat("c1", 5, ERASED)])
    await index.apply_states([message("c1", 6, ERASED)])
    assert await hits(index, "secret") == ["c2"]
    assert await hits(index, "parcel") == ["c2"]
    # A later state of the erased chat (it stays erased) writes nothing either.
    await index.apply_states([chat("c1", 9, ERASED), message("c1", 9, ERASED)])
    assert await hits(index, "parcel") == ["c2"]


async def test_the_sqlite_index_keeps_no_row_of_an_erased_chat(tmp_path: Path) -> None:
    import sqlite3

    index = SqliteSearchIndex(tmp_path / "search.db")
    await index.open()
    try:
        await index.apply_states([chat("c1", 1), message("c1", 2)])
        await index.apply_states([chat("c1", 5, ERASED), message("c1", 6, ERASED)])
    finally:
        await index.close()
    db = sqlite3.connect(tmp_path / "search.db")
    try:
        counts = [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                  for t in ("chats", "messages", "docs", "docs_fts")]
    finally:
        db.close()
    assert counts == [0, 0, 0, 0]

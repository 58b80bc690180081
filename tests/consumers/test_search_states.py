"""Search indexes the projector's states, so it agrees with the projector (issue 15, point 5).

A property test: generated conversations of both providers are folded by the real fold in
batches cut anywhere, each batch's changed chats and messages become the state changes the
projector would publish (views, positions, versions), and those reach the search index in
any order, some more than once. For every chat, the index then says what the projector says:
status, agent, and the searchable text of every message (none when deleted or agent-only).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.search.from_states import searchable_text
from consumers.search.index import SqliteSearchIndex
from consumers.search.queries import SearchQuery
from contracts import domain as d
from contracts.state import ChatState, MessageState
from contracts.state_change import StateChange, decode_state_change
from projector.states import AggregateRef, FoldState
from projector.views import to_view
from tests.kit.consumers.published import published_values
from tests.kit.fold_events import world


def published(events: Sequence[d.DomainEvent], cuts: Sequence[int]
              ) -> tuple[list[StateChange], dict[AggregateRef, FoldState]]:
    """What the projector publishes folding ``events`` in batches ending at ``cuts``."""
    values, states = published_values(events, cuts)
    return [decode_state_change(value) for value in values], states


def _rows(index: SqliteSearchIndex) -> tuple[dict[str, tuple[str | None, str | None]],
                                              dict[tuple[str, str], str | None]]:
    def read(db: sqlite3.Connection) -> tuple[dict[str, tuple[str | None, str | None]],
                                              dict[tuple[str, str], str | None]]:
        chats = {r[0]: (r[1], r[2]) for r in db.execute("SELECT chat_id, status, agent_id FROM chats")}
        messages = {(r[0], r[1]): r[2] for r in db.execute(
            "SELECT chat_id, message_id, CASE WHEN deleted THEN NULL ELSE text END FROM messages")}
        return chats, messages

    assert index._db is not None
    return read(index._db)


async def _index(changes: Sequence[StateChange], batch: int) -> SqliteSearchIndex:
    index = SqliteSearchIndex(":memory:")
    await index.open()
    for start in range(0, len(changes), batch):
        await index.apply_states(changes[start:start + batch])
    return index


@settings(max_examples=60, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_search_and_the_projector_agree_on_every_chat(data: st.DataObject) -> None:
    events = data.draw(world())
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=6))
    changes, states = published(events, cuts)
    changes = [c for c in changes if c.kind in ("chat", "message")]  # the chat state topic
    # Any order across keys and within them, some twice: versions decide.
    delivered = changes + data.draw(st.lists(st.sampled_from(changes), max_size=5)) if changes else []
    random.Random(data.draw(st.integers(0, 2**32))).shuffle(delivered)
    batch = data.draw(st.integers(1, 8))

    async def check() -> None:
        index = await _index(delivered, batch)
        try:
            chats, messages = await index._run(_rows, index)
            views = {ref: to_view(ref, state) for ref, state in states.items()}
            want_chats = {v.id: (v.status, v.agent.id if v.agent else None)
                          for v in views.values() if isinstance(v, ChatState)}
            want_messages = {(v.chat_id, v.id): searchable_text(v)
                             for v in views.values() if isinstance(v, MessageState)}
            assert chats == want_chats
            assert messages == want_messages
            # And a search finds a chat by a word of a searchable message, by no other.
            for (chat_id, _), text in want_messages.items():
                if text and text.split():
                    word = text.split()[0]
                    page = await index.search(SearchQuery(q=word, limit=100))
                    assert chat_id in {h.chat_id for h in page.hits}
        finally:
            await index.close()

    asyncio.run(check())


async def test_a_state_replaces_only_a_lower_version() -> None:
    chat = ChatState(id="c1", status="active")
    closed = ChatState(id="c1", status="closed")
    old = StateChange(kind="chat", id="c1", version=5, positions=(), state=chat)
    new = StateChange(kind="chat", id="c1", version=9, positions=(), state=closed)
    index = await _index([new, old, new], batch=1)  # late, old, and a duplicate
    try:
        chats, _ = await index._run(_rows, index)
        assert chats == {"c1": ("closed", None)}
    finally:
        await index.close()


def _chat(version: int, status: str, subject: str) -> StateChange:
    return StateChange(kind="chat", id="c1", version=version, positions=(),
                       state=ChatState(id="c1", status=status, subject=subject))


def _message(version: int, text: str | None, *, deleted: bool = False) -> StateChange:
    return StateChange(kind="message", id="c1/m1", version=version, positions=(),
                       state=MessageState(id="m1", chat_id="c1", text=text, deleted=deleted))


async def _found(index: SqliteSearchIndex, word: str) -> bool:
    return bool((await index.search(SearchQuery(q=word, limit=10))).hits)


def _documents(db: sqlite3.Connection) -> tuple[int, int]:
    """(full-text documents, document ids): one text per document, none left behind."""
    return (db.execute("SELECT count(*) FROM docs_fts").fetchone()[0],
            db.execute("SELECT count(*) FROM docs").fetchone()[0])


async def test_within_a_batch_only_the_newest_state_of_a_key_is_written() -> None:
    # One batch, the newest first: the older versions of the chat and the message lose.
    index = await _index([_chat(9, "closed", "refund"), _message(7, "apple"),
                          _chat(5, "active", "invoice"), _message(3, "banana")], batch=4)
    try:
        chats, messages = await index._run(_rows, index)
        assert chats == {"c1": ("closed", None)}
        assert messages == {("c1", "m1"): "apple"}
        assert [await _found(index, w) for w in ("refund", "apple", "invoice", "banana")] == [
            True, True, False, False]
        assert await index._run(_documents, index._db) == (2, 2)
    finally:
        await index.close()


async def test_an_older_state_in_a_later_batch_changes_nothing() -> None:
    index = await _index([_chat(9, "closed", "refund"), _message(7, "apple")], batch=2)
    try:
        await index.apply_states([_chat(5, "active", "invoice"), _message(3, "banana")])
        chats, messages = await index._run(_rows, index)
        assert chats == {"c1": ("closed", None)}
        assert messages == {("c1", "m1"): "apple"}
        assert [await _found(index, w) for w in ("refund", "apple", "invoice", "banana")] == [
            True, True, False, False]
        assert await index._run(_documents, index._db) == (2, 2)
    finally:
        await index.close()


async def test_a_document_follows_its_states_across_batches() -> None:
    # New, replaced, deleted, redelivered: each document keeps one id and at most one text.
    index = await _index([_chat(1, "waiting", "refund"), _message(1, "apple")], batch=2)
    try:
        await index.apply_states([_chat(2, "active", "invoice"), _message(2, "pear")])
        assert [await _found(index, w) for w in ("refund", "apple", "invoice", "pear")] == [
            False, False, True, True]
        await index.apply_states([_message(3, "pear", deleted=True), _message(2, "pear")])
        assert not await _found(index, "pear")
        assert await index._run(_documents, index._db) == (1, 2)  # the chat's text only
        await index.apply_states([_chat(2, "active", "invoice"), _message(3, "pear", deleted=True)])
        assert await index._run(_documents, index._db) == (1, 2)
        assert await _found(index, "invoice")
    finally:
        await index.close()

"""One check for every search backend: agent-only notes stay unsearchable through edits."""

from __future__ import annotations

from consumers.search.index import SearchIndex
from consumers.search.queries import SearchQuery

from .domain_events import chat_events, edited_note

__all__ = ["assert_notes_stay_unsearchable"]


async def assert_notes_stay_unsearchable(index: SearchIndex) -> None:
    """Issue 16 point 3: the edit of a note does not repeat the flag, and must not leak, in
    whatever order and batching the note and its edit arrive."""
    await index.apply(chat_events("c1", subject="Hi", texts=["the blue parrot"]))
    note, edit = edited_note("c1")
    for batches in ([note, edit], [edit, note], [note + edit], [edit + note]):
        for batch in batches:
            await index.apply(batch)
        assert [h.chat_id for h in (await index.search(SearchQuery(q="walrus"))).hits] == []
        assert [h.chat_id for h in (await index.search(SearchQuery(q="narwhal"))).hits] == []
    assert [h.chat_id for h in (await index.search(SearchQuery(q="parrot"))).hits] == ["c1"]

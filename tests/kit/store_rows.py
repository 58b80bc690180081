"""Rows for the store contract's tests (:mod:`tests.kit.store_contract`) and others that commit
hand-made rows: a chat, a message, an agent, a visitor, and a chat listing read to its end."""

from __future__ import annotations

from collections.abc import Sequence

from projector.store import Store
from projector.views import Row


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

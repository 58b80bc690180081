"""A small world of chats and agents for the analytics rebuild's tests: fold states kept per
aggregate (as the runner keeps them), the rows they commit, and the report roll-ups of a
store that committed rows once, made afresh with the code running now."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date

import orjson

from contracts import domain as d
from projector import reports, rollups
from projector.fold import affected, apply
from projector.sqlite_store import SqliteStore
from projector.states import AggregateRef, FoldState
from projector.store import Store
from projector.views import Row, row_for
from tests.kit.fold_events import at, common
from tests.kit.rollup_contract import EVERYTHING, agent_row

MARCH = (date(2026, 3, 1), date(2026, 3, 31))
DIMS = ("all", "agent", "hour", "source", rollups.TIMELINE)
ANN = d.AgentRef(id="a1", name="Ann")
BOB = d.AgentRef(id="a2", name="Bob")

Opener = Callable[[], Awaitable[Store]]


def chat_events(n: int) -> list[d.DomainEvent]:
    """Chat ``c{n}``: started at n minutes, a visitor message, accepted by Ann (or Bob,
    every third), an agent reply, and closed: wait, first response and handle all measured."""
    chat, t = f"c{n:03d}", 60.0 * n
    agent = BOB if n % 3 == 0 else ANN
    return [
        d.ChatStarted(**common(t), chat_id=chat, initiated_at=at(t)),
        d.MessagePosted(**common(t + 5), chat_id=chat, message_id="m1", text="hi",
                        author=d.Author(role="visitor"), posted_at=at(t + 5)),
        d.ChatAccepted(**common(t + 10 + n % 7), chat_id=chat, agent=agent),
        d.MessagePosted(**common(t + 30 + n % 11), chat_id=chat, message_id="m2", text="hello",
                        author=d.Author(role="agent"), posted_at=at(t + 30 + n % 11)),
        d.ChatClosed(**common(t + 300 + n), chat_id=chat, closed_at=at(t + 300 + n)),
    ]


def world(chats: range) -> list[d.DomainEvent]:
    """Ann and Bob coming online, and the chats ``chats`` (:func:`chat_events`)."""
    statuses: list[d.DomainEvent] = [
        d.AgentStatusChanged(**common(0), agent_id=agent.id, name=agent.name, status="online")
        for agent in (ANN, BOB)]
    return statuses + [e for n in chats for e in chat_events(n)]


def online(agent: str, start: float, end: float, version: int) -> Row:
    """An agent row moving its online time by a spell (as projector/status_moves.py does)."""
    return agent_row(agent, rollups.moves_for([(at(start), at(end), 1)]), version)


class Folded:
    """Fold states kept per aggregate: ``rows(events)`` folds them and gives the rows to
    commit, as the runner commits them."""

    def __init__(self) -> None:
        self.states: dict[AggregateRef, FoldState] = {}

    def rows(self, events: Sequence[d.DomainEvent]) -> list[Row]:
        touched: dict[AggregateRef, None] = {}
        for event in events:
            for ref in affected(event):
                self.states[ref] = apply(ref, self.states.get(ref), event)
                touched[ref] = None
        return [row_for(ref, self.states[ref]) for ref in touched]

    def final(self) -> list[Row]:
        return [row_for(ref, state) for ref, state in self.states.items()]


async def tallies(store: Store) -> dict[rollups.Key, bytes]:
    out: dict[rollups.Key, bytes] = {}
    for dim in DIMS:
        out.update({(g, dim, v, p): t for g, p, v, t in
                    await store.report_tallies("p1", dim, EVERYTHING)})
    return out


async def afresh(rows: Sequence[Row]) -> dict[rollups.Key, bytes]:
    """The roll-ups of a store that committed ``rows`` once, with the code running now."""
    store = SqliteStore(":memory:")
    await store.open()
    try:
        await store.create_projection("p1")
        await store.commit("p1", rows, {})
        return await tallies(store)
    finally:
        await store.close()


async def wait_mean(store: Store) -> float:
    body = orjson.loads(await reports.chats_report(store, "p1", MARCH, None))
    mean = body["groups"][0]["measures"]["wait_s"]["mean"]
    assert isinstance(mean, float)
    return mean

"""Reports under disorder (issue 22 point 4): each story's events are committed one by one to
a SQLite store, as a projector commits them, in delivery order, reversed, and delivered twice;
the chat's metrics and the reports read from the roll-ups must both give the numbers worked
out by hand (in each test's docstring), whatever the order. Every intermediate commit moves
the roll-ups (a measure appears, changes, or the chat moves to another day or agent), so
these check that an old contribution is removed exactly."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import msgspec
import orjson

from contracts import domain as d
from contracts.state import ChatMetrics, ChatState
from projector import reports
from projector.fold import affected, apply
from projector.sqlite_store import SqliteStore
from projector.states import AggregateRef, FoldState
from projector.views import row_for
from tests.kit.fold_events import at, common
from tests.projector.test_analytics import (
    ANN,
    BOB,
    C1,
    accepted,
    closed,
    delivered,
    said,
    started,
)

MARCH_1 = date(2026, 3, 1)  # tests.kit.fold_events.at(0) is 2026-03-01 09:00 UTC
FEB_28 = date(2026, 2, 28)


async def _committed(tmp: Path, events: list[d.DomainEvent]) -> tuple[SqliteStore, ChatMetrics]:
    """A store holding the events' aggregates, each committed after every event."""
    store = SqliteStore(tmp / "state.db")
    await store.open()
    await store.create_projection("p1")
    states: dict[AggregateRef, FoldState] = {}
    for event in events:
        refs = affected(event)
        for ref in refs:
            states[ref] = apply(ref, states.get(ref), event)
        await store.commit("p1", [row_for(ref, states[ref]) for ref in refs], {})
    view = msgspec.json.decode(row_for(C1, states[C1]).view, type=ChatState)
    assert view.metrics is not None
    return store, view.metrics


async def _stories(tmp_path: Path, events: list[d.DomainEvent], first: date, last: date,
                   group_by: str | None = None) -> tuple[ChatMetrics, dict[str, Any]]:
    """The chat's metrics and the report's groups, after checking every order agrees."""
    answers = []
    for i, order in enumerate((events, events[::-1], events + events[::-1])):
        (tmp_path / str(i)).mkdir()
        store, metrics = await _committed(tmp_path / str(i), order)
        try:
            body = orjson.loads(await reports.chats_report(store, "p1", (first, last), group_by))
        finally:
            await store.close()
        answers.append((metrics, {g.pop("key"): g for g in body["groups"]}))
    assert answers[0] == answers[1] == answers[2]
    return answers[0]


def _near(got: float | None, exact: float) -> bool:
    """A median or p90 from the histograms: within 4.9% of the exact value."""
    return got is not None and abs(got - exact) <= exact * 0.049


async def test_a_rating_after_the_close(tmp_path: Path) -> None:
    """Started 0, visitor asks at 5, Ann accepts at 20 and answers at 35, closes at 300;
    the visitor thanks at 350 and rates at 360: one chat, rated, wait 20, first response
    35 - 5 = 30, handle 300 - 20 = 280, 2 visitor and 1 agent message."""
    events = delivered(
        started(0), said(5, "visitor", "m1"), accepted(20), said(35, "agent", "m2"), closed(300),
        said(350, "visitor", "m3"), d.ChatRated(**common(360), chat_id="c1", rating="Good"))
    m, groups = await _stories(tmp_path, events, MARCH_1, MARCH_1)
    assert (m.wait_s, m.first_response_s, m.handle_s) == (20.0, 30.0, 280.0)
    g = groups["all"]
    assert (g["chats"], g["rated"], g["visitor_messages"], g["agent_messages"]) == (1, 1, 2, 1)
    for name, exact in (("wait_s", 20.0), ("first_response_s", 30.0), ("handle_s", 280.0)):
        measure = g["measures"][name]
        assert (measure["count"], measure["mean"]) == (1, exact)
        assert _near(measure["median"], exact) and _near(measure["p90"], exact)


async def test_an_acceptance_delivered_before_the_initiation_moves_the_chat_to_its_day(
        tmp_path: Path) -> None:
    """Initiated 2026-02-28 23:59:50, accepted 2026-03-01 00:00:20 (30 s later). Delivered
    acceptance first, the chat counts on March 1 (its acceptance: no start known) with no
    wait, until the initiation arrives: then it counts on February 28, wait 30 s. Whatever
    the order: February 28 has one chat, waited 30 s; March 1 none."""
    start = -9 * 3600 - 10  # seconds from 2026-03-01 09:00
    events = delivered(started(start), accepted(start + 30))
    m, groups = await _stories(tmp_path, events, FEB_28, MARCH_1, "day")
    assert m.wait_s == 30.0
    assert list(groups) == ["2026-02-28"]
    wait = groups["2026-02-28"]["measures"]["wait_s"]
    assert (groups["2026-02-28"]["chats"], wait["count"], wait["mean"]) == (1, 1, 30.0)


async def test_a_duplicate_counts_once(tmp_path: Path) -> None:
    """Visitor asks at 10, Ann accepts at 20 and answers at 30; the visitor's message comes
    again in a later webhook, and one webhook twice: 1 visitor message, 1 agent message,
    first response 20 s, one chat."""
    first = said(10, "visitor", "m1")
    again = msgspec.structs.replace(said(10, "visitor", "m1", delivered_at=30), event_id="dup")
    events = delivered(started(0), first, accepted(20), said(30, "agent", "m2"), again, first)
    m, groups = await _stories(tmp_path, events, MARCH_1, MARCH_1)
    assert (m.visitor_messages, m.agent_messages, m.first_response_s) == (1, 1, 20.0)
    g = groups["all"]
    assert (g["chats"], g["visitor_messages"], g["agent_messages"]) == (1, 1, 1)
    assert g["measures"]["first_response_s"]["mean"] == 20.0


async def test_a_transfer_counts_for_both_agents(tmp_path: Path) -> None:
    """Ann accepts at 10 and answers at 15 (asked at 12: 3 s); Bob gets the chat at 60,
    asked at 70, answers at 130 (60 s); closed at 200. One transfer; responses 3 and 60:
    mean 31.5, longest 60; first response 3; wait 10; handle 190. By agent: the chat is in
    Ann's group and in Bob's, each with those measures, and one chat in all."""
    events = delivered(
        started(0), accepted(10), said(12, "visitor", "m1"), said(15, "agent", "m2"),
        d.ChatAssigned(**common(50), chat_id="c1", agent=None),
        d.ChatAssigned(**common(60), chat_id="c1", agent=BOB),
        said(70, "visitor", "m3"), said(130, "agent", "m4"), closed(200))
    m, groups = await _stories(tmp_path, events, MARCH_1, MARCH_1, "agent")
    assert (m.transfers, m.response_avg_s, m.handle_s) == (1, 31.5, 190.0)
    assert set(groups) == {ANN.id, BOB.id}
    for g in groups.values():
        assert (g["chats"], g["transfers"]) == (1, 1)
        assert g["measures"]["response_avg_s"]["mean"] == 31.5
        assert g["measures"]["response_max_s"]["mean"] == 60.0
        assert g["measures"]["handle_s"]["mean"] == 190.0
    (tmp_path / "all").mkdir()
    _, everything = await _stories(tmp_path / "all", events, MARCH_1, MARCH_1)
    assert (everything["all"]["chats"], everything["all"]["transfers"]) == (1, 1)


async def test_a_reopened_chat(tmp_path: Path) -> None:
    """Started 0, accepted 10, closed 100, started again at 200 (reopened: no handle time
    while open), accepted 230, closed 400: wait 10 (the first), handle 400 - 10 = 390, one
    chat; reopened and not yet closed again, the same chat has a wait and no handle time."""
    life = [started(0), accepted(10), closed(100)]
    (tmp_path / "open").mkdir()
    m, groups = await _stories(tmp_path / "open", delivered(*life, started(200)), MARCH_1, MARCH_1)
    assert (m.wait_s, m.handle_s) == (10.0, None)
    g = groups["all"]
    assert (g["chats"], g["measures"]["wait_s"]["count"], g["measures"]["handle_s"]["count"]) == (
        1, 1, 0)
    (tmp_path / "closed").mkdir()
    m, groups = await _stories(tmp_path / "closed", delivered(
        *life, started(200), accepted(230), closed(400)), MARCH_1, MARCH_1)
    assert (m.wait_s, m.handle_s) == (10.0, 390.0)
    handle = groups["all"]["measures"]["handle_s"]
    assert (groups["all"]["chats"], handle["count"], handle["mean"]) == (1, 1, 390.0)
    assert _near(handle["median"], 390.0)


def test_the_stories_start_on_the_days_they_say() -> None:
    assert at(0).date() == MARCH_1 and at(-9 * 3600 - 10).date() == FEB_28

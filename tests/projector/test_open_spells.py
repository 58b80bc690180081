"""An agent's open spell counted at read time, up to the request (projector/open_spells.py,
docs/analytics.md "The open spell"): Ann comes online at 09:00 and changes status no more;
a chat of hers runs 09:10-09:40. Asked at 10:00 she has been online 3600 s, occupied
1800 s (occupancy 0.5); before, with the spell not counted, she had 0 s and no occupancy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from contracts import domain as d
from contracts.state import AgentMetrics, AgentState
from contracts.topics import Topics
from projector import reports
from projector.api import QueryApi
from projector.fold import affected, apply
from projector.sqlite_store import SqliteStore
from projector.states import AggregateRef, FoldState
from projector.views import row_for
from projector.waits import PositionWaits, Watermarks
from tests.kit.fold_events import common

ANN = d.AgentRef(id="a1", name="Ann")
NINE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WHOLE = [("m", 0, 10**6)]


def story(t0: datetime, status: str = "online") -> list[d.DomainEvent]:
    """Ann's status at t0; a chat of hers accepted at t0 + 10 min and closed at t0 + 40."""
    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    return [
        d.AgentStatusChanged(**common(at(0)), agent_id="a1", name="Ann", status=status),
        d.ChatStarted(**common(at(9)), chat_id="c1", initiated_at=at(9)),
        d.ChatAccepted(**common(at(10)), chat_id="c1", agent=ANN),
        d.ChatClosed(**common(at(40)), chat_id="c1", closed_at=at(40)),
    ]


@pytest.fixture
async def store() -> AsyncIterator[SqliteStore]:
    s = SqliteStore(":memory:")
    await s.open()
    await s.create_projection("p1")
    await s.set_live("p1")
    yield s
    await s.close()


async def commit(store: SqliteStore, events: Sequence[d.DomainEvent]) -> None:
    states: dict[AggregateRef, FoldState] = {}
    for event in events:
        for ref in affected(event):
            states[ref] = apply(ref, states.get(ref), event)
    await store.commit("p1", [row_for(ref, s) for ref, s in states.items()], {})


async def ann(store: SqliteStore) -> AgentMetrics:
    [view] = await store.list_agents("p1")
    metrics = msgspec.json.decode(view, type=AgentState).metrics
    assert metrics is not None
    return metrics


async def test_the_open_spell_counts_up_to_the_request(store: SqliteStore) -> None:
    await commit(store, story(NINE))
    metrics = await ann(store)
    assert (metrics.online_s, metrics.last_status) == (0.0, "online")  # as stored
    now = NINE + timedelta(hours=1)
    times = await reports.agent_times(store, "p1", WHOLE, now=now, agents={"a1": metrics})
    served = reports.with_totals(metrics, "a1", {}, times, now)
    assert served.online_s == 3600.0
    assert served.time is not None
    assert (served.time.online_s, served.time.busy_s, served.time.occupied_s) == (3600.0, 1800.0, 1800.0)
    assert (served.time.occupancy, served.time.concurrency_avg) == (0.5, 0.5)
    # Without the time of the request (the stored view, the state topics): not counted.
    plain = await reports.agent_times(store, "p1", WHOLE)
    assert plain["a1"].online_s == 0.0 and plain["a1"].occupancy is None


async def test_across_midnight_each_day_gets_its_part(store: SqliteStore) -> None:
    """Asked at 01:00 the next day: 15 h online on March 1 (occupied 30 min), 1 h on March 2;
    a report of March 2 alone counts the hour, and one of February nothing."""
    await commit(store, story(NINE))
    metrics = await ann(store)
    now = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    body = orjson.loads(await reports.agents_report(store, "p1", (date(2026, 3, 2), date(2026, 3, 2)), now))
    [item] = body["items"]
    assert (item["time"]["online_s"], item["time"]["occupied_s"]) == (3600.0, 0.0)
    assert item["metrics"]["online_s"] == 16 * 3600.0  # whole history
    assert item["metrics"]["time"]["occupied_s"] == 1800.0
    march1 = orjson.loads(await reports.agents_report(store, "p1", (date(2026, 3, 1), date(2026, 3, 1)), now))
    assert march1["items"][0]["time"]["online_s"] == 15 * 3600.0
    feb = orjson.loads(await reports.agents_report(store, "p1", (date(2026, 2, 1), date(2026, 2, 28)), now))
    assert feb["items"][0]["time"]["online_s"] == 0.0
    assert metrics.measured_to == NINE


@pytest.mark.parametrize(("status", "online", "invisible"),
                         [("invisible", 0.0, 3600.0), ("offline", 0.0, 0.0)])
async def test_an_open_spell_of_another_status(store: SqliteStore, status: str, online: float,
                                               invisible: float) -> None:
    await commit(store, story(NINE, status))
    metrics = await ann(store)
    now = NINE + timedelta(hours=1)
    times = await reports.agent_times(store, "p1", WHOLE, now=now, agents={"a1": metrics})
    served = reports.with_totals(metrics, "a1", {}, times, now)
    assert (served.online_s, served.invisible_s) == (online, invisible)
    assert served.time is not None and served.time.online_s == 0.0
    assert served.time.busy_s == 1800.0 and served.time.occupancy is None


async def test_get_api_agents_serves_it(store: SqliteStore) -> None:
    """Over HTTP, with the wall clock: Ann online since an hour ago."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    await commit(store, story(t0))
    app = web.Application()
    QueryApi(store, Topics(), PositionWaits(store, Watermarks(), max_waiters=4, recheck_s=0.5)
             ).install(app)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        for path in ("/api/agents", "/api/agents/a1"):
            response = await client.get(path)
            assert response.status == 200
            body = await response.json()
            agent = body["items"][0] if "items" in body else body
            metrics = agent["metrics"]
            assert 3600 <= metrics["online_s"] < 3600 + 60
            assert 3600 <= metrics["time"]["online_s"] < 3600 + 60
            assert metrics["time"]["occupied_s"] == 1800.0
            assert 0.49 < metrics["time"]["occupancy"] <= 0.5
    finally:
        await client.close()

"""An agent's time — online, occupancy, concurrency — over a range of days (docs/analytics.md,
"Occupancy and concurrency"), from the agents' day and month roll-ups. Each story is folded
and committed to a SQLite store as the folder does (the agent rows carrying their moves of
online time: projector/status_moves.py), in delivery order, reversed, delivered twice, and
in batches of one, three and all; every way must give the numbers worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import domain as d
from projector import reports, rollups, timeline
from projector.fold import affected, apply
from projector.folder import Folder
from projector.memory_store import MemoryStore
from projector.sqlite_store import SqliteStore
from projector.states import AggregateRef, FoldState
from projector.status_moves import agent_moves
from projector.store import Store
from projector.views import row_for
from tests.kit.fold_events import at, common
from tests.kit.live_projector import conversation, envelope, natterly_user_status
from tests.projector.test_analytics import delivered
from tests.projector.test_runner_folder import records

ANN = d.AgentRef(id="a1", name="Ann")
BOB = d.AgentRef(id="a2", name="Bob")
MARCH_1 = date(2026, 3, 1)  # at(0) is 2026-03-01 09:00 UTC
HOUR = 3600


def status(t: float, word: d.AgentStatus, agent: str = "a1") -> d.AgentStatusChanged:
    return d.AgentStatusChanged(**common(t), agent_id=agent, name=None, status=word)


def chat(chat_id: str, start: float, accept: float, close: float,
         agent: d.AgentRef = ANN) -> list[d.DomainEvent]:
    return [d.ChatStarted(**common(start), chat_id=chat_id, initiated_at=at(start)),
            d.ChatAccepted(**common(accept), chat_id=chat_id, agent=agent),
            d.ChatClosed(**common(close), chat_id=chat_id, closed_at=at(close))]


async def commit_batches(store: Store, events: Sequence[d.DomainEvent], size: int) -> None:
    """Fold ``events`` in batches of ``size`` on top of the states before, and commit each
    batch's changed rows as the folder builds them (an agent's with its moves)."""
    states: dict[AggregateRef, FoldState] = {}
    for lo in range(0, len(events), size):
        base = dict(states)
        flat = [(ref, event) for event in events[lo:lo + size] for ref in affected(event)]
        for ref, event in flat:
            states[ref] = apply(ref, states.get(ref), event)
        spans = [(None, i, i + 1, 1) for i in range(len(flat))]
        moves = agent_moves(flat, spans, set(), {}, base, states)
        rows = []
        for ref, state in states.items():
            if base.get(ref) is not state:
                row = row_for(ref, state)
                rows.append(msgspec.structs.replace(row, fact=moves.get(ref, row.fact)))
        await store.commit("p1", rows, {})


async def agents(store: Store, first: date, last: date) -> dict[str, Any]:
    body = orjson.loads(await reports.agents_report(store, "p1", (first, last)))
    return {item["id"]: item for item in body["items"]}


async def told(tmp_path: Path, events: list[d.DomainEvent],
               ranges: Sequence[tuple[date, date]], *, reverse: bool = True
               ) -> list[dict[str, Any]]:
    """Each range's agents report (``time`` and chat count per agent), after checking that
    every order and batching gives the same (``reverse``: reversed orders too — only for
    stories whose changes all fall within two days, see projector/spells.py)."""
    answers = []
    orders = ((events, events[::-1], events + events[::-1]) if reverse
              else (events, events + events))
    for i, (order, size) in enumerate([(o, s) for o in orders for s in (1, 3, len(o))]):
        (tmp_path / str(i)).mkdir()
        store = SqliteStore(tmp_path / str(i) / "state.db")
        await store.open()
        await store.create_projection("p1")
        try:
            await commit_batches(store, order, size)
            got = []
            for first, last in ranges:
                items = await agents(store, first, last)
                got.append({a: {"time": item["time"], "chats": item["chats"]}
                            for a, item in items.items()})
            answers.append(got)
        finally:
            await store.close()
    assert all(answer == answers[0] for answer in answers)
    return answers[0]


async def test_occupancy_and_concurrency_of_a_working_day(tmp_path: Path) -> None:
    """Ann is online 0-3600 and 7200-9000: 5400 s. Chats: c1 active 600-1800, c2 1200-4200
    (it runs on after she went offline at 3600), c3 7500-7800. Busy (>= 1 chat): 600-4200
    and 7500-7800 = 3900 s; occupied (online and busy): 600-3600 and 7500-7800 = 3300 s,
    occupancy 3300 / 5400 = 0.6111. Chats while online: 600-1200 one, 1200-1800 two,
    1800-3600 one, 7500-7800 one = 600 + 1200 + 1800 + 300 = 3900 chat-seconds, a mean
    concurrency of 3900 / 5400 = 0.722. One chat at once 600 + 2400 + 300 = 3300 s, two
    600 s, so at most 2."""
    events = delivered(status(0, "online"), *chat("c1", 100, 600, 1800),
                       *chat("c2", 1000, 1200, 4200), status(3600, "offline"),
                       status(7200, "online"), *chat("c3", 7400, 7500, 7800),
                       status(9000, "offline"))
    (day,) = await told(tmp_path, events, [(MARCH_1, MARCH_1)])
    assert day["a1"] == {"chats": 3, "time": {
        "online_s": 5400.0, "busy_s": 3900.0, "occupied_s": 3300.0, "occupancy": 0.6111,
        "concurrency_avg": 0.722, "concurrency_max": 2,
        "concurrency_s": {"1": 3300.0, "2": 600.0}}}


async def test_a_range_cuts_time_at_midnight(tmp_path: Path) -> None:
    """Ann is online from 23:00 on 1 March (at 14 h) to 01:00 on the 2nd (16 h); her chat c1,
    started 23:10 and accepted 23:30, closes at 00:30. 1 March: online 3600 s, occupied
    1800 s (23:30-24:00), occupancy 0.5, and the chat (it started that day); 2 March the
    same time (00:00-01:00, occupied to 00:30) and no chat; both days: 7200 s online, 3600
    occupied, one chat. 3 March: nothing."""
    events = delivered(status(14 * HOUR, "online"),
                       *chat("c1", 14 * HOUR + 600, 14.5 * HOUR, 15.5 * HOUR),
                       status(16 * HOUR, "offline"))
    march_2, march_3 = MARCH_1 + timedelta(days=1), MARCH_1 + timedelta(days=2)
    first, second, both, third = await told(tmp_path, events, [
        (MARCH_1, MARCH_1), (march_2, march_2), (MARCH_1, march_2), (march_3, march_3)])
    half = {"online_s": 3600.0, "busy_s": 1800.0, "occupied_s": 1800.0, "occupancy": 0.5,
            "concurrency_avg": 0.5, "concurrency_max": 1, "concurrency_s": {"1": 1800.0}}
    assert first["a1"] == {"chats": 1, "time": half}
    assert second["a1"] == {"chats": 0, "time": half}
    assert both["a1"] == {"chats": 1, "time": {
        "online_s": 7200.0, "busy_s": 3600.0, "occupied_s": 3600.0, "occupancy": 0.5,
        "concurrency_avg": 0.5, "concurrency_max": 1, "concurrency_s": {"1": 3600.0}}}
    assert third["a1"]["time"]["online_s"] == 0.0
    assert third["a1"]["time"]["occupancy"] is None


async def test_a_week_in_one_batch_settles_but_every_day_is_counted(tmp_path: Path) -> None:
    """Ann is online 08:00-16:00 (at -1 h to 7 h) each day from 1 to 7 March: the agent's
    row keeps only two days of changes, so folding the week in one batch settles five of
    them before the row is written; each day still has 28800 s online, the week 201600 s,
    and March as a whole (the month roll-up) the same. Her whole-history ``online_s`` (from
    the spells) says the same up to the last change: 7 x 8 h. Delivered in order (and
    again): a change two days late is dropped by design, see the late-change story."""
    events: list[d.DomainEvent] = []
    for k in range(7):
        events += [status(k * 24 * HOUR - HOUR, "online"), status(k * 24 * HOUR + 7 * HOUR, "offline")]
    events = delivered(*events)
    week = (MARCH_1, MARCH_1 + timedelta(days=6))
    days = [(MARCH_1 + timedelta(days=k),) * 2 for k in range(7)]
    answers = await told(tmp_path, events, [week, (MARCH_1, date(2026, 3, 31)), *days],
                         reverse=False)
    assert answers[0]["a1"]["time"]["online_s"] == 7 * 28800.0
    assert answers[1]["a1"]["time"]["online_s"] == 7 * 28800.0  # read from the month's roll-up
    assert [a["a1"]["time"]["online_s"] for a in answers[2:]] == [28800.0] * 7
    store = MemoryStore()
    await store.create_projection("p1")
    await commit_batches(store, events, len(events))
    item = (await agents(store, MARCH_1, MARCH_1))["a1"]
    assert item["metrics"]["online_s"] == item["metrics"]["time"]["online_s"] == 7 * 28800.0


async def test_a_transferred_chat_is_active_for_each_holder(tmp_path: Path) -> None:
    """Ann and Bob are both online 0-3600; c1 is accepted by Ann at 600, assigned to Bob at
    1200 and closed at 1800. The fold keeps who held a chat, not when (docs/analytics.md):
    the chat is active for each of them from the acceptance to the close, 1200 s, so each
    has occupancy 1200 / 3600 = 0.3333."""
    events = delivered(status(0, "online"), status(0, "online", "a2"),
                       *chat("c1", 100, 600, 1800),
                       d.ChatAssigned(**common(1200), chat_id="c1", agent=BOB),
                       status(3600, "offline"), status(3600, "offline", "a2"))
    (day,) = await told(tmp_path, events, [(MARCH_1, MARCH_1)])
    assert day["a1"]["time"]["occupancy"] == day["a2"]["time"]["occupancy"] == 0.3333


async def test_a_late_change_behind_the_boundary_moves_nothing() -> None:
    """Online at 0, offline at 1 day, online at 3 days: the spell 0 - 1 d is settled (86400 s
    online; 1 d - 3 d offline). A change to offline at 1 h arrives after that, behind the
    settled boundary: dropped, and it moves no roll-up (online time stays 86400 s, for the
    spells and for the roll-ups alike)."""
    events = delivered(status(0, "online"), status(24 * HOUR, "offline"),
                       status(3 * 24 * HOUR, "online"), status(HOUR, "offline"))
    store = MemoryStore()
    await store.create_projection("p1")
    await commit_batches(store, events, 1)
    item = (await agents(store, MARCH_1, date(2026, 3, 31)))["a1"]
    assert item["time"]["online_s"] == item["metrics"]["online_s"] == 86400.0


def test_the_day_sweep_by_hand() -> None:
    """Online 0-100 ms and 200-300 ms; chats 50-250 ms (one) and 60-70 ms (a second): online
    200, busy 200, occupied 50 + 50 = 100, chats while online 50 + 10 + 50 = 110, one chat
    190 ms and two 10 ms."""
    day = timeline.Day(used=timeline.Usage(levels={}), online={}, chats={})
    for lo, hi in ((0, 100), (200, 300)):
        timeline.shift(day.online, lo, hi, 1)
    for lo, hi in ((50, 250), (60, 70)):
        timeline.shift(day.chats, lo, hi, 1)
    assert timeline.usage(day) == timeline.Usage(online=200, busy=200, occupied=100,
                                                 chat_online=110, levels={1: 190, 2: 10})


@pytest.mark.parametrize(("start", "end", "parts"), [
    (0, 10, [(0, 0, 10)]),
    (timeline.DAY_MS - 5, timeline.DAY_MS + 5, [(0, timeline.DAY_MS - 5, timeline.DAY_MS),
                                                (1, 0, 5)]),
    (5, 5, []),
])
def test_an_interval_is_cut_at_midnight(start: int, end: int, parts: list[tuple[int, int, int]]
                                        ) -> None:
    assert list(timeline.cut(start, end)) == parts


def test_a_month_is_the_sum_of_its_days_after_any_moves() -> None:
    """Two chats of Ann's on two days, then the second's close turns out earlier (a fact
    replaced): the month's usage is what its days' usage adds up to."""
    def fact(day: int, span: tuple[int, int]) -> bytes:
        return rollups._ENC.encode(rollups.Fact(day=day, groups=(("agent", "a1"),),
                                                values=(None,) * 5, counts=(1,) + (0,) * 9,
                                                span=span))
    d0 = (MARCH_1 - date(1970, 1, 1)).days
    base = d0 * timeline.DAY_MS
    stored: dict[rollups.Key, bytes] = {}
    for old, new in [({}, [("c1", fact(d0, (base + 1000, base + 5000)))]),
                     ({}, [("c2", fact(d0 + 1, (base + timeline.DAY_MS, base + timeline.DAY_MS + 9000)))]),
                     ({"c2": fact(d0 + 1, (base + timeline.DAY_MS, base + timeline.DAY_MS + 9000))},
                      [("c2", fact(d0 + 1, (base + timeline.DAY_MS, base + timeline.DAY_MS + 2000)))])]:
        _, deltas = rollups.changes(old, new)
        stored.update(rollups.merge(stored, deltas))
    days = [timeline.usage(timeline.decode_day(blob)) for (g, dim, _, _), blob in stored.items()
            if g == "d" and dim == rollups.TIMELINE]
    month = timeline.decode_usage(stored[("m", rollups.TIMELINE, "a1", rollups.month_of(d0))])
    assert month == timeline.Usage(busy=6000, levels={1: 6000})
    assert sum(u.busy for u in days) == 6000


# --------------------------------------------------------------------- generated stories
# An agent's status changes over five days and chats it accepts and closes, delivered in
# any order except that a status change is never more than a day late (the spells place
# anything up to two days late: projector/spells.py), in batches of any size; the roll-ups
# must equal an independent reckoning from the events themselves: the status in effect
# between consecutive changes, the chats from acceptance to close, and every elementary
# segment between two of their ends checked one by one.

_WORDS: tuple[d.AgentStatus, ...] = ("online", "offline", "invisible")


@st.composite
def _story(draw: st.DrawFn) -> tuple[list[d.DomainEvent], list[tuple[float, str]],
                                     list[tuple[float, float]]]:
    changes = draw(st.lists(st.tuples(st.integers(0, 5 * 24 * 60), st.sampled_from(_WORDS)),
                            min_size=1, max_size=12, unique=True))
    spans = draw(st.lists(st.tuples(st.integers(0, 5 * 24 * 60), st.integers(0, 600)),
                          max_size=6))
    keyed: list[tuple[float, d.DomainEvent]] = []
    for minute, word in changes:
        late = draw(st.integers(0, 24 * 60))
        keyed.append((minute + late, status(minute * 60, word)))
    chats = []
    for n, (minute, length) in enumerate(spans):
        accept, close = minute * 60, (minute + length) * 60
        chats.append((float(accept), float(close)))
        for event in chat(f"c{n}", accept - 30, accept, close):
            keyed.append((draw(st.integers(0, 6 * 24 * 60)), event))
    keyed.sort(key=lambda pair: pair[0])
    events = delivered(*(event for _, event in keyed))
    return events, [(m * 60.0, w) for m, w in changes], chats


def _reckoned(changes: list[tuple[float, str]], chats: list[tuple[float, float]],
              first: float, last: float) -> dict[str, Any]:
    ordered = sorted(changes, key=lambda c: (c[0], c[1]))
    online = [(a, b) for (a, w), (b, _) in pairwise(ordered) if w == "online"]
    ends = sorted({first, last, *(x for iv in online + chats for x in iv if first < x < last)})
    out = {"online": 0.0, "busy": 0.0, "occupied": 0.0, "chat_online": 0.0}
    levels: dict[int, float] = {}
    for lo, hi in pairwise(ends):
        mid = (lo + hi) / 2
        on = any(a <= mid < b for a, b in online)
        n = sum(1 for a, b in chats if a <= mid < b)
        out["online"] += (hi - lo) * on
        out["busy"] += (hi - lo) * (n > 0)
        out["occupied"] += (hi - lo) * (on and n > 0)
        out["chat_online"] += (hi - lo) * n * on
        if n:
            levels[n] = levels.get(n, 0.0) + hi - lo
    return {"online_s": out["online"], "busy_s": out["busy"], "occupied_s": out["occupied"],
            "occupancy": round(out["occupied"] / out["online"], 4) if out["online"] else None,
            "concurrency_avg": round(out["chat_online"] / out["online"], 3) if out["online"] else None,
            "concurrency_max": max(levels, default=0),
            "concurrency_s": {str(n): t for n, t in sorted(levels.items())}}


@settings(max_examples=60, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_story(), st.integers(1, 40), st.integers(0, 6))
async def test_the_roll_ups_agree_with_a_reckoning_from_the_events(
        story: tuple[list[d.DomainEvent], list[tuple[float, str]], list[tuple[float, float]]],
        size: int, first_day: int) -> None:
    events, changes, chats = story
    store = MemoryStore()
    await store.create_projection("p1")
    await commit_batches(store, events, size)
    day = MARCH_1 + timedelta(days=first_day)
    start = (day - MARCH_1).days * 86400.0 - 9 * HOUR  # at(0) is 09:00 on 1 March
    for last in (day, day + timedelta(days=2)):
        end = ((last - MARCH_1).days + 1) * 86400.0 - 9 * HOUR
        got = (await agents(store, day, last)).get("a1")
        want = _reckoned(changes, chats, start, end)
        assert (got["time"] if got else _reckoned([], [], 0, 0)) == want


async def test_the_folder_puts_a_batchs_moves_on_the_agent_row(tmp_path: Path) -> None:
    """Through the runner's Folder and a SQLite store: ag-1 goes online at 08:00 and offline
    at 16:00 UTC each day from 1 to 7 March (Natterly webhooks, one batch), and holds chat c1
    on 1 March from its acceptance at 09:00:05 to its close at 09:00:30. Each day 28800 s
    online; 1 March 25 s occupied (occupancy 25 / 28800 = 0.0009); the week 201600 s. The
    row keeps two days of changes, so without the moves the folder puts on the row five
    days would be missing."""
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    await store.create_projection("p1")
    try:
        envs = []
        for k in range(7):
            morning = datetime(2026, 3, 1 + k, 8, tzinfo=UTC)
            for at_, word in ((morning, "online"), (morning + timedelta(hours=8), "offline")):
                envs.append(envelope("natterly", "acme", natterly_user_status("ag-1", word, at_)))
        envs += conversation("c1", agent="ag-1")
        folder = Folder(store)
        result = await folder.fold("p1", records(envs))
        assert [row for row in result.rows if row.kind == "agent" and row.fact]
        await store.commit("p1", result.rows, result.offsets)
        week = (await agents(store, MARCH_1, date(2026, 3, 7)))["ag-1"]["time"]
        first = (await agents(store, MARCH_1, MARCH_1))["ag-1"]["time"]
    finally:
        await store.close()
    assert week["online_s"] == 7 * 28800.0
    assert (first["online_s"], first["occupied_s"], first["occupancy"]) == (28800.0, 25.0, 0.0009)


def test_a_fact_changing_but_not_its_span_moves_no_agent_day() -> None:
    """A closed chat rated later: its fact changes (``rated``), its span and holders do not,
    so the commit moves its chat tallies but writes none of Ann's days or months."""
    def fact(rated: int) -> bytes:
        return rollups._ENC.encode(rollups.Fact(
            day=20513, groups=(("all", ""), ("agent", "a1")), values=(None,) * 5,
            counts=(1, 0, 0, 0, rated) + (0,) * 5, span=(20513 * timeline.DAY_MS,
                                                          20513 * timeline.DAY_MS + 5000)))
    _, deltas = rollups.changes({"c1": fact(0)}, [("c1", fact(1))])
    assert deltas and not [key for key in deltas if key[1] == rollups.TIMELINE]

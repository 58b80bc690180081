"""An agent's analytics measures (projector/analytics.py, docs/analytics.md, "An agent's
measures"), on stories with the expected numbers worked out by hand, each folded in delivery
order, reversed and with every event delivered twice, and joined from two partitions' halves
(agent rows are written from several partitions: projector/pg_merge.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from contracts import domain as d
from contracts.state import AgentMetrics, AgentState
from projector.analytics import AGENT_DEFINITIONS, AGENT_VERSION
from projector.fold import apply
from projector.pg_merge import join
from projector.states import AgentFold, AggregateRef, FoldState, encode_state
from projector.views import to_view
from tests.kit.fold_events import at, common, fold, viewed
from tests.projector.test_analytics import delivered

A1 = AggregateRef("agent", "a1")
ANN = d.AgentRef(id="a1", name="Ann")
BOB = d.AgentRef(id="a2", name="Bob")


def status(t: float, word: d.AgentStatus) -> d.AgentStatusChanged:
    return d.AgentStatusChanged(**common(t), agent_id="a1", name="Ann", status=word)


def snapshot(t: float, chat_id: str, agent: d.AgentRef | None,
             others: tuple[d.AgentRef, ...] = ()) -> d.ChatUpdated:
    return d.ChatUpdated(**common(t), chat_id=chat_id, agent=agent, agents=others)


def measures(events: list[d.DomainEvent]) -> AgentMetrics:
    """Agent a1's metrics, after checking that reversed, doubled and split-then-joined
    delivery agree."""
    views = [msgspec.json.decode(viewed(fold(order))[A1], type=AgentState)
             for order in (events, events[::-1], events + events[::-1])]
    half = len(events) // 2
    parts = [fold(part).get(A1) for part in (events[:half], events[half:])]
    if parts[0] is not None and parts[1] is not None:
        joined = to_view(A1, join(parts[0], parts[1]))
        assert isinstance(joined, AgentState)
        views.append(joined)
    assert all(view == views[0] for view in views)
    assert views[0].metrics is not None
    return views[0].metrics


def test_online_and_invisible_time_between_the_first_and_last_change() -> None:
    """Online at 0, invisible at 600, online at 900, offline at 3600, online at 7200:
    online 600 + 2700 = 3300 s, invisible 300 s; the spell from 7200 is still open."""
    m = measures(delivered(status(0, "online"), status(600, "invisible"), status(900, "online"),
                           status(3600, "offline"), status(7200, "online")))
    assert (m.online_s, m.invisible_s, m.status_changes) == (3300.0, 300.0, 5)
    assert (m.measured_from, m.measured_to, m.last_status) == (at(0), at(7200), "online")


def test_a_repeated_status_runs_on_and_a_duplicate_changes_nothing() -> None:
    """Online at 0 and again at 100 (a provider repeating itself), offline at 250: 250 s."""
    events = delivered(status(0, "online"), status(100, "online"), status(250, "offline"))
    m = measures(events + delivered(status(100, "online")))  # one more delivery of 100
    assert (m.online_s, m.status_changes, m.last_status) == (250.0, 3, "offline")


def test_changes_at_one_time_online_wins_the_tie() -> None:
    """Offline at 0; offline and online both at 100; offline at 200: what runs on from 100
    is online (the tie rule), so 100 s online, whatever order they arrived in."""
    m = measures(delivered(status(0, "offline"), status(100, "online"), status(100, "offline"),
                           status(200, "offline")))
    assert (m.online_s, m.status_changes) == (100.0, 4)


def test_changes_at_one_time_offline_wins_over_invisible() -> None:
    """Invisible at 0; offline and invisible both at 100; online at 200: offline runs on
    from 100 (the later status word), so 100 s invisible, not 200."""
    m = measures(delivered(status(0, "invisible"), status(100, "offline"),
                           status(100, "invisible"), status(200, "online")))
    assert (m.invisible_s, m.online_s, m.last_status) == (100.0, 0.0, "online")


def test_an_agent_known_only_from_chats_has_no_online_time() -> None:
    m = measures(delivered(snapshot(0, "c1", ANN)))
    assert (m.online_s, m.status_changes, m.measured_from, m.last_status) == (0.0, 0, None, None)
    assert m.chats_handled is None  # counted by the query API from the roll-ups


def test_changes_older_than_two_days_behind_the_latest_are_settled() -> None:
    """Online at 0, offline at 3600, online at day 1, offline at day 1 + 1800, online at
    day 4: the spells ending two days or more before day 4 (up to day 1 + 1800) are settled:
    online 3600 + 1800 = 5400 s, offline from day 1 + 1800 to day 4 (pending, not timed);
    the same in any order in which each change arrives within two days of the latest."""
    day = 86_400
    events = delivered(status(0, "online"), status(3600, "offline"), status(day, "online"),
                       status(day + 1800, "offline"), status(4 * day, "online"))
    swapped = [events[1], events[0], events[3], events[2], events[4]]
    views = [msgspec.json.decode(viewed(fold(order))[A1], type=AgentState)
             for order in (events, swapped, events + swapped)]
    assert views[1] == views[0] and views[2] == views[0]
    m = views[0].metrics
    assert m is not None
    assert (m.online_s, m.invisible_s, m.status_changes) == (5400.0, 0.0, 5)
    assert (m.measured_from, m.measured_to, m.last_status) == (at(0), at(4 * day), "online")
    state = fold(events)[A1]
    assert isinstance(state, AgentFold) and state.spells is not None
    assert (len(state.spells.pending), state.spells.settled) == (2, 3)


def test_a_change_arriving_behind_the_settled_boundary_is_dropped_and_so_are_duplicates() -> None:
    """Settled up to day 1 + 1800 (above); then a change at 1000 arrives (three days late,
    past every provider's retries): it cannot be placed, so it changes nothing, and neither
    does a second delivery of an already settled change."""
    day = 86_400
    events = delivered(status(0, "online"), status(3600, "offline"), status(day, "online"),
                       status(day + 1800, "offline"), status(4 * day, "online"))
    before = fold(events)[A1]
    after = fold(events + delivered(status(1000, "invisible"), status(3600, "offline")))[A1]
    assert after == before


def test_a_busy_agents_year_keeps_a_small_row() -> None:
    """Ten status changes a day for a year (3,650; the unbounded row was 220 KB with its
    chats): the stored state holds two days of changes and the totals, under 2 KB, and its
    measures are the same as summing every spell."""
    state: FoldState | None = None
    for day in range(365):
        for k in range(10):
            word: d.AgentStatus = "online" if k % 2 == 0 else "offline"
            state = apply(A1, state, status(day * 86_400 + k * 3_600, word))
    assert state is not None
    size = len(encode_state(state))
    assert size < 2_048, size
    view = to_view(A1, state)
    assert isinstance(view, AgentState) and view.metrics is not None
    # Online 0-1 h, 2-3 h, ... 8-9 h each day (5 h); the day's last change (9 h) is offline.
    assert view.metrics.online_s == 365 * 5 * 3_600.0
    assert view.metrics.status_changes == 3_650


def test_every_agent_definition_is_versioned_and_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "analytics.md").read_text()
    assert max(AGENT_DEFINITIONS.values()) <= AGENT_VERSION
    for name, version in AGENT_DEFINITIONS.items():
        assert f"`{name}` (v{version})" in doc, name
    served = set(AgentMetrics.__struct_fields__)
    assert set(AGENT_DEFINITIONS) <= served


@pytest.mark.parametrize("word", ["online", "invisible", "offline"])
def test_a_single_change_measures_no_time(word: d.AgentStatus) -> None:
    m = measures(delivered(status(30, word)))
    assert (m.online_s, m.invisible_s, m.last_status, m.measured_to) == (0.0, 0.0, word, at(30))

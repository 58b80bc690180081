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
from projector.pg_merge import join
from projector.states import AggregateRef
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
    assert m.chats_handled == 1


def test_chats_handled_counts_the_chats_a_snapshot_named_the_agent_of() -> None:
    """c1 named Ann its agent twice, c2 once and then Bob (a transfer: both handled it);
    c3 named her only as a participant and c4 only as a message's author: not handled."""
    events = delivered(
        snapshot(0, "c1", ANN), snapshot(50, "c1", ANN), snapshot(60, "c2", ANN),
        snapshot(90, "c2", BOB), snapshot(100, "c3", BOB, (ANN,)),
        d.MessagePosted(**common(110), chat_id="c4", message_id="m1", text="hi",
                        author=d.Author(role="agent", id="a1", name="Ann"), posted_at=at(110)),
        status(0, "online"))
    assert measures(events).chats_handled == 2
    bob = msgspec.json.decode(viewed(fold(events))[AggregateRef("agent", "a2")], type=AgentState)
    assert bob.metrics is not None and bob.metrics.chats_handled == 2


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

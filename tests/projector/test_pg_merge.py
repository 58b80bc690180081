"""The merge of concurrently written fold states (projector/pg_merge.py) against the fold.

Two projector instances fold overlapping subsets of one visitor's (or agent's) events, in
any order, from stale states; joining their results must give exactly — byte for byte —
what one writer folding every event gives.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.domain import AgentStatusChanged, DomainEvent, VisitorSeen
from projector.fold import apply
from projector.pg_merge import FIELDS, MERGED_KINDS, join
from projector.states import AgentFold, AggregateRef, ChatFold, FoldState, VisitorFold, encode_state

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
# Few distinct values, so ties in time, name and event id are common.
_times = st.integers(0, 5).map(lambda s: T0 + timedelta(seconds=s))
_maybe_name = st.one_of(st.none(), st.sampled_from(["Ann", "Bob", "Cy"]))


@st.composite
def _visitor_events(draw: st.DrawFn) -> list[DomainEvent]:
    n = draw(st.integers(1, 12))
    return [VisitorSeen(
        event_id=f"e{draw(st.integers(0, 6))}-{i}", occurred_at=draw(_times),
        provider=draw(st.sampled_from(["natterly", "chatshipper"])),
        source=draw(st.sampled_from(["acme", "shop"])), visitor_id="v1",
        name=draw(_maybe_name), email=draw(st.one_of(st.none(), st.sampled_from(["a@x", "b@x"]))),
        anonymous=draw(st.one_of(st.none(), st.booleans())),
        chat_id=draw(st.one_of(st.none(), st.sampled_from(["c1", "c2", "c3", "c4"]))))
        for i in range(n)]


@st.composite
def _agent_events(draw: st.DrawFn) -> list[DomainEvent]:
    n = draw(st.integers(1, 12))
    return [AgentStatusChanged(
        event_id=f"e{draw(st.integers(0, 6))}-{i}", occurred_at=draw(_times), provider="natterly",
        source=draw(st.sampled_from(["acme", "shop"])), agent_id="a1", name=draw(_maybe_name),
        status=draw(st.sampled_from(["online", "offline", "invisible"])))
        for i in range(n)]


def _fold(ref: AggregateRef, events: list[DomainEvent]) -> FoldState | None:
    state: FoldState | None = None
    for event in events:
        state = apply(ref, state, event)
    return state


def _check(ref: AggregateRef, events: list[DomainEvent], data: st.DataObject) -> None:
    # Each event goes to the first writer, the second, or both (a redelivery); each writer
    # folds its share in its own order.
    shares = [data.draw(st.sampled_from([(0,), (1,), (0, 1)])) for _ in events]
    mine = [[e for e, s in zip(events, shares, strict=True) if w in s] for w in (0, 1)]
    states = [_fold(ref, data.draw(st.permutations(part))) for part in mine]
    expected = _fold(ref, events)
    assert expected is not None
    present = [s for s in states if s is not None]
    merged = present[0] if len(present) == 1 else join(present[0], present[1])
    assert encode_state(merged) == encode_state(expected)
    if len(present) == 2:
        assert encode_state(join(present[1], present[0])) == encode_state(expected)  # commutes
        assert encode_state(join(merged, present[0])) == encode_state(expected)  # idempotent


@settings(max_examples=200, deadline=None)
@given(events=_visitor_events(), data=st.data())
def test_joined_visitor_states_equal_one_writer_folding_everything(
        events: list[DomainEvent], data: st.DataObject) -> None:
    _check(AggregateRef("visitor", "v1"), events, data)


@settings(max_examples=200, deadline=None)
@given(events=_agent_events(), data=st.data())
def test_joined_agent_states_equal_one_writer_folding_everything(
        events: list[DomainEvent], data: st.DataObject) -> None:
    _check(AggregateRef("agent", "a1"), events, data)


@pytest.mark.parametrize("cls", [VisitorFold, AgentFold])
def test_every_field_of_a_merged_kind_has_a_merge(cls: type[msgspec.Struct]) -> None:
    """A field added to the fold must get a merge here too, or concurrent writers would drop it."""
    fields = {f.name for f in msgspec.structs.fields(cls)}
    assert set(FIELDS[cls]) == fields  # type: ignore[index]


def test_only_kinds_written_from_several_partitions_are_merged() -> None:
    assert all(kind in MERGED_KINDS for kind in ("visitor", "agent"))
    with pytest.raises(TypeError):
        join(ChatFold(id="c1"), ChatFold(id="c1"))
    with pytest.raises(ValueError, match="two aggregates"):
        join(VisitorFold(id="v1"), VisitorFold(id="v2"))


def test_a_stale_copy_never_brings_an_erased_visitors_name_back() -> None:
    from datetime import UTC, datetime, timedelta

    from contracts.domain import PageView
    from contracts.state import Erasure
    from projector.states import Reg

    before = datetime(2026, 3, 1, tzinfo=UTC)
    asked = before + timedelta(hours=1)
    stale = VisitorFold(id="v1", name=Reg(at=before, rank=0, event_id="e1", value="Priya",
                                          received_at=before),
                        pages=(PageView(url="https://shop/orders/1", at=before),))
    erased = VisitorFold(id="v1", erasure=Erasure(id="x", at=asked))
    later = VisitorFold(id="v1", email=Reg(at=asked, rank=0, event_id="e9", value="new@example.org",
                                           received_at=asked + timedelta(minutes=1)))
    for merged in (join(stale, erased), join(erased, stale)):
        assert (merged.name, merged.pages, merged.erasure) == (None, (), erased.erasure)
    merged = join(join(stale, erased), later)  # new data, received after the forget, stays
    assert merged.email == later.email and merged.name is None

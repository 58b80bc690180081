"""The fold's fast path (``projector.fold_fast``, what the projector runs) is the plain fold
(``projector.fold``, which reads like the rules in docs/projector.md): on generated event
sets of both providers, any order and duplicates, and on every golden webhook, both name the
same aggregates and fold them to the same bytes, and either can carry on from the other's
states.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import domain as d
from projector import fold_fast
from projector.fold import affected
from projector.states import AgentFold, AggregateRef, ChatFold, FoldState
from tests.kit.fold_events import conversation, encoded, fold, redelivered, world
from tests.projector.test_fold_golden import GOLDEN

SETTINGS = settings(
    max_examples=200, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)


def fast_fold(events: Iterable[d.DomainEvent], states: dict[AggregateRef, FoldState] | None = None
              ) -> dict[AggregateRef, FoldState]:
    """The kit's ``fold``, with the fast path's ``affected`` and ``apply``."""
    states = {} if states is None else states
    for event in events:
        for ref in fold_fast.affected(event):
            states[ref] = fold_fast.apply(ref, states.get(ref), event)
    return states


def assert_same_fold(events: list[d.DomainEvent]) -> None:
    for event in events:
        assert fold_fast.affected(event) == affected(event), event
    assert encoded(fast_fold(events)) == encoded(fold(events))


@SETTINGS
@given(st.data())
def test_fast_path_folds_a_world_as_the_plain_fold(data: st.DataObject) -> None:
    """Chats of both providers sharing visitors and agents, shuffled and redelivered."""
    assert_same_fold(data.draw(redelivered(data.draw(world()))))


@SETTINGS
@given(st.data())
def test_fast_path_folds_a_conversation_as_the_plain_fold(data: st.DataObject) -> None:
    assert_same_fold(data.draw(redelivered(data.draw(conversation()))))


@SETTINGS
@given(st.data())
def test_fast_path_and_plain_fold_carry_on_from_each_others_states(data: st.DataObject) -> None:
    events = data.draw(redelivered(data.draw(world())))
    cut = data.draw(st.integers(0, len(events)))
    whole = encoded(fold(events))
    assert encoded(fast_fold(events[cut:], fold(events[:cut]))) == whole
    assert encoded(fold(events[cut:], fast_fold(events[:cut]))) == whole


def test_fast_path_folds_every_golden_webhook_as_the_plain_fold() -> None:
    assert_same_fold(GOLDEN)
    assert_same_fold(GOLDEN[::-1])


def test_fast_path_refuses_and_ignores_as_the_plain_fold() -> None:
    chat = AggregateRef("chat", "c1")
    started = next(event for event in GOLDEN if isinstance(event, d.ChatStarted))
    seen = next(event for event in GOLDEN if isinstance(event, d.VisitorSeen))
    with pytest.raises(TypeError):
        fold_fast.apply(chat, AgentFold(id="a1"), started)
    state = ChatFold(id="c1")
    assert fold_fast.apply(chat, state, seen) is state

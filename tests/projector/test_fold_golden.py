"""The fold over the golden webhook bodies (tests/fixtures/webhooks/**), through the real
``contracts.ingest.parse_webhook`` and ``contracts.normalise`` — what the runner does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import domain as d
from contracts.errors import ContractError
from contracts.ingest import parse_webhook
from contracts.normalise import normalise
from contracts.state import AgentState, ChatState, MessageState, VisitorState
from projector.states import AggregateRef
from tests.kit.fold_events import encoded, fold, redelivered, viewed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
STORY = AggregateRef("chat", "5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f")  # Natterly: one chat, start to end
_VIEW_TYPES = {"chat": ChatState, "message": MessageState, "visitor": VisitorState, "agent": AgentState}


def golden_events() -> list[d.DomainEvent]:
    events: list[d.DomainEvent] = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        try:
            env = parse_webhook(path.parent.name, "acme", path.read_bytes(), received_at=RECEIVED)
        except ContractError:
            continue  # the receiver would have answered 400: never in the log
        events += normalise(env)
    return events


GOLDEN = golden_events()


def test_there_are_golden_events_of_both_providers() -> None:
    assert {event.provider for event in GOLDEN} == {"natterly", "chatshipper"}
    assert len(GOLDEN) > 100


def test_every_golden_state_has_a_valid_view() -> None:
    for ref, view in viewed(fold(GOLDEN)).items():
        msgspec.json.decode(view, type=_VIEW_TYPES[ref.kind])


@settings(max_examples=50, deadline=None, print_blob=True)
@given(st.data())
def test_golden_events_any_order_any_duplicates_same_state(data: st.DataObject) -> None:
    shuffled = data.draw(redelivered(GOLDEN))
    assert encoded(fold(shuffled)) == encoded(fold(GOLDEN))


@pytest.mark.parametrize("reverse", [False, True])
def test_natterly_story_ends_closed(reverse: bool) -> None:
    """Initiated, accepted, assigned, unassigned, completed, closed, transcript, rated,
    then a stray ChatIdle and ChatIgnored (later in time): closed stays closed."""
    events = [event for event in GOLDEN if getattr(event, "chat_id", None) == STORY.id]
    states = fold(events[::-1] if reverse else events)
    view = msgspec.json.decode(viewed(states)[STORY], type=ChatState)
    assert view.status == "closed"
    assert (view.completed, view.transcript_sent, view.ignored) == (True, True, True)
    assert view.closed_at == datetime.fromtimestamp(1700000960, UTC)
    assert view.accepted_at == datetime.fromtimestamp(1700000030, UTC)
    assert view.rating == 5  # chat_rated_numeric (5, later) over chat_rated ("Good")
    # Unassigned at 1700000200, but the later webhooks (completed, closed, rated…) name the
    # agent in their chat snapshot: the chat ends with her, not with nobody.
    assert view.agent == d.AgentRef(id="6f3b1c2d-8e4a-4b7f-a9d0-1c2e3f4a5b6c", name="Alice Baker")
    assert view.subject == "Question about delivery"
    assert view.message_count == len({e.message_id for e in events if isinstance(e, d.MessagePosted)})

"""Conversation truth (issue 15), people: a visitor known first by a session and later by its
uuid is one visitor; names come from whatever webhook last described them; a transfer moves
the agent. Provider bodies through the parser, the normaliser and the fold, in every order.
"""

from __future__ import annotations

from typing import Any

from test_fold_truth import CHAT, chat, every_fold, received

from contracts import domain as d
from contracts.state import VisitorState
from projector.fold import AggregateRef, FoldState
from projector.views import merged_visitor, to_view

SESSION = "session:s-1"


def visitor(states: dict[AggregateRef, FoldState], visitor_id: str) -> VisitorState:
    view = to_view(AggregateRef("visitor", visitor_id), states[AggregateRef("visitor", visitor_id)])
    assert isinstance(view, VisitorState)
    return view


def natterly_chat(event: str, timestamp: int, **chat_fields: Any) -> dict[str, Any]:
    return {"event": event, "timestamp": timestamp,
            "payload": {"chat": {"uuid": CHAT, "status": "Accepted", "closed_at": 0, **chat_fields}}}


def registration(timestamp: int, page: str, **session: Any) -> dict[str, Any]:
    return {"event": "SessionRegistration", "timestamp": timestamp,
            "payload": {"session": {"uuid": "s-1", "page_url": f"https://shop.example/{page}",
                                    "page_title": page, **session}}}


def identified_mid_chat() -> list[Any]:
    """An anonymous visitor browses and starts a chat, known only by its session; then
    the agent's webhooks name the visitor's uuid beside that session."""
    return [
        received("natterly", registration(1700000000, "home"), 0),
        received("natterly", natterly_chat("ChatInitiated", 1700000010, session_id="s-1",
                                           visitor={"name": "Anonymous Chicken",
                                                    "anonymous": True}), 10),
        received("natterly", natterly_chat("ChatAccepted", 1700000020, session_id="s-1",
                                           visitor={"uuid": "v-1", "name": "Ann",
                                                    "anonymous": False}), 20),
        received("natterly", registration(1700000030, "checkout", visitor={"uuid": "v-1"}), 30),
    ]


def test_a_real_visitor_id_replaces_the_session_id_on_the_chat_in_every_order() -> None:
    for states in every_fold(identified_mid_chat()):
        assert chat(states, CHAT).visitor == d.VisitorRef(id="v-1", name="Ann", anonymous=False)


def test_a_session_id_never_replaces_a_real_one_even_when_later() -> None:
    log = [
        received("natterly", natterly_chat("ChatAccepted", 1700000000,
                                           visitor={"uuid": "v-1", "name": "Ann"}), 0),
        # Later, a webhook that names the session only.
        received("natterly", natterly_chat("ChatIdle", 1700000100, session_id="s-1"), 100),
    ]
    for states in every_fold(log):
        assert chat(states, CHAT).visitor == d.VisitorRef(id="v-1", name="Ann")


def test_the_session_visitor_and_the_identified_visitor_are_linked_both_ways() -> None:
    for states in every_fold(identified_mid_chat()):
        anonymous, known = visitor(states, SESSION), visitor(states, "v-1")
        assert anonymous.identified_as == "v-1"
        assert known.sessions == (SESSION,)
        assert known.identified_as is None and anonymous.sessions == ()


def test_the_identified_visitor_shows_the_sessions_pages_and_chats() -> None:
    for states in every_fold(identified_mid_chat()):
        known = visitor(states, "v-1")
        merged = merged_visitor(known, [visitor(states, sid) for sid in known.sessions])
        assert [p.url for p in merged.pages] == [
            "https://shop.example/home", "https://shop.example/checkout"]
        assert merged.chats == (CHAT,)
        assert merged.name == "Ann"
        assert merged.first_seen is not None and merged.first_seen.timestamp() == 1700000000

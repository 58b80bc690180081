"""Conversation truth (issue 15), people: a visitor known first by a session and later by its
uuid is one visitor; names come from whatever webhook last described them; a transfer moves
the agent. Provider bodies through the parser, the normaliser and the fold, in every order.
"""

from __future__ import annotations

from typing import Any

from contracts import domain as d
from contracts.state import AgentState, MessageState, VisitorState
from projector.states import AggregateRef, FoldState, message_ref
from projector.views import merged_visitor, named_authors, row_for, to_view
from tests.projector.test_fold_truth import CHAT, CONV, chat, events_of, every_fold, received

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


# ---------------------------------------------------------------------------- transfers

def shipper_update(event_id: str, updated: str, participants: list[dict[str, Any]],
                   status: str = "active") -> dict[str, Any]:
    return {"id": event_id, "event": "conversation.update", "timestamp": updated,
            "data": {"conversation": {"id": CONV, "organization": "org-1", "type": "contact",
                                      "status": status, "updatedAt": updated,
                                      "participants": participants}}}


def agent(user: str, *, accepted: bool = True, active: bool = True) -> dict[str, Any]:
    return {"user": user, "role": "agent", "accepted": accepted, "active": active}


def test_chatshipper_transfer_unassigns_the_previous_agent_until_the_next_accepts() -> None:
    ann_handles = shipper_update("w-1", "2026-03-01T09:00:00Z", [agent("u-ann")])
    transferred = shipper_update("w-2", "2026-03-01T09:05:00Z", [
        agent("u-ann", active=False), agent("u-bob", accepted=False)])
    bob_accepts = shipper_update("w-3", "2026-03-01T09:06:00Z", [
        agent("u-ann", active=False), agent("u-bob")])
    before = [received("chatshipper", ann_handles, 0), received("chatshipper", transferred, 300)]
    for states in every_fold(before):
        assert chat(states, CONV).agent is None
        assert row_for(AggregateRef("chat", CONV), states[AggregateRef("chat", CONV)]).agent_id is None
    for states in every_fold([*before, received("chatshipper", bob_accepts, 360)]):
        assert chat(states, CONV).agent == d.AgentRef(id="u-bob")


def test_chatshipper_closed_conversation_keeps_its_last_agent() -> None:
    """The last agent leaving closes a conversation: it was still that agent's chat."""
    log = [received("chatshipper", shipper_update(
        "w-1", "2026-03-01T09:00:00Z", [agent("u-ann", active=False)], status="closed"), 0)]
    assert chat(every_fold(log)[0], CONV).agent == d.AgentRef(id="u-ann")


def test_natterly_reassignment_leaves_no_trace_of_the_previous_agent() -> None:
    log = [
        received("natterly", natterly_chat("ChatAccepted", 1700000000,
                                           user={"uuid": "u-ann", "name": "Ann"}), 0),
        received("natterly", natterly_chat("ChatAssigned", 1700000060,
                                           user={"uuid": "u-bob", "name": "Bob"}), 60),
    ]
    for states in every_fold(log):
        state = states[AggregateRef("chat", CHAT)]
        assert chat(states, CHAT).agent == d.AgentRef(id="u-bob", name="Bob")
        assert row_for(AggregateRef("chat", CHAT), state).agent_id == "u-bob"


# ---------------------------------------------------------------------------- names

def agent_state(states: dict[AggregateRef, FoldState], agent_id: str) -> AgentState:
    view = to_view(AggregateRef("agent", agent_id), states[AggregateRef("agent", agent_id)])
    assert isinstance(view, AgentState)
    return view


def test_chatshipper_author_named_by_id_only_takes_the_name_another_webhook_gave() -> None:
    """The message names its author by user id only; the conversation update (before or
    after it) lists that user as a populated participant."""
    message = {"id": "m-1", "conversation": CONV, "type": "chat", "role": "agent",
               "user": "u-ann", "text": "Hello, I am Ann", "createdAt": "2026-03-01T09:01:00Z"}
    populated = {"user": {"id": "u-ann", "name": "Ann Agent"}, "role": "agent",
                 "accepted": True, "active": True}
    log = [
        received("chatshipper", {"id": "w-1", "event": "message.create.agent.chat",
                                 "timestamp": "2026-03-01T09:01:00Z",
                                 "data": {"conversation": {"id": CONV}, "message": message}}, 60),
        received("chatshipper", shipper_update("w-2", "2026-03-01T09:02:00Z", [populated]), 120),
    ]
    for states in every_fold(log):
        view = chat(states, CONV)
        assert view.agents == (d.AgentRef(id="u-ann", name="Ann Agent"),)
        note = to_view(message_ref(CONV, "m-1"), states[message_ref(CONV, "m-1")])
        assert isinstance(note, MessageState)
        [named] = named_authors([note], view.agents)
        assert named.author == d.Author(role="agent", name="Ann Agent", id="u-ann")
        assert agent_state(states, "u-ann").name == "Ann Agent"


def test_chatshipper_author_is_named_from_the_participants_of_the_same_webhook() -> None:
    message = {"id": "m-1", "conversation": CONV, "type": "chat", "role": "agent",
               "user": "u-ann", "text": "Hi", "createdAt": "2026-03-01T09:01:00Z"}
    conversation = {"id": CONV, "participants": [
        {"user": {"id": "u-ann", "name": "Ann Agent"}, "role": "agent", "accepted": True}]}
    log = [received("chatshipper", {"id": "w-1", "event": "message.create.agent.chat",
                                    "timestamp": "2026-03-01T09:01:00Z",
                                    "data": {"conversation": conversation, "message": message}}, 60)]
    posted = next(e for e in events_of(log) if isinstance(e, d.MessagePosted))
    assert posted.author == d.Author(role="agent", name="Ann Agent", id="u-ann")


def test_agent_state_takes_its_name_from_whatever_webhook_last_described_it() -> None:
    """Chat data names the agent; a status change without a name keeps it; a later chat
    webhook's new name wins, in every order of delivery."""
    status = {"event": "UserStatusChanged", "timestamp": 1700000050,
              "payload": {"user": {"uuid": "u-ann"}, "status": "Online"}}
    log = [
        received("natterly", natterly_chat("ChatAccepted", 1700000000,
                                           user={"uuid": "u-ann", "name": "Ann"}), 0),
        received("natterly", status, 50),
        received("natterly", natterly_chat("ChatIdle", 1700000100,
                                           user={"uuid": "u-ann", "name": "Ann Smith"}), 100),
    ]
    for states in every_fold(log):
        agent = agent_state(states, "u-ann")
        assert (agent.name, agent.status) == ("Ann Smith", "online")
        assert chat(states, CHAT).agent == d.AgentRef(id="u-ann", name="Ann Smith")

"""State shapes: exactly the public field names (docs/architecture.md, "Public interface")."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from contracts import domain as d
from contracts import state as s

CHAT_FIELDS = [
    "id", "provider", "source", "status", "ignored", "completed", "transcript_sent", "subject",
    "department", "agent", "visitor", "site", "initiated_at", "accepted_at", "closed_at",
    "last_message_at", "message_count", "rating", "location", "browser", "platform",
    # wave 2 (DESIGN "State additions"), with defaults
    "provider_status", "type", "internal_count",
    # every agent the chat's webhooks named (issue 15: names from whatever described them)
    "agents",
    # the chat's analytics measures (issue 22; docs/analytics.md)
    "metrics",
    # the erasure that removed its personal fields (issue 20; docs/privacy.md)
    "erasure",
]  # fmt: skip


def names(struct: type[msgspec.Struct]) -> list[str]:
    return [field.encode_name for field in msgspec.structs.fields(struct)]


def test_chat_state_fields() -> None:
    assert names(s.ChatState) == CHAT_FIELDS
    assert names(d.DepartmentRef) == ["id", "name"]
    assert names(d.AgentRef) == ["id", "name"]
    assert names(s.ChatMetrics) == [
        "version", "wait_s", "first_response_s", "response_avg_s", "response_max_s", "responses",
        "handle_s", "visitor_messages", "agent_messages", "bot_messages", "system_messages",
        "missed", "abandoned", "transfers", "excluded",
    ]  # fmt: skip
    assert names(d.VisitorRef) == ["id", "name", "anonymous"]
    assert names(d.SiteRef) == ["id", "name"]
    assert names(d.Location) == ["country", "country_code", "city"]


def test_other_state_fields() -> None:
    assert names(s.AgentState) == ["id", "name", "status", "since", "metrics"]
    assert names(s.AgentMetrics) == [
        "version", "online_s", "invisible_s", "status_changes", "measured_from", "measured_to",
        "last_status", "chats_handled", "time",
    ]  # fmt: skip
    assert names(s.AgentTime) == [
        "online_s", "busy_s", "occupied_s", "occupancy", "concurrency_avg", "concurrency_max",
        "concurrency_s",
    ]  # fmt: skip
    assert names(s.VisitorState) == ["id", "name", "email", "anonymous", "first_seen", "last_seen", "chats",
                                       "pages", "sessions", "identified_as", "erasure"]
    assert names(s.MessageState) == ["id", "chat_id", "text", "author", "posted_at", "edited_at", "deleted",
                                         "internal", "message_type", "erasure"]
    assert names(d.Author) == ["role", "name", "id"]
    assert names(s.Erasure) == ["id", "at"]


def test_chat_state_json() -> None:
    chat = s.ChatState(
        id="c",
        status="active",
        agent=d.AgentRef(id="a", name="Alice"),
        initiated_at=datetime(2024, 1, 1, tzinfo=UTC),
        message_count=2,
    )
    as_json = msgspec.json.decode(msgspec.json.encode(chat))
    assert as_json["status"] == "active"
    assert as_json["agent"] == {"id": "a", "name": "Alice"}
    assert as_json["initiated_at"] == "2024-01-01T00:00:00Z"
    assert as_json["subject"] is None and as_json["ignored"] is False
    assert msgspec.json.decode(msgspec.json.encode(chat), type=s.ChatState) == chat


def test_status_values() -> None:
    bad = b'{"id": "c", "status": "open"}'
    try:
        msgspec.json.decode(bad, type=s.ChatState)
    except msgspec.ValidationError as error:
        assert "status" in str(error)
    else:  # pragma: no cover
        raise AssertionError("status must be one of waiting|active|idle|closed")


def test_state_is_frozen() -> None:
    agent = s.AgentState(id="a", status="online")
    try:
        agent.status = "offline"  # type: ignore[misc]
    except AttributeError:
        pass
    else:  # pragma: no cover
        raise AssertionError("state must be immutable")

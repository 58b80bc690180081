"""Bad input: a body with wrongly typed values is folded field by field, never dropped whole,
and what could not be used is reported (paths, never values)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from contracts import domain as d
from contracts.ingest import parse_webhook
from contracts.normalise import normalise_decoded
from contracts.salvage import field_label

RECEIVED = datetime(2026, 3, 1, 9, 5, tzinfo=UTC)


def normalised(provider: str, body: dict[str, Any]) -> tuple[list[d.DomainEvent], list[str]]:
    env = parse_webhook(provider, "acme", json.dumps(body).encode(), received_at=RECEIVED)
    dropped: list[str] = []
    return normalise_decoded(env, 7, dropped), dropped


def test_field_labels_have_no_list_indexes() -> None:
    assert field_label("$.payload.messages[12].created_at") == "payload.messages[].created_at"
    assert field_label("$") == "$"


def test_natterly_wrong_types_drop_only_those_fields() -> None:
    body = {"event": "ChatAccepted", "timestamp": 1772355600,
            "payload": {"chat": {"uuid": "c-1", "subject": 42, "status": "Accepted",
                                 "user": {"uuid": "u-1", "name": "Ann"}},
                        "messages": [{"uuid": "m-1", "text": "hi", "created_at": "yesterday"},
                                     {"uuid": "m-2", "text": ["not", "text"]}]}}
    events, dropped = normalised("natterly", body)
    assert sorted(dropped) == ["payload.chat.subject", "payload.messages[].created_at",
                               "payload.messages[].text"]
    accepted = next(e for e in events if isinstance(e, d.ChatAccepted))
    assert accepted.agent == d.AgentRef(id="u-1", name="Ann")
    assert accepted.log_offset == 7
    snapshot = next(e for e in events if isinstance(e, d.ChatUpdated))
    assert (snapshot.subject, snapshot.provider_status) == (None, "Accepted")
    texts = {e.message_id: e.text for e in events if isinstance(e, d.MessagePosted)}
    assert texts == {"m-1": "hi", "m-2": None}


def test_chatshipper_wrong_types_and_impossible_times_drop_only_those_fields() -> None:
    body = {"id": "w-1", "event": "conversation.update", "timestamp": "2026-03-01T09:00:00Z",
            "data": {"conversation": {"id": "conv-1", "status": "closed", "name": {"x": 1},
                                      "updatedAt": "2999-01-01T00:00:00Z"}}}
    events, dropped = normalised("chatshipper", body)
    assert dropped == ["data.conversation.name", "data.conversation.updatedAt"]
    assert any(isinstance(e, d.ChatClosed) for e in events)
    assert all(e.occurred_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC) for e in events)


def test_unknown_events_are_not_faults() -> None:
    events, dropped = normalised("natterly", {"event": "ChatTeleported", "timestamp": 1772355600,
                                              "payload": {"chat": {"uuid": "c-1", "subject": 5}}})
    assert (events, dropped) == ([], [])

"""The state-change value: encoded from a state's JSON, decoded back typed, versioned by positions."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from contracts.errors import ContractError
from contracts.position import Position
from contracts.state import ChatState, MessageState
from contracts.state_change import (
    decode_state_change,
    encode_state_change,
    state_topic_kind,
    version_of,
)


def test_round_trip_keeps_the_state_its_positions_and_version() -> None:
    chat = ChatState(id="c1", status="closed", closed_at=datetime(2026, 1, 2, tzinfo=UTC))
    positions = (Position("p.events.chat", 3, 41), Position("p.events.visitor", 0, 7))
    covers = tuple((p.topic, p.partition, p.offset) for p in positions)
    data = encode_state_change("chat", "c1", covers, msgspec.json.encode(chat))
    change = decode_state_change(data)
    assert change.kind == "chat" and change.id == "c1"
    assert change.state == chat
    assert change.positions == positions
    assert change.version == version_of(positions) == 42 + 8


def test_messages_decode_as_messages_and_travel_on_the_chat_topic() -> None:
    msg = MessageState(id="m1", chat_id="c1", text='hello "there" \u2603')
    change = decode_state_change(encode_state_change("message", "c1/m1", (), msgspec.json.encode(msg)))
    assert change.state == msg
    assert change.version == 0
    assert state_topic_kind("message") == "chat"
    assert state_topic_kind("visitor") == "visitor"


def test_a_version_grows_with_every_record_folded_in() -> None:
    before = (Position("t", 0, 5),)
    assert version_of((Position("t", 0, 6),)) > version_of(before)
    assert version_of((*before, Position("t", 1, 0))) > version_of(before)


@pytest.mark.parametrize("data", [b"{}", b"not json", b'{"kind":"chat","id":"c","version":1,'
                                  b'"positions":[],"state":{"status":"closed"}}'])
def test_anything_else_is_a_contract_error(data: bytes) -> None:
    with pytest.raises(ContractError, match="not a state change"):
        decode_state_change(data)


def test_ids_and_topics_are_json_escaped() -> None:
    chat = ChatState(id='c"1\\\u2603')
    data = encode_state_change("chat", chat.id, (("p.events.chat", 0, 1),), msgspec.json.encode(chat))
    change = decode_state_change(data)
    assert change.id == chat.id and change.state == chat and change.version == 2

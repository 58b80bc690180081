"""Position: topic:partition:offset."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ContractError
from contracts.position import Position

TOPIC = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True)


def test_str_and_parse() -> None:
    position = Position("parley.events.chat", 3, 42)
    assert str(position) == "parley.events.chat:3:42"
    assert Position.parse("parley.events.chat:3:42") == position


def test_keyword_construction() -> None:
    assert Position(topic="t", partition=0, offset=0) == Position("t", 0, 0)


@given(TOPIC, st.integers(0, 10_000), st.integers(0, 2**63 - 1))
def test_round_trip(topic: str, partition: int, offset: int) -> None:
    position = Position(topic, partition, offset)
    assert Position.parse(str(position)) == position


@pytest.mark.parametrize(
    "text",
    ["", "t", "t:1", ":1:2", "t:1:2:3", "t:-1:2", "t:1:-2", "t:x:2", "t:1: 2", "t:+1:2", "t:1:2_0",
     # past what int() converts, past Kafka's 64-bit offsets and 32-bit partitions
     "t:1:" + "9" * 5000, "t:1:9223372036854775808", "t:2147483648:0"],
)
def test_bad_positions(text: str) -> None:
    with pytest.raises(ContractError) as caught:
        Position.parse(text)
    assert caught.value.path == "$"


@given(st.text(max_size=30))
def test_parse_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(ContractError):
        Position.parse(text)

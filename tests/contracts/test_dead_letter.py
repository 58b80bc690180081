"""The one dead-letter format: round trips, and letters of the formats Parley wrote before.

The old headers below are byte for byte what the projector's and the consumers' first writers
produced (before contracts/dead_letter.py): installations keep every letter they have.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from contracts.dead_letter import (
    MAX_ERROR_CHARS,
    DeadLetterEntry,
    Resolution,
    decode,
    encode,
    upcast_projector_v1,
)
from contracts.position import Position

# What projector/dlq.py wrote for a record it could not decode (projection v1).
PROJECTOR_V1 = [
    ("parley.error", b"ContractError"),
    ("parley.error.stage", b"decode"),
    ("parley.error.detail", b"envelope: not JSON"),
    ("parley.origin.topic", b"parley.events.chat"),
    ("parley.origin.partition", b"5"),
    ("parley.origin.offset", b"42"),
    ("parley.origin.timestamp_ms", b"1767603600000"),
    ("parley.consumer", b"projector"),
    ("parley.projection", b"v1"),
]
# What consumers/parking.py wrote: a dead entry, a parked one behind it, a resolution.
CONSUMER_V1_DEAD = [
    ("parley-dlq-kind", b"dead"), ("parley-dlq-group", b"crm"),
    ("parley-origin-topic", b"parley.events.chat"), ("parley-origin-partition", b"1"),
    ("parley-origin-offset", b"7"), ("parley-dlq-at", b"2026-01-05T09:00:00.000Z"),
    ("parley-event-id", b"natterly-e1"), ("parley-error-type", b"CrmRejected"),
    ("parley-error", b"422 from the CRM"), ("parley-error-retriable", b"false"),
    ("parley-attempts", b"1"),
]
CONSUMER_V1_PARKED = [
    ("parley-dlq-kind", b"parked"), ("parley-dlq-group", b"crm"),
    ("parley-origin-topic", b"parley.events.chat"), ("parley-origin-partition", b"1"),
    ("parley-origin-offset", b"9"), ("parley-dlq-at", b"2026-01-05T09:00:01.000Z"),
]
CONSUMER_V1_RESOLVED = [
    ("parley-dlq-kind", b"resolved"), ("parley-dlq-group", b"crm"),
    ("parley-origin-topic", b"parley.events.chat"), ("parley-dlq-action", b"skip"),
    ("parley-dlq-upto", b"3"), ("parley-dlq-at", b"2026-01-05T10:00:00.000Z"),
]
NINE = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_a_letter_of_the_projectors_first_format_is_read_as_a_dead_entry() -> None:
    entry = decode(0, b"chat-1", PROJECTOR_V1, b"\x00garbage", keep_value=True)
    assert entry == DeadLetterEntry(
        kind="dead", group="projector", origin=Position("parley.events.chat", 5, 42),
        key="chat-1", dlq_offset=0, reason="decode", origin_timestamp_ms=1767603600000,
        error_type="ContractError", error="envelope: not JSON", attempts=1, projection="v1",
        value=b"\x00garbage")


def test_the_consumers_first_format_reads_as_it_did() -> None:
    dead = decode(1, b"chat-1", CONSUMER_V1_DEAD)
    assert dead == DeadLetterEntry(
        kind="dead", group="crm", origin=Position("parley.events.chat", 1, 7), key="chat-1",
        dlq_offset=1, event_id="natterly-e1", error_type="CrmRejected", error="422 from the CRM",
        retriable=False, attempts=1, at=NINE)
    parked = decode(2, b"chat-1", CONSUMER_V1_PARKED)
    assert isinstance(parked, DeadLetterEntry) and parked.kind == "parked"
    assert parked.origin == Position("parley.events.chat", 1, 9)
    assert decode(3, b"chat-1", CONSUMER_V1_RESOLVED) == Resolution(
        group="crm", topic="parley.events.chat", key="chat-1", action="skip", upto=3,
        at=datetime(2026, 1, 5, 10, tzinfo=UTC))


def test_upcast_leaves_the_current_format_alone() -> None:
    current = {name: value.decode() for name, value in encode(DeadLetterEntry(
        kind="dead", group="projector", origin=Position("t", 0, 1), key="k", reason="apply"))}
    assert upcast_projector_v1(current) == current
    assert set(upcast_projector_v1({n: v.decode() for n, v in PROJECTOR_V1})) >= {
        "parley-dlq-kind", "parley-origin-topic", "parley-dlq-reason", "parley-error-type"}


def test_a_projector_letter_round_trips_with_its_failure_times() -> None:
    letter = DeadLetterEntry(
        kind="dead", group="projector", origin=Position("p.events.chat", 2, 3), key="chat-9",
        reason="apply", origin_timestamp_ms=5, error_type="ValueError", error="x" * 2000,
        retriable=False, attempts=1, first_failed_at=NINE, at=NINE, projection="v2")
    back = decode(11, b"chat-9", encode(letter))
    assert back is not None and back.error == "x" * MAX_ERROR_CHARS  # cut, never bloated
    assert back == DeadLetterEntry(**{**{f: getattr(letter, f) for f in letter.__struct_fields__},
                                      "dlq_offset": 11, "error": "x" * MAX_ERROR_CHARS})


@given(kind=st.sampled_from(["dead", "parked"]), group=st.from_regex(r"[a-z][a-z0-9._-]{0,20}",
                                                                      fullmatch=True),
       partition=st.integers(0, 2**31 - 1), offset=st.integers(0, 2**63 - 1),
       key=st.text(min_size=1, max_size=40).filter(lambda k: "\ufffd" not in k),
       error=st.one_of(st.none(), st.text(min_size=1, max_size=MAX_ERROR_CHARS)),
       attempts=st.integers(1, 100))
def test_every_entry_round_trips(kind: str, group: str, partition: int, offset: int, key: str,
                                 error: str | None, attempts: int) -> None:
    entry = DeadLetterEntry(kind="dead" if kind == "dead" else "parked", group=group,
                            origin=Position("p.events.chat", partition, offset), key=key,
                            error_type=None if error is None else "E", error=error,
                            attempts=attempts if kind == "dead" else 0, at=NINE)
    back = decode(0, key.encode(), encode(entry))
    assert back == DeadLetterEntry(**{**{f: getattr(entry, f) for f in entry.__struct_fields__},
                                      "dlq_offset": 0})


def test_a_record_without_the_vocabulary_or_with_broken_numbers_is_ignored() -> None:
    assert decode(0, b"k", [("content-type", b"application/json")]) is None
    broken = [(n, b"not-a-number" if n == "parley-origin-offset" else v)
              for n, v in CONSUMER_V1_DEAD]
    assert decode(0, b"k", broken) is None

"""The header of a replayed copy: where its original record is (``parley consumers replay``).

A copy on a group's replay topic (:meth:`contracts.topics.Topics.replay`) carries the original
record's key, value and headers unchanged, plus :data:`ORIGIN_HEADER`; the group's runner
hands the handler the original back: same topic, partition, offset, timestamp, headers and
so the same ``event_id``. Data only, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts.errors import ContractError
from contracts.position import Position

__all__ = ["ORIGIN_HEADER", "origin_header", "split_origin"]

#: ``topic:partition:offset`` of the original record, then its timestamp in ms: ``…@<ms>``.
ORIGIN_HEADER = "parley-replay-origin"

Headers = Sequence[tuple[str, bytes]]


def origin_header(origin: Position, timestamp_ms: int) -> tuple[str, bytes]:
    """The header a copy of the record at ``origin`` (written at ``timestamp_ms``) carries."""
    return ORIGIN_HEADER, f"{origin}@{timestamp_ms}".encode()


def split_origin(headers: Headers) -> tuple[Position, int, tuple[tuple[str, bytes], ...]]:
    """A copy's origin, original timestamp and original headers; ContractError if the record
    is not a copy (no origin header, or one that does not parse)."""
    rest = tuple(h for h in headers if h[0] != ORIGIN_HEADER)
    found = [v for name, v in headers if name == ORIGIN_HEADER]
    if len(found) != 1:
        raise ContractError(f"replayed record: expected one {ORIGIN_HEADER} header")
    position, at, ms = found[0].decode(errors="replace").rpartition("@")
    if not at or not ms.isdigit():
        raise ContractError(f"replayed record: bad {ORIGIN_HEADER} header")
    return Position.parse(position), int(ms), rest

"""Dead letters: the one format of every group's dead-letter topic (pure data, no I/O).

Every group ``NAME`` — the projector and each consumer — has one dead-letter topic,
``<prefix>.dlq.NAME`` (:meth:`contracts.topics.Topics.dlq`; one partition, infinite retention,
keyed by the failed record's key). Its records are told apart by the ``parley-dlq-kind``
header:

``dead``
    a record its group gave up on. The value is the original record's value, unchanged; the
    headers say where it came from (``parley-origin-*``), why (``parley-dlq-reason``: ``decode``,
    ``apply`` or ``handle``), the error, the attempts and when it failed.
``parked``
    a later record of the same key that a consumer holds back so that the key's order is never
    broken (the projector never parks: it skips only the bad record).
``resolved``
    written by ``parley dlq NAME replay|skip``: every entry of that key with a dead-letter
    offset up to ``parley-dlq-upto`` is dealt with (``parley-dlq-action``: replay or skip).

:func:`encode` writes the headers of an entry or a resolution; :func:`decode` reads any
record of a dead-letter topic back, whoever wrote it and in any format Parley ever wrote:

* the consumers' first format is this vocabulary without the headers added since (reason,
  first failure, origin timestamp, projection), which decode to their defaults;
* the projector's first format (``parley.error``, ``parley.error.stage``,
  ``parley.origin.*``, ``parley.projection``) is lifted by :func:`upcast_projector_v1`.

Evolution policy (as for envelopes): new headers get defaults; a renamed header goes through
an explicit upcaster here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import msgspec

from contracts.position import Position

__all__ = [
    "DEAD",
    "MAX_ERROR_CHARS",
    "PARKED",
    "RESOLVED",
    "DeadLetterEntry",
    "Headers",
    "Reason",
    "Resolution",
    "decode",
    "encode",
    "upcast_projector_v1",
]

DEAD: Literal["dead"] = "dead"
PARKED: Literal["parked"] = "parked"
RESOLVED: Literal["resolved"] = "resolved"
#: Why a record was given up: it could not be decoded, the projector's fold refused it, or a
#: consumer's handler failed for good.
Reason = Literal["decode", "apply", "handle"]
#: Error messages are cut here: enough to act on, short enough never to bloat the record.
MAX_ERROR_CHARS = 500

Headers = list[tuple[str, bytes]]

# The vocabulary: the only place a dead-letter header is spelled.
H_KIND = "parley-dlq-kind"
H_GROUP = "parley-dlq-group"
H_REASON = "parley-dlq-reason"
H_TOPIC = "parley-origin-topic"
H_PARTITION = "parley-origin-partition"
H_OFFSET = "parley-origin-offset"
H_TIMESTAMP_MS = "parley-origin-timestamp-ms"
H_EVENT_ID = "parley-event-id"
H_ERROR_TYPE = "parley-error-type"
H_ERROR = "parley-error"
H_RETRIABLE = "parley-error-retriable"
H_ATTEMPTS = "parley-attempts"
H_FIRST_FAILED_AT = "parley-dlq-first-failed-at"
H_AT = "parley-dlq-at"
H_PROJECTION = "parley-dlq-projection"
H_ACTION = "parley-dlq-action"
H_UPTO = "parley-dlq-upto"


class DeadLetterEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ``dead`` or ``parked`` record of a dead-letter topic.

    ``dlq_offset`` is the record's offset in the dead-letter topic (-1 before it is written);
    ``at`` is when it was written (for a dead entry: its last failure); ``value`` is kept only
    by readers that replay it.
    """

    kind: Literal["dead", "parked"]
    group: str
    origin: Position
    key: str
    dlq_offset: int = -1
    reason: Reason | None = None
    origin_timestamp_ms: int | None = None
    event_id: str | None = None
    error_type: str | None = None
    error: str | None = None
    retriable: bool | None = None
    attempts: int = 0
    first_failed_at: datetime | None = None
    at: datetime | None = None
    projection: str | None = None
    value: bytes | None = None


class Resolution(msgspec.Struct, frozen=True, kw_only=True):
    """A ``resolved`` record: entries of (``topic``, ``key``) up to dead-letter offset ``upto``
    are dealt with."""

    group: str
    topic: str
    key: str
    action: str
    upto: int
    at: datetime | None = None


def _time(value: datetime) -> bytes:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()


def encode(item: DeadLetterEntry | Resolution) -> Headers:
    """The headers of an entry or a resolution (the key and value are the writer's)."""
    if isinstance(item, Resolution):
        out = [(H_KIND, RESOLVED.encode()), (H_GROUP, item.group.encode()),
               (H_TOPIC, item.topic.encode()), (H_ACTION, item.action.encode()),
               (H_UPTO, str(item.upto).encode())]
        if item.at is not None:
            out.append((H_AT, _time(item.at)))
        return out
    e = item
    out = [(H_KIND, e.kind.encode()), (H_GROUP, e.group.encode()),
           (H_TOPIC, e.origin.topic.encode()), (H_PARTITION, str(e.origin.partition).encode()),
           (H_OFFSET, str(e.origin.offset).encode())]
    optional: list[tuple[str, str | None]] = [
        (H_TIMESTAMP_MS, None if e.origin_timestamp_ms is None else str(e.origin_timestamp_ms)),
        (H_EVENT_ID, e.event_id),
        (H_REASON, e.reason),
        (H_ERROR_TYPE, e.error_type),
        (H_ERROR, None if e.error is None else e.error[:MAX_ERROR_CHARS]),
        (H_RETRIABLE, None if e.retriable is None else "true" if e.retriable else "false"),
        (H_ATTEMPTS, str(e.attempts) if e.kind == DEAD else None),
        (H_PROJECTION, e.projection),
    ]
    out += [(name, value.encode("utf-8", "replace")) for name, value in optional if value]
    if e.first_failed_at is not None:
        out.append((H_FIRST_FAILED_AT, _time(e.first_failed_at)))
    if e.at is not None:
        out.append((H_AT, _time(e.at)))
    return out


# The projector's first format: header -> this vocabulary's name for the same thing.
_PROJECTOR_V1 = {
    "parley.error": H_ERROR_TYPE,
    "parley.error.stage": H_REASON,
    "parley.error.detail": H_ERROR,
    "parley.origin.topic": H_TOPIC,
    "parley.origin.partition": H_PARTITION,
    "parley.origin.offset": H_OFFSET,
    "parley.origin.timestamp_ms": H_TIMESTAMP_MS,
    "parley.consumer": H_GROUP,
    "parley.projection": H_PROJECTION,
}


def upcast_projector_v1(headers: dict[str, str]) -> dict[str, str]:
    """Lift a letter of the projector's first format (``parley.origin.*``) to this one:
    every letter it wrote was a dead one, after one attempt."""
    if H_KIND in headers or "parley.origin.topic" not in headers:
        return headers
    out = {_PROJECTOR_V1.get(name, name): value for name, value in headers.items()}
    out[H_KIND] = DEAD
    out.setdefault(H_ATTEMPTS, "1")
    return out


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _reason(text: str | None) -> Reason | None:
    match text:
        case "decode" | "apply" | "handle":
            return text
    return None


def _bool(text: str | None) -> bool | None:
    return None if text is None else text == "true"


def decode(dlq_offset: int, key: bytes | None, headers: Iterable[tuple[str, bytes]],
           value: bytes | None = None, *, keep_value: bool = False
           ) -> DeadLetterEntry | Resolution | None:
    """Read one dead-letter record, in any format Parley wrote: an entry, a resolution, or
    None for a record this version does not understand (ignored, never fatal)."""
    h = upcast_projector_v1({name: raw.decode(errors="replace") for name, raw in headers})
    kind = h.get(H_KIND)
    k = key.decode(errors="replace") if key is not None else ""
    try:
        if kind == RESOLVED:
            return Resolution(group=h.get(H_GROUP, ""), topic=h[H_TOPIC], key=k,
                              action=h.get(H_ACTION, "?"), upto=int(h[H_UPTO]),
                              at=_parse_time(h.get(H_AT)))
        if kind in (DEAD, PARKED):
            stamp = h.get(H_TIMESTAMP_MS)
            return DeadLetterEntry(
                kind=DEAD if kind == DEAD else PARKED, group=h.get(H_GROUP, ""), key=k, dlq_offset=dlq_offset,
                origin=Position(h[H_TOPIC], int(h[H_PARTITION]), int(h[H_OFFSET])),
                reason=_reason(h.get(H_REASON)),
                origin_timestamp_ms=int(stamp) if stamp else None,
                event_id=h.get(H_EVENT_ID), error_type=h.get(H_ERROR_TYPE),
                error=h.get(H_ERROR), retriable=_bool(h.get(H_RETRIABLE)),
                attempts=int(h.get(H_ATTEMPTS, "0")),
                first_failed_at=_parse_time(h.get(H_FIRST_FAILED_AT)),
                at=_parse_time(h.get(H_AT)), projection=h.get(H_PROJECTION),
                value=value if keep_value else None)
    except (KeyError, ValueError):
        return None
    return None

"""The dead-letter topic as a journal, and the parked-key state folded from it (pure).

Every consumer group ``NAME`` has one dead-letter topic, ``<prefix>.dlq.NAME`` (one
partition, infinite retention, keyed by the failed record's key). It holds three kinds of
record, told apart by the ``parley-dlq-kind`` header:

``dead``
    an event whose handler failed for good (non-retriable error, or retry budget spent). The
    value is the original record's value; headers name the error, the attempts and the origin
    ``topic:partition:offset``.
``parked``
    a later event of the same key, held back so that the key's order is never broken. Same
    value and origin headers; ``parley-parked-behind`` names the dead event's origin.
``resolved``
    written by ``parley consumers dlq NAME replay|skip``: every entry of that key with a DLQ
    offset up to ``parley-dlq-upto`` is dealt with (``parley-dlq-action``: replay or skip).

A key is *parked* while it has entries not covered by a ``resolved`` record. The state is a
pure fold of the topic, so it survives restarts, is shared by every member of the group (on
any machine) and needs no other store; each member rebuilds it on start by reading the topic,
which stays small (it holds failures, not traffic).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import msgspec

from contracts.position import Position

__all__ = ["DEAD", "PARKED", "RESOLVED", "DlqEntry", "ParkedState", "entry_from_record",
           "headers_for_failure", "headers_for_parked", "headers_for_resolution"]

DEAD = "dead"
PARKED = "parked"
RESOLVED = "resolved"
H_KIND = "parley-dlq-kind"
H_GROUP = "parley-dlq-group"
H_TOPIC = "parley-origin-topic"
H_PARTITION = "parley-origin-partition"
H_OFFSET = "parley-origin-offset"
H_EVENT_ID = "parley-event-id"
H_ERROR_TYPE = "parley-error-type"
H_ERROR = "parley-error"
H_RETRIABLE = "parley-error-retriable"
H_ATTEMPTS = "parley-attempts"
H_AT = "parley-dlq-at"
H_BEHIND = "parley-parked-behind"
H_ACTION = "parley-dlq-action"
H_UPTO = "parley-dlq-upto"
MAX_ERROR_CHARS = 500

Headers = list[tuple[str, bytes]]
ParkKey = tuple[str, str]
"""(origin topic, record key): the unit of ordering, hence of parking."""


class DlqEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One ``dead`` or ``parked`` record of a dead-letter topic."""

    dlq_offset: int
    kind: str
    origin: Position
    key: str
    event_id: str | None = None
    error_type: str | None = None
    error: str | None = None
    attempts: int = 0
    at: str | None = None
    value: bytes | None = None  # kept only by the CLI, which replays it


def _h(value: str | int) -> bytes:
    return str(value).encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _origin(group: str, origin: Position, event_id: str | None) -> Headers:
    out = [(H_GROUP, _h(group)), (H_TOPIC, _h(origin.topic)),
           (H_PARTITION, _h(origin.partition)), (H_OFFSET, _h(origin.offset)), (H_AT, _h(_now()))]
    if event_id:
        out.append((H_EVENT_ID, _h(event_id)))
    return out


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


def headers_for_failure(group: str, origin: Position, event_id: str | None, exc: BaseException,
                        attempts: int, retriable: bool, secrets: Sequence[str] = ()) -> Headers:
    """Headers of a ``dead`` entry. The error text is truncated and scrubbed of secrets."""
    message = redact(str(exc), secrets)[:MAX_ERROR_CHARS]
    return [(H_KIND, _h(DEAD)), *_origin(group, origin, event_id),
            (H_ERROR_TYPE, _h(type(exc).__name__)), (H_ERROR, message.encode()),
            (H_RETRIABLE, _h("true" if retriable else "false")), (H_ATTEMPTS, _h(attempts))]


def headers_for_parked(group: str, origin: Position, event_id: str | None) -> Headers:
    return [(H_KIND, _h(PARKED)), *_origin(group, origin, event_id)]


def headers_for_resolution(group: str, topic: str, action: str, upto: int) -> Headers:
    return [(H_KIND, _h(RESOLVED)), (H_GROUP, _h(group)), (H_TOPIC, _h(topic)),
            (H_ACTION, _h(action)), (H_UPTO, _h(upto)), (H_AT, _h(_now()))]


def entry_from_record(dlq_offset: int, key: bytes | None, headers: Iterable[tuple[str, bytes]],
                      value: bytes | None, keep_value: bool
                      ) -> DlqEntry | tuple[ParkKey, str, int] | None:
    """Decode one DLQ record: an entry, a resolution ``(park key, action, upto)``, or None
    for a record this version does not understand (ignored, never fatal)."""
    h = {k: v.decode(errors="replace") for k, v in headers}
    kind = h.get(H_KIND)
    k = key.decode(errors="replace") if key is not None else ""
    try:
        if kind == RESOLVED:
            return (h[H_TOPIC], k), h.get(H_ACTION, "?"), int(h[H_UPTO])
        if kind in (DEAD, PARKED):
            return DlqEntry(
                dlq_offset=dlq_offset, kind=kind, key=k,
                origin=Position(h[H_TOPIC], int(h[H_PARTITION]), int(h[H_OFFSET])),
                event_id=h.get(H_EVENT_ID), error_type=h.get(H_ERROR_TYPE),
                error=h.get(H_ERROR), attempts=int(h.get(H_ATTEMPTS, "0")), at=h.get(H_AT),
                value=value if keep_value else None)
    except (KeyError, ValueError):
        return None
    return None


class ParkedState:
    """Unresolved entries per (topic, key). Idempotent: applying a record twice (the writer's
    own copy, then the tail's) changes nothing; a resolution covers entries written before it
    even if they are applied after it."""

    def __init__(self) -> None:
        #: unresolved entries per parked key, by DLQ offset (empty dict: nothing parked)
        self.by_key: dict[ParkKey, dict[int, DlqEntry]] = {}
        self._resolved: dict[ParkKey, int] = {}

    def add(self, entry: DlqEntry) -> None:
        pk = (entry.origin.topic, entry.key)
        if entry.dlq_offset <= self._resolved.get(pk, -1):
            return
        self.by_key.setdefault(pk, {})[entry.dlq_offset] = entry

    def resolve(self, pk: ParkKey, upto: int) -> None:
        self._resolved[pk] = max(upto, self._resolved.get(pk, -1))
        entries = self.by_key.get(pk)
        if entries is None:
            return
        for off in [o for o in entries if o <= upto]:
            del entries[off]
        if not entries:
            del self.by_key[pk]

    def apply(self, decoded: DlqEntry | tuple[ParkKey, str, int] | None) -> None:
        if isinstance(decoded, DlqEntry):
            self.add(decoded)
        elif decoded is not None:
            self.resolve(decoded[0], decoded[2])

    def is_parked(self, topic: str, key: str) -> bool:
        return (topic, key) in self.by_key

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def keys(self) -> list[ParkKey]:
        return sorted(self.by_key)

    def entries(self, pk: ParkKey | None = None) -> list[DlqEntry]:
        """Unresolved entries (of one key, or all) in DLQ order."""
        groups = [self.by_key.get(pk, {})] if pk else list(self.by_key.values())
        return sorted((e for g in groups for e in g.values()), key=lambda e: e.dlq_offset)

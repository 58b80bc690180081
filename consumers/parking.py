"""The parked-key state of a consumer group, folded from its dead-letter topic (pure).

The topic's records (``dead``, ``parked``, ``resolved``) are in the one dead-letter format of
:mod:`contracts.dead_letter`. A key is *parked* while it has entries not covered by a
``resolved`` record. The state is a pure fold of the topic, so it survives restarts, is shared
by every member of the group (on any machine) and needs no other store; each member rebuilds
it on start by reading the topic, which stays small (it holds failures, not traffic).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from consumers.api import ConsumedEvent
from contracts.dead_letter import DEAD, PARKED, DeadLetterEntry, Resolution
from parley.secrets import mask_secrets

__all__ = ["ParkKey", "ParkedState", "dead_entry", "parked_entry"]

ParkKey = tuple[str, str]
"""(origin topic, record key): the unit of ordering, hence of parking."""


def dead_entry(group: str, event: ConsumedEvent, exc: BaseException, *, attempts: int,
               retriable: bool, first_failed_at: datetime, at: datetime,
               secrets: Sequence[str] = ()) -> DeadLetterEntry:
    """The dead entry of ``event``, whose handler failed for good with ``exc``. The error text
    is scrubbed of ``secrets`` (and cut to the format's limit when encoded)."""
    return DeadLetterEntry(
        kind=DEAD, group=group, origin=event.position, key=event.key or "",
        event_id=_event_id(event), reason="handle", error_type=type(exc).__name__,
        error=mask_secrets(str(exc), secrets), retriable=retriable, attempts=attempts,
        first_failed_at=first_failed_at, at=at)


def parked_entry(group: str, event: ConsumedEvent, at: datetime) -> DeadLetterEntry:
    """The parked entry of ``event``, held behind its key's dead entry."""
    return DeadLetterEntry(kind=PARKED, group=group, origin=event.position,
                           key=event.key or "", event_id=_event_id(event), at=at)


def _event_id(event: ConsumedEvent) -> str | None:
    try:
        return event.event_id
    except Exception:  # noqa: BLE001 - an undecodable record has no id; its origin identifies it
        return None


class ParkedState:
    """Unresolved entries per (topic, key). Idempotent: applying a record twice (the writer's
    own copy, then the tail's) changes nothing; a resolution covers entries written before it
    even if they are applied after it."""

    def __init__(self) -> None:
        #: unresolved entries per parked key, by DLQ offset (empty dict: nothing parked)
        self.by_key: dict[ParkKey, dict[int, DeadLetterEntry]] = {}
        self._resolved: dict[ParkKey, int] = {}

    def add(self, entry: DeadLetterEntry) -> None:
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

    def apply(self, decoded: DeadLetterEntry | Resolution | None) -> None:
        """Fold in one decoded record (:func:`contracts.dead_letter.decode`)."""
        if isinstance(decoded, DeadLetterEntry):
            self.add(decoded)
        elif decoded is not None:
            self.resolve((decoded.topic, decoded.key), decoded.upto)

    def is_parked(self, topic: str, key: str) -> bool:
        return (topic, key) in self.by_key

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def keys(self) -> list[ParkKey]:
        return sorted(self.by_key)

    def entries(self, pk: ParkKey | None = None) -> list[DeadLetterEntry]:
        """Unresolved entries (of one key, or all) in DLQ order."""
        groups = [self.by_key.get(pk, {})] if pk else list(self.by_key.values())
        return sorted((e for g in groups for e in g.values()), key=lambda e: e.dlq_offset)

"""Splitting a fetched batch into per-key lanes (pure but for one log line).

A *lane* is one key's events of the batch, in offset order, then any replayed copies of that
key (after its live events): the runner hands a lane's events over one at a time and runs
different lanes concurrently, which is what keeps per-key order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition

from consumers.api import ConsumedEvent, ReplayedEvent

if TYPE_CHECKING:
    from parley.privacy.ring import KeyRing

__all__ = ["Lane", "copy_event", "split_lanes"]

log = logging.getLogger("parley.consumers.runner")

Lane = list[ConsumedEvent]


def copy_event(record: Any, consumer: str, ring: KeyRing | None = None) -> ConsumedEvent:
    """A record of the group's replay topic as the original event; one without a valid origin
    header (not a copy Parley wrote) is handed over as it is."""
    try:
        return ReplayedEvent(record, ring)
    except Exception:  # noqa: BLE001 - not a copy Parley wrote: handled as it is
        log.warning("replay topic record without a valid origin header",
                    extra={"consumer": consumer, "offset": record.offset})
        return ConsumedEvent(record, ring)


def split_lanes(batch: Mapping[TopicPartition, Sequence[Any]], replay_topic: str,
                consumer: str, skip: Mapping[TopicPartition, int] | None = None,
                ring: KeyRing | None = None) -> list[Lane]:
    """The lanes of ``batch`` (aiokafka records per partition), leaving out the first
    ``skip[tp]`` records of each partition (already done in order)."""
    lanes: list[Lane] = []
    copies: list[Any] = []
    for tp, records in batch.items():
        if skip:
            records = records[skip.get(tp, 0):]
        if tp.topic == replay_topic:
            copies.extend(records)
            continue
        by_key: dict[bytes, Lane] = {}
        for r in records:
            k = r.key
            if k is None:
                lanes.append([ConsumedEvent(r, ring)])  # no key, no order to keep: own lane
                continue
            lane = by_key.get(k)
            if lane is None:
                by_key[k] = lane = []
                lanes.append(lane)
            lane.append(ConsumedEvent(r, ring))
    if copies:
        _add_copies(lanes, (copy_event(r, consumer, ring) for r in copies))
    return lanes


def _add_copies(lanes: list[Lane], copies: Iterable[ConsumedEvent]) -> None:
    """Put replayed copies in the lane of their key (after its live events), so that a key's
    copies and its live events are handled one at a time, in one order."""
    by_key = {(lane[0].topic, lane[0].key): lane for lane in lanes if lane[0].key is not None}
    for ev in copies:
        if ev.key is None:
            lanes.append([ev])
            continue
        lane = by_key.get((ev.topic, ev.key))
        if lane is None:
            lane = by_key[(ev.topic, ev.key)] = []
            lanes.append(lane)
        lane.append(ev)

"""Which offsets of a fetched batch may be committed: per partition, one past the end of the
contiguous prefix of done events (pure).

The runner first takes a batch in log order, one event at a time, while every handler call
returns without waiting (the in-order path): it records, per partition, how many leading
records are done (``in_order``). Whatever is left it splits into per-key *lanes* (each lane:
one key's events, in offset order, all from one partition, then any replayed copies of that
key) and records, per lane, how many of its events are done. Either way that is one integer
per partition or lane, not a write per event, which matters on the hot path. When every
record is done the answer is each partition's last offset + 1; otherwise (a stop or a failure
mid-batch) the done prefix of each partition is worked out from both, by where each event
was fetched. Offsets need not be consecutive (transaction markers leave gaps in
read_committed topics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Generic, Protocol, TypeVar

from aiokafka import TopicPartition

__all__ = ["BatchProgress"]


class _HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


class _InPartition(Protocol):
    @property
    def fetched(self) -> tuple[str, int, int]:
        """(topic, partition, offset) of the record as fetched (a replayed copy's own)."""
        ...


E = TypeVar("E", bound=_InPartition)


class BatchProgress(Generic[E]):
    """Progress of one fetched batch: ``batch[tp][:in_order[tp]]`` were done in log order,
    then of the rest, split into lanes, ``lanes[i][:lane_done[i]]`` are done."""

    def __init__(self, batch: Mapping[TopicPartition, Sequence[_HasOffset]],
                 lanes: Iterable[Sequence[E]] = ()) -> None:
        self.batch = batch
        self.in_order: dict[TopicPartition, int] = {}
        self.lanes: list[Sequence[E]] = []
        self.lane_done: list[int] = []
        self.add_lanes(lanes)

    def add_lanes(self, lanes: Iterable[Sequence[E]]) -> None:
        """Lanes for records the in-order path left (none done yet)."""
        before = len(self.lanes)
        self.lanes.extend(lanes)
        self.lane_done.extend([0] * (len(self.lanes) - before))

    def complete(self) -> bool:
        done = sum(self.in_order.values()) + sum(self.lane_done)
        return done == sum(len(records) for records in self.batch.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Next offset to read per partition, for partitions whose first record is done."""
        if self.complete():
            return {tp: records[-1].offset + 1 for tp, records in self.batch.items() if records}
        done = {ev.fetched
                for lane, n in zip(self.lanes, self.lane_done, strict=True) for ev in lane[:n]}
        out: dict[TopicPartition, int] = {}
        for tp, records in self.batch.items():
            first = self.in_order.get(tp, 0)
            last = records[first - 1].offset if first else None
            for r in islice(records, first, None):
                if (tp.topic, tp.partition, r.offset) not in done:
                    break
                last = r.offset
            if last is not None:
                out[tp] = last + 1
        return out

"""Which offsets of a fetched batch may be committed: per partition, one past the end of the
contiguous prefix of done events (pure).

The runner splits a batch into per-key *lanes* (each lane: one key's events, in offset
order, all from one partition, then any replayed copies of that key) and records, per lane,
how many of its events are done. That is one integer per lane, not a write per event, which
matters on the hot path. When every lane is complete the answer is each partition's last
offset + 1; otherwise (a stop or a failure mid-batch) the done prefix of each partition is
worked out from the lanes, by where each event was fetched. Offsets need not be consecutive
(transaction markers leave gaps in read_committed topics).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """Progress of one fetched batch. ``lanes[i][:lane_done[i]]`` are the done events."""

    def __init__(self, batch: Mapping[TopicPartition, Sequence[_HasOffset]],
                 lanes: Sequence[Sequence[E]]) -> None:
        self.batch = batch
        self.lanes = lanes
        self.lane_done = [0] * len(lanes)

    def complete(self) -> bool:
        return sum(self.lane_done) == sum(len(records) for records in self.batch.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Next offset to read per partition, for partitions whose first record is done."""
        if self.complete():
            return {tp: records[-1].offset + 1 for tp, records in self.batch.items() if records}
        done = {ev.fetched
                for lane, n in zip(self.lanes, self.lane_done, strict=True) for ev in lane[:n]}
        out: dict[TopicPartition, int] = {}
        for tp, records in self.batch.items():
            last = None
            for r in records:
                if (tp.topic, tp.partition, r.offset) not in done:
                    break
                last = r.offset
            if last is not None:
                out[tp] = last + 1
        return out

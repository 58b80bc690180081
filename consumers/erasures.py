"""The consumer runtime's share of the erasure ledger (docs/privacy.md).

After a batch, before its offsets are committed, the runner appends to the ledger an entry
for every record it *did* (handled, filtered out or dead-lettered) that announces an erasure
(:data:`contracts.forgotten.ERASURE_HEADER`: a forgotten record on an event topic, or an
erased chat's or visitor's state on a state topic). Only headers are read, so batches
without an erasure cost a truthiness test per record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition

from contracts.forgotten import erasure_header_of
from contracts.topics import Topics

__all__ = ["erasures_done"]


def erasures_done(batch: Mapping[TopicPartition, Sequence[Any]],
                  committable: Mapping[TopicPartition, int], topics: Topics
                  ) -> list[tuple[str, str, str]]:
    """(erasure id, aggregate kind, id) of each record of ``batch`` that announces an
    erasure and lies below its partition's ``committable`` offset (it is done)."""
    out: list[tuple[str, str, str]] = []
    for tp, records in batch.items():
        done_below = committable.get(tp)
        if done_below is None:
            continue
        for rec in records:
            if not rec.headers or rec.offset >= done_below:
                continue
            erasure = erasure_header_of(rec.headers)
            kind = topics.aggregate_of(tp.topic) or topics.state_kind_of(tp.topic)
            if erasure is not None and kind is not None and rec.key is not None:
                out.append((erasure, kind, rec.key.decode(errors="replace")))
    return out

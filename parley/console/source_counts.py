"""Webhooks accepted per source over the last hour, counted from the event topics: every
receiver process appends each webhook it accepts there (one record, whose envelope names its
source), so the count covers every receiver wherever the console runs — unlike a process's
own ``parley_receiver_requests`` counters, which a ``parley projector`` pod does not have.
(Rejected webhooks come from the rejections topic, :mod:`parley.console.rejection_log`.)

The topics are read incrementally: each refresh reads only the records appended since the
last one (from the offset at the start of the window after a pause), at most a budget of
records per refresh, into per-minute counts; so a busy hour is counted over a few refreshes
(``complete`` says when it is) and an idle console costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import msgspec
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts.envelope import decode_envelope
from contracts.errors import ContractError
from parley.console.kafka_view import KafkaView

__all__ = ["Accepted", "SourceCounts"]

_BUCKET_S = 60


class _SourceOnly(msgspec.Struct):
    source: str


_SOURCE = msgspec.json.Decoder(_SourceOnly)


def source_of(value: bytes | None) -> str | None:
    """The source named by a record of an event topic (None if it names none)."""
    if not value:
        return None
    try:
        return _SOURCE.decode(value).source  # the envelope's field alone: the body is skipped
    except msgspec.DecodeError:
        pass
    try:  # an older envelope, upcast
        return decode_envelope(value).source
    except ContractError:
        return None


@dataclass(frozen=True)
class Accepted:
    """Records appended per source since ``since_s`` (epoch seconds, to the minute);
    ``complete`` False while older records of the window are still being counted."""

    per_source: dict[str, int]
    since_s: float
    complete: bool


class SourceCounts:
    """The per-minute counts and where each partition was read to (see the module docstring)."""

    def __init__(self, *, window_s: float = 3600.0, budget: int = 20_000,
                 budget_s: float = 1.0) -> None:
        self.window_s = window_s
        self._budget, self._budget_s = budget, budget_s
        self._next: dict[TopicPartition, int] = {}
        self._minutes: dict[int, Counter[str]] = {}
        self._complete = False
        self._lock = asyncio.Lock()

    async def refresh(self, kafka: KafkaView, topics: tuple[str, ...],
                      now_s: float | None = None) -> Accepted:
        """Count what was appended since the last refresh; the counts of the window."""
        now_s = time.time() if now_s is None else now_s
        first_minute = int((now_s - self.window_s) // _BUCKET_S) + 1
        since_s = first_minute * _BUCKET_S
        async with self._lock:  # one refresh at a time: each reads from where the last stopped
            fresh: dict[int, Counter[str]] = {}

            def visit(record: ConsumerRecord[bytes, bytes]) -> None:
                source = source_of(record.value)
                if source is not None:
                    minute = record.timestamp // (_BUCKET_S * 1000)
                    fresh.setdefault(minute, Counter())[source] += 1

            # Counted into ``fresh`` and kept only if the read finished: a read cut short
            # (Kafka away, the panel's deadline) is read again from the same offsets.
            self._next, self._complete = await kafka.tail(
                topics, since_s, self._next, visit, budget=self._budget, budget_s=self._budget_s)
            for minute, counts in fresh.items():
                self._minutes.setdefault(minute, Counter()).update(counts)
            for minute in [m for m in self._minutes if m < first_minute]:
                del self._minutes[minute]
            total: Counter[str] = Counter()
            for counts in self._minutes.values():
                total.update(counts)
            return Accepted(dict(sorted(total.items())), since_s, self._complete)

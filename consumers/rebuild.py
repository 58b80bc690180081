"""``parley consumers rebuild NAME``: rebuild a consumer's state into a shadow copy beside
the live one, then switch (the steps are in :mod:`consumers.rebuildable`).

The shadow reads the consumer's own topics with no consumer group, from the beginning to
the end offsets read at the start, then once more to the end offsets read when those were
reached, so the switch lands close to the head of the log. Progress (records, records/s,
ETA) is printed every ``progress_every_s``. Meanwhile the live group keeps consuming into
the live copy and reads are served from it; after the switch the group resumes from the
shadow's offsets, so the records between the shadow's end and the switch are applied to the
new copy once. A failure or an interrupt before the switch leaves the live copy live and
drops the shadow if it can (else the next rebuild does).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from consumers.api import ConsumedEvent, Consumer
from consumers.errors import ConsumerError
from consumers.groups import active_members, partitions
from contracts.topics import Topics
from parley.kafka.clients import make_consumer
from parley.kafka.retry import retrying
from parley.privacy.ring import KeyRing
from parley.privacy.seal import subject_in
from parley.settings import KafkaSettings

__all__ = ["ConsumerRebuildReport", "rebuild_consumer"]


@dataclass(frozen=True, kw_only=True)
class ConsumerRebuildReport:
    copy: str
    previous: str
    records: int
    seconds: float  # from the start to the switch
    handed_over: bool  # whether the live group resumed from the new copy before the old went


class _Progress:
    def __init__(self, label: str, out: TextIO, every_s: float) -> None:
        self.label, self.out, self.every_s = label, out, every_s
        self.total = self.done = 0
        self.t0 = self.last = time.monotonic()

    def add(self, n: int, *, force: bool = False) -> None:
        self.done += n
        now = time.monotonic()
        if force or now - self.last >= self.every_s:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            left = max(self.total - self.done, 0)
            eta = f"{left / rate:.0f} s" if rate > 0 else "?"
            print(f"{self.label}: {self.done}/{self.total} records, {rate:,.0f} records/s, "
                  f"ETA {eta}", file=self.out, flush=True)


async def rebuild_consumer(consumer: Consumer, kafka: KafkaSettings, topics: Topics, *,
                           out: TextIO | None = None, progress_every_s: float = 2.0,
                           max_records: int = 5000, handover_timeout_s: float = 30.0,
                           before_switch: Callable[[], Awaitable[None]] | None = None,
                           ring: KeyRing | None = None) -> ConsumerRebuildReport:
    """Rebuild ``consumer``'s state into a new copy and make it live (module doc).
    ``before_switch`` (tests) runs once the shadow has caught up, just before the switch.
    ``ring``: opens sealed envelopes (docs/privacy.md); without one, handlers see facts."""
    state = consumer.rebuildable
    if state is None:
        raise ConsumerError(f"consumer {consumer.name!r} keeps no state Parley can rebuild "
                            "(its Consumer has no `rebuildable`): nothing to do")
    out = out or sys.stderr
    copy = await state.create_shadow()  # Step 1
    label = f"rebuild {consumer.name} {copy}"
    progress = _Progress(label, out, progress_every_s)
    switched = False
    try:
        offsets = await _fill(consumer, kafka, topics, progress, max_records, ring)  # Step 2
        progress.add(0, force=True)
        if before_switch is not None:
            await before_switch()
        previous = await state.switch(offsets)  # Step 3
        switched = True
        seconds = time.monotonic() - progress.t0
    finally:
        if not switched:
            # Best effort: the next rebuild drops it anyway; the error that matters is raised.
            with contextlib.suppress(Exception):
                await state.drop(copy)
    print(f"{label}: live copy switched {previous} -> {copy}", file=out, flush=True)
    # Step 4 happens in the live group; Step 5 once it has taken the handoff (bounded; not
    # waited for when no member runs).
    running = await _members(kafka, topics.group_id(consumer.name))
    deadline = time.monotonic() + (handover_timeout_s if running else 0.0)
    # Polled: the members that take the handoff are other processes.
    while (left := await state.handoff_left()) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    if left:
        print(f"{label}: {left} partition(s) not resumed yet by a running member of group "
              f"{topics.group_id(consumer.name)}; members resume from {copy} when they start",
              file=out, flush=True)
    await state.drop(previous)
    print(f"{label}: dropped {previous}", file=out, flush=True)
    return ConsumerRebuildReport(copy=copy, previous=previous, records=progress.done,
                                 seconds=seconds, handed_over=not left)


async def _members(kafka: KafkaSettings, group: str, timeout_s: float = 10.0) -> int:
    """The group's member count; 1 (wait for the handoff) if Kafka cannot say in time (a new
    cluster's group coordinator may not exist yet)."""
    try:
        return await retrying(lambda: active_members(kafka, group), timeout_s)
    except KafkaError:
        return 1


async def _fill(consumer: Consumer, kafka: KafkaSettings, topics: Topics, progress: _Progress,
                max_records: int, ring: KeyRing | None) -> dict[TopicPartition, int]:
    """Step 2: every partition of the consumer's topics into the shadow; the next offsets."""
    state = consumer.rebuildable
    assert state is not None
    tps = await partitions(kafka, list(consumer.topic_names(topics)))
    c = make_consumer(kafka, group_id=None, enable_auto_commit=False,
                      max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    try:
        c.assign(tps)
        if tps:
            await c.seek_to_beginning(*tps)
        begin = await c.beginning_offsets(tps) if tps else {}
        end = await c.end_offsets(tps) if tps else {}
        progress.total = sum(end[tp] - begin[tp] for tp in tps)
        print(f"{progress.label}: replaying {progress.total} records from {len(tps)} "
              f"partition(s) into a shadow copy; the live copy keeps serving",
              file=progress.out, flush=True)
        refreshed = False
        while True:
            positions = {tp: await c.position(tp) for tp in tps}
            if all(positions[tp] >= end[tp] for tp in tps):
                if refreshed:
                    return positions
                refreshed = True  # once more, to the end as it is now
                end = await c.end_offsets(tps) if tps else {}
                progress.total = progress.done + sum(max(0, end[tp] - positions[tp]) for tp in tps)
                continue
            batch = await c.getmany(timeout_ms=500, max_records=max_records)
            # Records past ``end`` are applied too: the positions read above say what the
            # shadow holds, whatever the batch boundaries.
            if ring is not None:  # an unreachable key store fails the rebuild: run it again
                await ring.load(s for records in batch.values() for r in records
                                if (s := subject_in(r.value)) is not None)
            events = [ConsumedEvent(r, ring) for records in batch.values() for r in records]
            wanted = [ev for ev in events if consumer.wants(ev)]
            if wanted:
                await state.apply_shadow(wanted)
            progress.add(len(events))
    finally:
        await c.stop()

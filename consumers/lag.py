"""Consumer lag, per partition, in records and in seconds of event time; stuck detection.

- ``lag_records`` = end offset - committed offset (the whole partition if nothing committed).
- ``lag_seconds`` = now - ``occurred_at`` of the next unconsumed record (the record at the
  committed offset); 0 when caught up. Event time, not broker time: a consumer that replays
  last year's history reports a lag of a year until it is through it.
- ``stuck`` = lag > 0 and the committed offset has not moved for ``stuck_after_s`` (a poison
  retry loop, a dead dependency, a crashed member). Progress is remembered between
  refreshes by :class:`StuckDetector` (pure), so stuck needs two observations a window apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers.metrics import ConsumerMetrics
from parley.kafka.clients import make_admin, make_consumer
from parley.settings import KafkaSettings

__all__ = ["GroupLag", "LagMonitor", "PartitionLag", "StuckDetector", "WatchedGroup"]

log = logging.getLogger("parley.consumers.lag")


class PartitionLag(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    partition: int
    committed: int | None
    end: int
    lag_records: int
    lag_seconds: float
    stuck: bool = False


class GroupLag(msgspec.Struct, frozen=True, kw_only=True):
    consumer: str
    group: str
    lag_records: int
    lag_seconds: float
    stuck: bool
    partitions: list[PartitionLag]
    measured_at: float


@dataclass(frozen=True)
class WatchedGroup:
    consumer: str
    group: str
    topics: tuple[str, ...]
    #: This group's ``stuck_after_s`` (``[consumers.NAME]``); None: the monitor's.
    stuck_after_s: float | None = None


class StuckDetector:
    """Remembers when each partition's committed offset last moved (pure; time passed in)."""

    def __init__(self, stuck_after_s: float) -> None:
        self.stuck_after_s = stuck_after_s
        self._since: dict[tuple[str, str, int], tuple[int | None, float]] = {}

    def observe(self, group: str, topic: str, partition: int, committed: int | None,
                lag_records: int, now: float, stuck_after_s: float | None = None) -> bool:
        """Whether the partition is stuck (after ``stuck_after_s``, else the detector's)."""
        key = (group, topic, partition)
        last = self._since.get(key)
        if lag_records <= 0 or last is None or last[0] != committed:
            self._since[key] = (committed, now)
            return False
        return now - last[1] >= (self.stuck_after_s if stuck_after_s is None else stuck_after_s)


class LagMonitor:
    """Measures the lag of some consumer groups; sets the gauges; keeps the last result."""

    def __init__(self, k: KafkaSettings, groups: Sequence[WatchedGroup],
                 metrics: ConsumerMetrics | None = None, *, stuck_after_s: float = 300.0,
                 interval_s: float = 15.0) -> None:
        self._k = k
        self.groups = list(groups)
        self._metrics = metrics
        self._interval_s = interval_s
        self._detector = StuckDetector(stuck_after_s)
        self.latest: dict[str, GroupLag] = {}
        self._admin: AIOKafkaAdminClient | None = None
        self._peeker: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._admin = make_admin(self._k)
        await self._admin.start()
        self._peeker = make_consumer(self._k, group_id=None, enable_auto_commit=False)
        await self._peeker.start()

    async def close(self) -> None:
        if self._peeker is not None:
            await self._peeker.stop()
        if self._admin is not None:
            await self._admin.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``interval_s`` until ``stop``; a failed refresh is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.refresh()
            except KafkaError as exc:
                if not exc.retriable:
                    log.warning("lag refresh failed", exc_info=True)
                else:
                    # Expected now and then (the group coordinator of a new cluster is still
                    # being elected, a broker restarts): one line, the next refresh retries.
                    log.info("lag refresh failed, will retry: %s", exc)
            except Exception:
                log.warning("lag refresh failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval_s)

    async def refresh(self) -> list[GroupLag]:
        async with self._lock:  # one peeking client: one measurement at a time
            return [await self.measure(g) for g in self.groups]

    async def measure(self, g: WatchedGroup) -> GroupLag:
        assert self._admin is not None and self._peeker is not None
        now = time.time()
        described = await self._admin.describe_topics(list(g.topics))
        tps = [TopicPartition(t["topic"], p["partition"]) for t in described
               for p in t["partitions"] if not t.get("error_code")]
        committed = {tp: m.offset for tp, m in
                     (await self._admin.list_consumer_group_offsets(g.group, partitions=tps)
                      ).items() if m.offset >= 0}
        ends = await self._peeker.end_offsets(tps)
        starts = await self._peeker.beginning_offsets(tps)
        nexts = {tp: committed.get(tp, starts[tp]) for tp in tps}
        lagging = [tp for tp in tps if ends[tp] > nexts[tp]]
        ages = await self._ages(lagging, nexts, now)
        parts: list[PartitionLag] = []
        for tp in sorted(tps):
            lag = max(0, ends[tp] - nexts[tp])
            stuck = self._detector.observe(g.group, tp.topic, tp.partition, committed.get(tp),
                                           lag, time.monotonic(), g.stuck_after_s)
            parts.append(PartitionLag(topic=tp.topic, partition=tp.partition,
                                      committed=committed.get(tp), end=ends[tp],
                                      lag_records=lag, lag_seconds=ages.get(tp, 0.0) if lag else 0.0,
                                      stuck=stuck))
        result = GroupLag(consumer=g.consumer, group=g.group,
                          lag_records=sum(p.lag_records for p in parts),
                          lag_seconds=max((p.lag_seconds for p in parts), default=0.0),
                          stuck=any(p.stuck for p in parts), partitions=parts, measured_at=now)
        self.latest[g.consumer] = result
        self._export(result)
        return result

    async def _ages(self, tps: list[TopicPartition], nexts: dict[TopicPartition, int],
                    now: float) -> dict[TopicPartition, float]:
        """Event-time age of the record at each partition's next offset (one fetch)."""
        assert self._peeker is not None
        if not tps:
            return {}
        from contracts.envelope import decode_envelope

        self._peeker.assign(tps)
        for tp in tps:
            self._peeker.seek(tp, nexts[tp])
        ages: dict[TopicPartition, float] = {}
        deadline = time.monotonic() + 5.0
        while len(ages) < len(tps) and time.monotonic() < deadline:
            batch = await self._peeker.getmany(timeout_ms=300, max_records=len(tps) * 4)
            for tp, records in batch.items():
                if tp in ages or not records:
                    continue
                rec = records[0]
                try:
                    occurred = decode_envelope(rec.value).occurred_at.timestamp()
                except Exception:  # noqa: BLE001 - not an envelope: use the record timestamp
                    occurred = rec.timestamp / 1000
                ages[tp] = max(0.0, now - occurred)
                self._peeker.pause(tp)
        self._peeker.resume(*tps)
        return ages

    def _export(self, g: GroupLag) -> None:
        if self._metrics is None:
            return
        for p in g.partitions:
            labels = (g.consumer, p.topic, str(p.partition))
            self._metrics.lag_records.labels(*labels).set(p.lag_records)
            self._metrics.lag_seconds.labels(*labels).set(p.lag_seconds)
        self._metrics.stuck.labels(g.consumer).set(1 if g.stuck else 0)

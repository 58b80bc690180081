"""What the console reads from Kafka: topics and their end offsets, records appended in the
last hour (offsets by time, and the records themselves per source), each group's lag and
members, a chat's records by offset, the rejections topic, dead-letter topics. One admin
client and one reading consumer (no group) per process, started on first use, started again
after a failure (so Kafka being away costs each panel one failed attempt, not a hung page)
and after :attr:`KafkaView.max_age_s` (so no connection outlives a broker's address change
or a rotated credential by long); calls take turns on them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from consumers.dlq import follow_until
from consumers.lag import GroupLag, LagMonitor, WatchedGroup
from consumers.parking import ParkedState
from contracts.dead_letter import DeadLetterEntry
from contracts.position import Position
from contracts.topics import Topics
from parley.console.groups import GroupInfo
from parley.console.rejection_log import RejectionReport, report_from
from parley.kafka.clients import make_admin, make_consumer
from parley.settings import KafkaSettings

__all__ = ["GroupStatus", "KafkaView", "TopicEnds"]

log = logging.getLogger("parley.console")


@dataclass(frozen=True)
class TopicEnds:
    """One topic: its partitions' end offsets (records ever appended, compaction aside)."""

    topic: str
    ends: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.ends)


@dataclass(frozen=True)
class GroupStatus:
    """One group's lag (:class:`consumers.lag.GroupLag`) and its members right now."""

    info: GroupInfo
    lag: GroupLag
    members: int
    state: str


class KafkaView:
    """Kafka as the overview shows it (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings, prefix: str, groups: Sequence[GroupInfo], *,
                 stuck_after_s: float = 300.0, max_age_s: float = 600.0) -> None:
        self.max_age_s = max_age_s
        self._started_at = 0.0
        self._kafka = kafka
        self._prefix = prefix
        self._groups = list(groups)
        self._stuck_after_s = stuck_after_s
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._monitor: LagMonitor | None = None
        self._lock = asyncio.Lock()
        # The last rejections report, shared by the panels and pages that ask within a second.
        self._rejections_lock = asyncio.Lock()
        self._rejections: tuple[float, tuple[str, int, float], RejectionReport] | None = None

    async def close(self) -> None:
        async with self._lock:
            await self._reset()

    async def _reset(self) -> None:
        admin, reader, monitor = self._admin, self._reader, self._monitor
        self._admin = self._reader = self._monitor = None
        with contextlib.suppress(Exception):
            if admin is not None:
                await admin.close()
        with contextlib.suppress(Exception):
            if reader is not None:
                await reader.stop()
        with contextlib.suppress(Exception):
            if monitor is not None:
                await monitor.close()

    async def _call(self, what: str, fn: Any) -> Any:
        """Run ``fn(admin, reader, monitor)`` with started clients; on any failure (or a
        cancel by the panel's deadline) the clients are closed, to start afresh next time."""
        async with self._lock:
            try:
                if self._admin is not None and time.monotonic() - self._started_at > self.max_age_s:
                    await self._reset()  # old enough: new clients (see the module docstring)
                if self._admin is None or self._reader is None or self._monitor is None:
                    self._started_at = time.monotonic()
                    self._admin = make_admin(self._kafka)
                    await self._admin.start()
                    # Short fetch waits: Kafka answers a connection's requests in order, so a
                    # fetch long-polling for 500 ms (the default) would hold up each offsets
                    # request behind it.
                    self._reader = make_consumer(self._kafka, group_id=None,
                                                 enable_auto_commit=False, fetch_max_wait_ms=10)
                    await self._reader.start()
                    self._monitor = LagMonitor(
                        self._kafka, [WatchedGroup(g.name, g.group, g.topics, g.stuck_after_s)
                                      for g in self._groups],
                        stuck_after_s=self._stuck_after_s)
                    await self._monitor.start()
                try:
                    return await fn(self._admin, self._reader, self._monitor)
                finally:
                    self._reader.assign([])  # nothing fetched in the background between calls
            except BaseException:
                log.info("console: reading %s from Kafka failed; reconnecting next time", what)
                await asyncio.shield(self._reset())
                raise

    async def topics(self) -> list[TopicEnds]:
        """Parley's topics (those under the topic prefix), with their end offsets."""
        async def read(admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, _: Any
                       ) -> list[TopicEnds]:
            names = sorted(t for t in await admin.list_topics()
                           if t.startswith(self._prefix + "."))
            described = await admin.describe_topics(names)
            tps = [TopicPartition(t["topic"], p["partition"]) for t in described
                   if not t.get("error_code") for p in t["partitions"]]
            ends = await reader.end_offsets(tps) if tps else {}
            return [TopicEnds(name, tuple(ends[tp] for tp in sorted(tps) if tp.topic == name))
                    for name in names]

        result: list[TopicEnds] = await self._call("topics", read)
        return result

    async def topic_names(self) -> set[str]:
        """Every topic's name (the cluster's, not only Parley's)."""
        async def read(admin: AIOKafkaAdminClient, _: AIOKafkaConsumer, __: Any) -> set[str]:
            return set(await admin.list_topics())

        result: set[str] = await self._call("topic names", read)
        return result

    async def rejections(self, topics: Topics, *, per_source: int, window_s: float,
                         timeout_s: float) -> RejectionReport:
        """The rejections topic's report (:func:`parley.console.rejection_log.report_from`);
        one read a second serves every caller with the same arguments (the overview's
        webhooks and rejections panels both show it)."""
        key = (topics.rejections, per_source, window_s)
        async with self._rejections_lock:
            last = self._rejections
            if last is not None and last[1] == key and time.monotonic() - last[0] < 1.0:
                return last[2]

            async def read(_: AIOKafkaAdminClient, reader: AIOKafkaConsumer, __: Any
                           ) -> RejectionReport:
                return await report_from(reader, topics, per_source=per_source,
                                         window_s=window_s, timeout_s=timeout_s)

            result: RejectionReport = await self._call("rejections", read)
            self._rejections = (time.monotonic(), key, result)
            return result

    async def appended_since(self, topics: Sequence[str], since_s: float) -> dict[str, int]:
        """Records appended to each of ``topics`` since ``since_s`` (epoch seconds), from the
        offsets for that time (Kafka's time index) and the end offsets."""
        async def read(admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, _: Any
                       ) -> dict[str, int]:
            described = await admin.describe_topics(list(topics))
            tps = [TopicPartition(t["topic"], p["partition"]) for t in described
                   if not t.get("error_code") for p in t["partitions"]]
            if not tps:
                return {}
            ends = await reader.end_offsets(tps)
            at = await reader.offsets_for_times(dict.fromkeys(tps, int(since_s * 1000)))
            out = dict.fromkeys(topics, 0)
            for tp in tps:
                found = at.get(tp)
                first = found.offset if found is not None else ends[tp]  # none newer: 0 appended
                out[tp.topic] += max(0, ends[tp] - first)
            return out

        result: dict[str, int] = await self._call("offsets by time", read)
        return result

    async def tail(self, topics: Sequence[str], since_s: float, resume: Mapping[TopicPartition, int],
                   visit: Callable[[ConsumerRecord[bytes, bytes]], None], *, budget: int,
                   budget_s: float) -> tuple[dict[TopicPartition, int], bool]:
        """Hand each record of ``topics`` appended since ``since_s`` (epoch seconds) to
        ``visit``, each partition from ``resume`` (its next offset, as returned by the last
        call) or from the first offset at that time if later, to the end; at most ``budget``
        records or ``budget_s`` seconds of reading. Returns each partition's next offset and
        whether every partition was read to its end."""
        async def read(admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, _: Any
                       ) -> tuple[dict[TopicPartition, int], bool]:
            described = await admin.describe_topics(list(topics))
            tps = [TopicPartition(t["topic"], p["partition"]) for t in described
                   if not t.get("error_code") for p in t["partitions"]]
            if not tps:
                return {}, True
            ends = await reader.end_offsets(tps)
            at = await reader.offsets_for_times(dict.fromkeys(tps, int(since_s * 1000)))
            reader.assign(tps)
            pending = set()
            for tp in tps:
                found = at.get(tp)
                start = max(resume.get(tp, 0), ends[tp] if found is None else found.offset)
                reader.seek(tp, start)
                if start < ends[tp]:
                    pending.add(tp)
            seen, deadline = 0, time.monotonic() + budget_s
            while pending and seen < budget and time.monotonic() < deadline:
                batch = await reader.getmany(*pending, timeout_ms=500,
                                             max_records=min(2000, budget - seen))
                for records in batch.values():
                    for record in records:
                        visit(record)
                    seen += len(records)
                for tp in list(pending):
                    if await reader.position(tp) >= ends[tp]:
                        pending.discard(tp)
                if not batch:
                    break  # nothing within the wait: the rest is for the next call
            return {tp: await reader.position(tp) for tp in tps}, not pending

        result: tuple[dict[TopicPartition, int], bool] = await self._call("the event topics", read)
        return result

    async def groups(self) -> list[GroupStatus]:
        """Each group's lag, stuck flag, members and state."""
        async def read(admin: AIOKafkaAdminClient, _: AIOKafkaConsumer, monitor: LagMonitor
                       ) -> list[GroupStatus]:
            lags = await monitor.refresh()
            described: dict[str, tuple[str, int]] = {}
            for info in self._groups:
                # One group per request: aiokafka misreads the second group of an answer
                # about several (it reads as error -32768 and an empty id).
                for resp in await admin.describe_consumer_groups([info.group]):
                    for g in resp.groups:  # (error_code, group_id, state, protocol_type, …, members)
                        if g[0] == 0 and g[1] == info.group:
                            described[g[1]] = (str(g[2]), len(g[5]))
            out = []
            for info, lag in zip(self._groups, lags, strict=True):
                state, members = described.get(info.group, ("unknown", 0))
                out.append(GroupStatus(info=info, lag=lag, members=members, state=state))
            return out

        result: list[GroupStatus] = await self._call("group lag", read)
        return result

    async def records(self, positions: Sequence[Position]
                      ) -> dict[Position, ConsumerRecord[bytes, bytes]]:
        """The records at ``positions`` that are still in the log, read by offset (seeking
        only where offsets are not consecutive)."""
        by_tp: dict[TopicPartition, list[int]] = {}
        for p in positions:
            by_tp.setdefault(TopicPartition(p.topic, p.partition), []).append(p.offset)

        async def read(_: AIOKafkaAdminClient, reader: AIOKafkaConsumer, __: Any
                       ) -> dict[Position, ConsumerRecord[bytes, bytes]]:
            found: dict[Position, ConsumerRecord[bytes, bytes]] = {}
            if by_tp:
                reader.assign(list(by_tp))
                starts = await reader.beginning_offsets(list(by_tp))
                ends = await reader.end_offsets(list(by_tp))
                for tp, offsets in by_tp.items():
                    wanted = sorted(o for o in set(offsets) if starts[tp] <= o < ends[tp])
                    await _read_partition(reader, tp, wanted, found)
            return found

        result: dict[Position, ConsumerRecord[bytes, bytes]] = await self._call("records", read)
        return result

    async def committed(self, groups: Sequence[str], tps: Sequence[TopicPartition]
                        ) -> dict[str, dict[TopicPartition, int]]:
        """Each group's committed offsets of ``tps`` (absent: none committed)."""
        async def read(admin: AIOKafkaAdminClient, _: AIOKafkaConsumer, __: Any
                       ) -> dict[str, dict[TopicPartition, int]]:
            out = {}
            for group in groups:
                offsets = await admin.list_consumer_group_offsets(group, partitions=list(tps))
                out[group] = {tp: m.offset for tp, m in offsets.items() if m.offset >= 0}
            return out

        result: dict[str, dict[TopicPartition, int]] = await self._call("committed offsets", read)
        return result

    async def dead_letters(self, topic: str) -> list[DeadLetterEntry]:
        """The unresolved dead and parked entries of a dead-letter topic (none if it does
        not exist: a group that never dead-lettered anything may have none yet)."""
        async def read(admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, _: Any
                       ) -> list[DeadLetterEntry]:
            if topic not in set(await admin.list_topics()):
                return []
            tp = TopicPartition(topic, 0)
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            state = ParkedState()
            await follow_until(reader, tp, state, keep_values=False, timeout_s=30.0)
            return state.entries()

        result: list[DeadLetterEntry] = await self._call("dead letters", read)
        return result


async def _read_partition(reader: AIOKafkaConsumer, tp: TopicPartition, offsets: list[int],
                          found: dict[Position, ConsumerRecord[bytes, bytes]]) -> None:
    """Read the records at ``offsets`` (sorted, within the log) of ``tp`` into ``found``."""
    at: int | None = None  # the offset the reader reads next
    for offset in offsets:
        if at is not None and at > offset:
            continue  # read already (or compacted away: the next record came instead)
        if offset != at:
            reader.seek(tp, offset)
        while at is None or at <= offset:
            records = (await reader.getmany(tp, timeout_ms=1000, max_records=50)).get(tp, [])
            for record in records:
                found[Position(tp.topic, tp.partition, record.offset)] = record
            if records:
                at = records[-1].offset + 1

"""Reading the rejected-webhooks topic (``<prefix>.ops.rejections``, written by
receiver/rejections.py) for the console: the last rejections per source, and how many per
source and reason over the last hour.

Each read seeks a group-less consumer (the console's,
:class:`~parley.console.kafka_view.KafkaView`) to the topic's tail and reads it, so every
receiver process's records are seen wherever the console runs and nothing is kept between
pages. The tail is bounded (:data:`MAX_SCAN`): the receiver's rate bound keeps an hour well
under it, and a report that had to stop short says so (``complete`` False).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.errors import ContractError
from contracts.ops import Rejection, decode_rejection
from contracts.topics import Topics
from parley.kafka.clients import reading_consumer
from parley.settings import KafkaSettings

__all__ = ["MAX_SCAN", "RejectionReport", "read_rejections", "report_from"]

#: The most records one report reads (the newest ones).
MAX_SCAN = 20_000


@dataclass
class RejectionReport:
    """What the console shows of the rejections topic.

    ``latest``: per source, its newest records (newest first, at most ``per_source``), a
    summary record (``sampled`` False) standing for ``count`` rejections.
    ``counts``: rejections per (source, status, reason) since ``since``, summaries included.
    ``complete``: False when the hour holds more than :data:`MAX_SCAN` records and only the
    newest were counted. ``exists``: False before the receiver wrote its first record.
    """

    since: datetime
    latest: dict[str, list[Rejection]] = field(default_factory=dict)
    counts: dict[tuple[str, int, str], int] = field(default_factory=dict)
    complete: bool = True
    exists: bool = True

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def read_rejections(k: KafkaSettings, topics: Topics, *, per_source: int = 50,
                          window_s: float = 3600.0, now: datetime | None = None,
                          timeout_s: float = 10.0) -> RejectionReport:
    """:func:`report_from` with a consumer of its own, closed after."""
    async with reading_consumer(k, isolation_level="read_uncommitted",
                                request_timeout_ms=int(timeout_s * 1000)) as consumer:
        return await report_from(consumer, topics, per_source=per_source, window_s=window_s,
                                 now=now, timeout_s=timeout_s)


async def report_from(consumer: AIOKafkaConsumer, topics: Topics, *, per_source: int = 50,
                      window_s: float = 3600.0, now: datetime | None = None,
                      timeout_s: float = 10.0) -> RejectionReport:
    """The newest rejections per source and the counts over the last ``window_s``, read
    with ``consumer`` (of no group), which is left assigned to the topic."""
    now = now or datetime.now(UTC)
    since = now - timedelta(seconds=window_s)
    report = RejectionReport(since=since)
    if topics.rejections not in await consumer.topics():
        report.exists = False
        return report
    tp = TopicPartition(topics.rejections, 0)
    consumer.assign([tp])
    first = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    found = (await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)}))[tp]
    in_window = end if found is None else found.offset
    # The hour, and enough before it for each source's latest records.
    start = max(first, min(in_window, end - per_source * 4), end - MAX_SCAN)
    report.complete = start <= in_window or start == first
    latest: defaultdict[str, list[Rejection]] = defaultdict(list)
    counts: Counter[tuple[str, int, str]] = Counter()
    consumer.seek(tp, start)
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000),
                                       max_records=2000)
        if not batch:
            raise TimeoutError(f"the rejections topic gave nothing within {timeout_s:g} s")
        for rec in batch.get(tp, []):
            try:
                r = decode_rejection(rec.value or b"")
            except ContractError:
                continue  # not ours (someone wrote to the topic): nothing to show
            latest[r.source].append(r)
            if r.at >= since:
                counts[(r.source, r.status, r.reason)] += r.count
    report.latest = {source: rows[::-1][:per_source] for source, rows in sorted(latest.items())}
    report.counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return report

"""``parley consumers replay NAME``: re-deliver chosen events to one running group.

The scan reads the group's own topics (event topics, or state topics for a state consumer)
from the first record at or after ``--from`` (Kafka's ``offsets_for_times``) up to ``--to``,
or up to each partition's end as it was when the scan started, so live traffic never keeps
it going. Records are filtered by their key (``--chat``), their timestamp, and the few
envelope fields the filter names (``--source``, ``--type``), decoded alone: the body is
never parsed. Each match is copied, key, value and headers unchanged plus
:data:`contracts.replay.ORIGIN_HEADER`, to the group's replay topic
(:meth:`contracts.topics.Topics.replay`), in log order per key, by one idempotent producer.
The group's runner reads that topic beside its own and hands each copy to the handler as
the original event (same position, same ``event_id``: the idempotency key of the first
delivery), in its key's lane, never at the same time as a live event of that key.

``--dry-run`` only counts. Times are the records' timestamps: when the receiver accepted the
webhook (for state topics, when the projector published the state), as for ``reset --to``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.errors import ConsumerError
from consumers.groups import partitions
from contracts.position import Position
from contracts.replay import origin_header
from contracts.topics import Topics
from parley.kafka.clients import make_consumer, make_producer
from parley.kafka.topics import ensure_topics
from parley.settings import KafkaSettings

__all__ = ["ReplayFilter", "ReplayProgress", "parse_time", "scan_and_send"]


def parse_time(text: str, flag: str) -> datetime:
    """An ISO-8601 time (naive means UTC); one-line ConsumerError otherwise."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConsumerError(f"{flag} {text!r}: expected an ISO-8601 time such as "
                            "2026-01-05T09:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class ReplayFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which records to replay; an unset field matches everything."""

    source: str | None = None
    chat: str | None = None
    type: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ConsumerError(f"--from {self.start.isoformat()} is not before "
                                f"--to {self.end.isoformat()}: nothing could match")


class ReplayProgress(msgspec.Struct, kw_only=True):
    """Counts so far (the final report too)."""

    scanned: int = 0
    matched: int = 0
    sent: int = 0
    elapsed_s: float = 0.0

    def line(self) -> str:
        rate = self.scanned / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"scanned {self.scanned} record(s), matched {self.matched}, sent {self.sent} "
                f"({rate:,.0f} records/s)")


class _EventHead(msgspec.Struct):
    """The envelope fields a filter reads (the same names in every schema version)."""

    source: str = ""
    event_type: str = ""


class _Source(msgspec.Struct):
    source: str | None = None


class _StateHead(msgspec.Struct):
    kind: str = ""
    state: _Source = msgspec.field(default_factory=_Source)


_EVENT_HEAD = msgspec.json.Decoder(_EventHead)
_STATE_HEAD = msgspec.json.Decoder(_StateHead)


def _matcher(f: ReplayFilter, topics: Topics, topic: str) -> Callable[[Any], bool]:
    """A test of one record of ``topic`` (the time range is checked by the caller)."""
    state = topics.state_kind_of(topic) is not None
    chat_key = f.chat.encode() if f.chat is not None else None
    chat_prefix = chat_key + b"/" if chat_key is not None else None
    decode_needed = f.source is not None or f.type is not None

    def matches(r: Any) -> bool:
        if chat_key is not None and r.key != chat_key and not (
                state and r.key is not None and r.key.startswith(chat_prefix)):
            return False
        if not decode_needed:
            return True
        try:
            if state:
                s = _STATE_HEAD.decode(r.value)
                return ((f.type is None or s.kind == f.type)
                        and (f.source is None or s.state.source == f.source))
            e = _EVENT_HEAD.decode(r.value)
        except (msgspec.DecodeError, TypeError):
            return False  # not an envelope: nothing a filter on its fields can match
        return ((f.type is None or e.event_type == f.type)
                and (f.source is None or e.source == f.source))

    return matches


def scan_topics(f: ReplayFilter, topics: Topics, topic_names: Sequence[str]) -> list[str]:
    """The topics worth reading: with ``--chat``, only the chat's event and state topics."""
    if f.chat is None:
        return list(topic_names)
    return [t for t in topic_names if t in (topics.chat, topics.state("chat"))]


async def _range(c: AIOKafkaConsumer, tps: list[TopicPartition], f: ReplayFilter,
                 ) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition, [first offset to read, offset to stop at)."""
    begin = await c.beginning_offsets(tps)
    end = await c.end_offsets(tps)  # the end now: live traffic after it is not scanned

    async def at(when: datetime | None, default: dict[TopicPartition, int]
                 ) -> dict[TopicPartition, int]:
        if when is None:
            return default
        found = await c.offsets_for_times(dict.fromkeys(tps, int(when.timestamp() * 1000)))
        return {tp: found[tp].offset if found.get(tp) is not None else end[tp] for tp in tps}

    start, stop = await at(f.start, begin), await at(f.end, end)
    return {tp: (start[tp], min(stop[tp], end[tp])) for tp in tps if start[tp] < stop[tp]}


async def scan_and_send(k: KafkaSettings, topics: Topics, group: str, topic_names: Sequence[str],
                        f: ReplayFilter, *, dry_run: bool,
                        report: Callable[[ReplayProgress], None],
                        every_s: float = 2.0) -> ReplayProgress:
    """Copy the records of ``topic_names`` that ``f`` matches to ``group``'s replay topic
    (count them only, with ``dry_run``); ``report`` is called at least every ``every_s``
    while it runs. Returns the final counts."""
    progress = ReplayProgress()
    c = make_consumer(k, group_id=None, enable_auto_commit=False,
                      max_partition_fetch_bytes=4 << 20, fetch_max_bytes=64 << 20)
    await c.start()
    producer = None
    try:
        topic_names = scan_topics(f, topics, topic_names)
        tps = await partitions(k, topic_names) if topic_names else []
        ranges = await _range(c, tps, f) if tps else {}
        if not dry_run and ranges:
            await ensure_topics(k, [topics.replay_spec(group, k.partitions)])
            producer = make_producer(k, linger_ms=5, max_batch_size=256 * 1024,
                                     max_request_size=2 << 20)
            await producer.start()
        replay_topic = topics.replay(group)
        start_ms = int(f.start.timestamp() * 1000) if f.start is not None else None
        end_ms = int(f.end.timestamp() * 1000) if f.end is not None else None
        t0 = last = time.monotonic()
        c.assign(list(ranges))
        for tp, (first, _) in ranges.items():
            c.seek(tp, first)
        pending: list[Any] = []
        left = dict(ranges)
        matchers = {t: _matcher(f, topics, t) for t in topic_names}
        quiet = 0
        while left:
            batch = await c.getmany(*left, timeout_ms=500, max_records=5000)
            # A partition whose last records in range are transaction markers may never
            # reach its stop offset: after 5 s with nothing to read, it is done.
            quiet = 0 if batch else quiet + 1
            for tp, records in batch.items():
                stop = left[tp][1] if tp in left else -1
                matches = matchers[tp.topic]
                for r in records:
                    if r.offset >= stop:
                        break
                    progress.scanned += 1
                    if ((start_ms is not None and r.timestamp < start_ms)
                            or (end_ms is not None and r.timestamp >= end_ms)
                            or not matches(r)):
                        continue
                    progress.matched += 1
                    if producer is not None:
                        headers = [*r.headers, origin_header(Position(r.topic, r.partition,
                                                                      r.offset), r.timestamp)]
                        pending.append(await producer.send(replay_topic, r.value, key=r.key,
                                                           headers=headers))
            for tp in list(left):
                if quiet >= 10 or await c.position(tp) >= left[tp][1]:
                    del left[tp]
                    c.pause(tp)
            if len(pending) >= 1000 or not left:
                for fut in pending:
                    await fut  # acks=all: a copy counts as sent once it is durable
                progress.sent += len(pending)
                pending.clear()
            now = time.monotonic()
            progress.elapsed_s = now - t0
            if now - last >= every_s:
                last = now
                report(progress)
        progress.elapsed_s = time.monotonic() - t0
    finally:
        if producer is not None:
            await producer.stop()
        await c.stop()
    return progress


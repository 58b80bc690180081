"""Live subscriptions: state changes as Server-Sent Events, read from the state topics.

``GET /api/chats/{id}/stream`` streams one chat's changes (``event: chat``) and its messages'
(``event: message``); ``GET /api/stream?kind=chat|visitor|agent[&status=…][&source=…]``
streams every change of one kind (chats without their messages), filtered. The ``data`` of
each event is the state topic's record (:class:`contracts.state_change.StateChange`: kind, id,
version, positions, state), opened: a state whose personal parts the publisher sealed
(:mod:`parley.privacy.states`) is sent whole while its subject's key lives, as its facts once
the key is destroyed (a forgotten subject). Filters read the facts, which every value keeps
readable. Only committed states are ever sent (:mod:`projector.state_publisher`), and a state
may be sent twice with the same version.

Event ids and resuming (``Last-Event-ID``, else ``?after=``; neither: from now on):

* one chat: its changes are all in one partition of ``<prefix>.state.chat`` (routed by chat
  id), so an event's id is its record's position, ``topic:partition:offset``, and resuming
  after it is exact: every later record of that partition is read, this chat's are sent;
* ``/api/stream``: a kind's topic has several partitions, so the id is a vector — one
  ``topic:partition:offset`` per partition, comma-separated, each the last record the stream
  has passed in that partition (sent or filtered out). A partition absent from the vector is
  read from its beginning (it was empty when the stream began). Resuming after a vector is
  exact per partition; across partitions there is no order, as in Kafka.

Starting from a webhook: the chat stream also takes an *event*-topic position (the
``position`` of a webhook's 2xx, ``<prefix>.events.chat:P:O``) as ``after`` (or
``Last-Event-ID``). It is inclusive: the stream starts with the first change of this chat
whose ``positions`` reach record ``O`` of that partition (the change the webhook caused, or a
later one if it changed nothing), and waits for it if the projector has not published it yet.
The chat's event records are all in that one partition, folded in order, so the changes before
it are exactly those whose position there is below ``O``. The search starts at the record's
timestamp (read by offset) less ``StreamOptions.clock_skew_s``, via ``offsets_for_times`` on
the state partition — not at the partition's beginning. Ids are state positions as above.

A position the topic no longer has (before its first offset) is 410 ``gone``; a malformed
one, one of another topic or partition, or one past the end of the log, 400. Each stream
reads Kafka with a consumer of its own (no group, nothing committed); at most
``http.max_streams`` are open at once per process, one more is 503 ``overloaded``.
Per-connection bounds, heartbeats and the cut-off of slow clients: :mod:`projector.sse`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import get_args
from zlib import crc32

from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from contracts.domain import AgentStatus
from contracts.errors import ContractError
from contracts.position import Position
from contracts.state import ChatState
from contracts.state_change import StateChange, decode_state_change
from contracts.topics import Topics
from parley.http import error_response
from parley.kafka.clients import make_consumer
from parley.privacy.ring import KeyRing
from parley.privacy.seal import subject_in
from parley.privacy.states import is_sealed, open_state
from parley.settings import KafkaSettings
from projector.sse import SseConnection, SseEvent, SseOptions

__all__ = ["StateStreams", "StreamOptions"]

log = logging.getLogger("parley.projector.streams")

CHAT_STATUSES = frozenset({"waiting", "active", "idle", "closed"})
AGENT_STATUSES = frozenset(get_args(AgentStatus))
KINDS = ("chat", "visitor", "agent")


@dataclass(frozen=True, kw_only=True)
class StreamOptions:
    """Each stream's bounds (``sse``), how long one read of Kafka waits (``poll_ms``), and
    how far the projector's clock may lag the receiver's (``clock_skew_s``: a stream after a
    webhook's position looks for its change from that much before the webhook's timestamp)."""

    sse: SseOptions = field(default_factory=SseOptions)
    poll_ms: int = 500
    clock_skew_s: float = 60.0


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


Accept = Callable[[ConsumerRecord[bytes, bytes]], StateChange | None]


@dataclass
class _Plan:
    """What one stream reads: where each partition starts, which records it sends, and the
    id an event gets from the offsets passed so far."""

    topic: str
    starts: dict[int, int]  # partition -> first offset to read
    accept: Accept
    vector: bool  # ids: a vector of every partition's last passed offset, or the record's own


class StateStreams:
    """The two stream endpoints of the projector's HTTP role (see the module docstring)."""

    def __init__(self, kafka: KafkaSettings, topics: Topics, *, max_streams: int,
                 options: StreamOptions = StreamOptions(), ring: KeyRing | None = None) -> None:
        """``max_streams``: streams open at once at most (``http.max_streams``); ``ring``:
        opens sealed states (without one, clients get their facts)."""
        self._kafka = kafka
        self._ring = ring
        self._topics = topics
        self._max_streams = max_streams
        self._options = options
        self._open = 0
        self._stop = asyncio.Event()

    @property
    def open_streams(self) -> int:
        return self._open

    def install(self, app: web.Application) -> None:
        app.router.add_get("/api/chats/{id}/stream", self.chat_stream)
        app.router.add_get("/api/stream", self.kind_stream)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, app: web.Application) -> None:
        self._stop.set()  # streams end now rather than hold the server's shutdown timeout

    async def chat_stream(self, request: web.Request) -> web.StreamResponse:
        """One chat's changes and its messages', from its partition of the chat state topic."""
        chat_id = request.match_info["id"]
        topic = self._topics.state("chat")
        prefix = (chat_id + "/").encode()
        key = chat_id.encode()

        def accept(record: ConsumerRecord[bytes, bytes]) -> StateChange | None:
            if record.key != key and not (record.key or b"").startswith(prefix):
                return None
            return decode_state_change(record.value or b"")

        async def plan(consumer: AIOKafkaConsumer) -> _Plan:
            partition = crc32(key) % await _partition_count(consumer, topic)
            after = _resume(request)
            starts = {partition: -1}
            if after is None:
                return _Plan(topic=topic, starts=starts, accept=accept, vector=False)
            position = _parse(after, topic, self._topics.chat)
            if position.topic == self._topics.chat:  # a webhook's position
                starts[partition], first = await self._after_event(
                    consumer, chat_id, position, TopicPartition(topic, partition))
                return _Plan(topic=topic, starts=starts, accept=_from(first, accept),
                             vector=False)
            if position.partition != partition:
                raise _Refused(400, "bad_request", f"{after}: not the partition of chat "
                               f"{chat_id!r} ({topic}:{partition})")
            starts[partition] = position.offset + 1
            return _Plan(topic=topic, starts=starts, accept=accept, vector=False)

        return await self._serve(request, plan)

    async def kind_stream(self, request: web.Request) -> web.StreamResponse:
        """Every change of one kind (``kind``, default chat), filtered by ``status`` and
        ``source`` (chats only)."""
        q = request.query
        kind = q.get("kind") or "chat"
        status, source = q.get("status") or None, q.get("source") or None
        try:
            if kind not in KINDS:
                raise _Refused(400, "bad_request", f"kind must be one of {', '.join(KINDS)}")
            valid = CHAT_STATUSES if kind == "chat" else AGENT_STATUSES if kind == "agent" else ()
            if status is not None and not valid:
                raise _Refused(400, "bad_request", f"status filters chats and agents only, not "
                               f"kind {kind}")
            if status is not None and status not in valid:
                raise _Refused(400, "bad_request", f"status for kind {kind}: one of "
                               f"{', '.join(sorted(valid))}")
            if source is not None and kind != "chat":
                raise _Refused(400, "bad_request", "source filters chats only (kind=chat)")
        except _Refused as exc:
            return error_response(exc.status, exc.code, exc.detail)
        topic = self._topics.state(kind)  # type: ignore[arg-type]

        def accept(record: ConsumerRecord[bytes, bytes]) -> StateChange | None:
            change = decode_state_change(record.value or b"")
            if change.kind != kind:
                return None  # a message, on the chat topic
            state = change.state
            if status is not None and getattr(state, "status", None) != status:
                return None
            if source is not None and (not isinstance(state, ChatState) or state.source != source):
                return None
            return change

        async def plan(consumer: AIOKafkaConsumer) -> _Plan:
            n = await _partition_count(consumer, topic)
            after = _resume(request)
            starts = dict.fromkeys(range(n), -1)
            if after is not None:
                starts = dict.fromkeys(range(n), 0)  # absent: from the beginning
                for part in after.split(","):
                    position = _parse(part, topic, hint=(
                        " (a webhook's position, of an event topic, is taken by "
                        "/api/chats/{id}/stream only; this stream resumes after its own ids: "
                        f"{topic} positions, comma-separated)"))
                    if position.partition >= n:
                        raise _Refused(400, "bad_request", f"{part}: {topic} has {n} partitions")
                    starts[position.partition] = position.offset + 1
            return _Plan(topic=topic, starts=starts, accept=accept, vector=True)

        return await self._serve(request, plan)

    async def _after_event(self, consumer: AIOKafkaConsumer, chat_id: str, event: Position,
                           state: TopicPartition) -> tuple[int, Callable[[StateChange], bool]]:
        """Where a chat stream after a webhook's ``event`` position starts reading ``state``
        (``-1``: the end now), and which change is its first (see the module docstring)."""
        n = await _partition_count(consumer, event.topic)
        own = DefaultPartitioner()(chat_id.encode(), list(range(n)), [])  # the receiver's
        if event.partition != own:
            raise _Refused(400, "bad_request", f"{event}: not the partition of chat "
                           f"{chat_id!r} ({event.topic}:{own})")
        tp = TopicPartition(event.topic, event.partition)
        consumer.assign([tp])
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if event.offset >= end:
            raise _Refused(400, "bad_request", f"{event} is past the end of the log ({end} "
                           "records)")
        if event.offset < begin:
            raise _Refused(410, "gone", f"{event} is no longer in the log (it begins at offset "
                           f"{begin}); subscribe without a position and read the current "
                           "state from /api")
        consumer.seek(tp, event.offset)
        try:
            timestamp = await self._timestamp(consumer, tp, event.offset)
        except TimeoutError:
            raise _Refused(503, "unavailable", f"{event}: the event log did not answer; "
                           "retry") from None
        since = max(0, timestamp - int(self._options.clock_skew_s * 1000))
        found = (await consumer.offsets_for_times({state: since})).get(state)
        start = -1 if found is None else found.offset

        def first(change: StateChange) -> bool:
            return any(p.topic == event.topic and p.partition == event.partition
                       and p.offset >= event.offset for p in change.positions)

        return start, first

    async def _timestamp(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                         offset: int) -> int:
        """The timestamp (ms) of the record at ``offset`` of ``tp`` (or of the next one, if
        that offset holds none), the consumer being at ``offset``."""
        async with asyncio.timeout(10):
            while True:
                batch = await consumer.getmany(tp, timeout_ms=self._options.poll_ms,
                                               max_records=1)
                for record in batch.get(tp, ()):
                    if record.offset >= offset:
                        return int(record.timestamp)

    # ------------------------------------------------------------------------- serving
    async def _serve(self, request: web.Request,
                     plan_of: Callable[[AIOKafkaConsumer], Awaitable[_Plan]]) -> web.StreamResponse:
        if self._open >= self._max_streams:
            return error_response(503, "overloaded", f"{self._max_streams} streams "
                                  "open already (the cap); retry later",
                                  headers={"Retry-After": "5"})
        self._open += 1
        # Small fetches: a stream holds at most one fetch per partition (Kafka still returns a
        # record larger than these whole), so its reads stay within a few hundred KiB.
        consumer = make_consumer(self._kafka, group_id=None, enable_auto_commit=False,
                                 max_partition_fetch_bytes=64 * 1024, fetch_max_bytes=256 * 1024)
        try:
            try:
                await consumer.start()
                plan = await plan_of(consumer)
                passed = await _seek(consumer, plan)
            except _Refused as exc:
                return error_response(exc.status, exc.code, exc.detail, headers=(
                    {"Retry-After": "1"} if exc.status == 503 else None))
            except Exception as exc:  # noqa: BLE001 - Kafka away: one line, retry later
                log.warning("stream not opened: %s: %s", type(exc).__name__, exc)
                return error_response(503, "unavailable", "state topics unreachable; retry",
                                      headers={"Retry-After": "1"})
            response = SseConnection.response(request, self._options.sse)
            await response.prepare(request)
            connection = SseConnection(request, response, self._options.sse)
            try:
                await response.write(b": open\n\n")  # the start is fixed: later changes come
            except ConnectionError:
                return response  # the client left already
            feed = asyncio.create_task(self._feed(consumer, plan, passed, connection))
            await connection.pump(feed, self._stop)
            return response
        finally:
            self._open -= 1
            await consumer.stop()

    async def _feed(self, consumer: AIOKafkaConsumer, plan: _Plan, passed: dict[int, int],
                    connection: SseConnection) -> None:
        """Read the plan's partitions, offering accepted changes to the connection in order,
        opened (the keys of a batch's accepted changes loaded in one round trip)."""
        while True:
            batches = await consumer.getmany(timeout_ms=self._options.poll_ms, max_records=500)
            for tp, records in batches.items():
                accepted: list[tuple[str, str, bytes]] = []
                for record in records:
                    passed[tp.partition] = record.offset
                    try:
                        change = plan.accept(record)
                    except ContractError:
                        log.warning("%s:%d:%d is not a state change; skipped", tp.topic,
                                    tp.partition, record.offset)
                        continue
                    if change is None:
                        continue
                    id_ = (_vector(plan.topic, passed) if plan.vector
                           else f"{tp.topic}:{tp.partition}:{record.offset}")
                    accepted.append((id_, change.kind, record.value or b""))
                values = await self._opened([value for _, _, value in accepted])
                for (id_, kind, _), value in zip(accepted, values, strict=True):
                    if not await connection.put(SseEvent(id_, kind, value)):
                        return

    async def _opened(self, values: list[bytes]) -> list[bytes]:
        """``values`` with sealed states opened by the ring (as they are without one)."""
        ring = self._ring
        if ring is None:
            return values
        sealed = {s for v in values if is_sealed(v) and (s := subject_in(v)) is not None}
        if not sealed:
            return values
        await ring.load(sealed)
        return [open_state(ring, v) for v in values]


async def _partition_count(consumer: AIOKafkaConsumer, topic: str) -> int:
    # The consumer's public topics() fetches metadata but keeps it from partitions_for_topic.
    cluster = await consumer._client.fetch_all_metadata()
    parts = cluster.partitions_for_topic(topic)
    if not parts:
        raise _Refused(503, "unavailable", f"{topic} does not exist yet; retry")
    return len(parts)


async def _seek(consumer: AIOKafkaConsumer, plan: _Plan) -> dict[int, int]:
    """Assign and seek the plan's partitions (``-1``: their end now); the last offset passed
    in each (for vector ids; absent: nothing before the start)."""
    tps = {p: TopicPartition(plan.topic, p) for p in plan.starts}
    consumer.assign(list(tps.values()))
    begin = await consumer.beginning_offsets(list(tps.values()))
    end = await consumer.end_offsets(list(tps.values()))
    passed: dict[int, int] = {}
    for p, tp in tps.items():
        start = end[tp] if plan.starts[p] == -1 else plan.starts[p]
        if start > end[tp]:
            raise _Refused(400, "bad_request", f"{plan.topic}:{p}:{start - 1} is past the end "
                           f"of the log ({end[tp]} records)")
        if start < begin[tp]:
            raise _Refused(410, "gone", f"{plan.topic}:{p}:{start - 1} is no longer in the "
                           f"log (it begins at offset {begin[tp]}); subscribe without a "
                           "position and read the current state from /api")
        consumer.seek(tp, start)
        if start > 0:
            passed[p] = start - 1
    return passed


def _resume(request: web.Request) -> str | None:
    return request.headers.get("Last-Event-ID") or request.query.get("after") or None


def _parse(text: str, *topics: str, hint: str = "") -> Position:
    """``text`` as a position of one of ``topics``; 400 (``hint`` added) otherwise."""
    try:
        position = Position.parse(text.strip())
    except ContractError as exc:
        raise _Refused(400, "bad_request", f"Last-Event-ID/after: {exc.detail}") from None
    if position.topic not in topics:
        raise _Refused(400, "bad_request", f"Last-Event-ID/after: {position.topic!r} is not "
                       f"{' or '.join(map(repr, topics))}{hint}")
    return position


def _from(first: Callable[[StateChange], bool], accept: Accept) -> Accept:
    """``accept``, but nothing before the first change ``first`` holds for."""
    reached = False

    def accept_from(record: ConsumerRecord[bytes, bytes]) -> StateChange | None:
        nonlocal reached
        change = accept(record)
        if change is None or reached:
            return change
        reached = first(change)
        return change if reached else None

    return accept_from


def _vector(topic: str, passed: dict[int, int]) -> str:
    return ",".join(f"{topic}:{p}:{o}" for p, o in sorted(passed.items()))

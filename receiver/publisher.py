"""The receiver's Kafka producer: one idempotent, acks=all aiokafka producer per process.

Delivery guarantee: :meth:`Publisher.publish` returns only after Kafka acknowledged the
record on every in-sync replica (acks=all, idempotent, so retries inside the producer never
duplicate or reorder a partition's records). If that does not happen within
``send_timeout_s`` it raises :class:`~receiver.errors.KafkaUnavailable` (retriable), and the
caller answers 503 with Retry-After. A timed-out record may still be written later by the
producer's own retries; that is an at-least-once duplicate with the same ``event_id``,
which every reader already tolerates.

Throughput: concurrent requests for one partition share one batch, one future and one
delivery callback (:class:`~receiver.batcher.RecordBatcher`; aiokafka keeps one request in
flight per broker and the records arriving meanwhile join the next batch; ``linger_ms`` can
add a fixed wait), and batches are compressed.

Outages: the producer reconnects by itself when the broker returns. If it cannot be started
(broker down at boot), or its idempotence state no longer matches the broker's after an
outage, or its sender task died, a background task replaces it, so ingest resumes without
restarting the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.codec import has_lz4, has_zstd
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from contracts.position import Position
from contracts.topics import MAX_RECORD_BYTES
from parley.errors import ParleyError
from parley.kafka.clients import make_producer
from parley.settings import KafkaSettings
from receiver.batcher import RecordBatcher
from receiver.errors import KafkaUnavailable
from receiver.metrics import ReceiverMetrics
from receiver.partitioner import KeyPartitioner, partition_for

__all__ = ["Publisher", "PublisherOptions", "best_compression"]

log = logging.getLogger("parley.receiver.publisher")

# Errors after which this producer's idempotence state (producer id, epoch, sequence
# numbers) no longer matches the broker's: aiokafka does not reset it, so every later
# batch to that partition would fail too. A new producer gets a new producer id.
_BROKEN_PRODUCER = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                    ProducerFenced)


def best_compression() -> str:
    """The best codec aiokafka can use with the installed libraries (cramjam gives zstd/lz4).

    zstd first: aiokafka compresses lz4 at level 9 (LZ4 HC), which costs about twice
    zstd's default level 3 per batch of webhook records and compresses them less (measured:
    docs/benchmarks.md, "Receiver"). gzip, the stdlib fallback, is the slowest of the three.
    """
    if has_zstd():
        return "zstd"
    if has_lz4():
        return "lz4"
    return "gzip"


#: Failing writes with no acknowledgement between them for this long make ``/readyz`` 503.
UNREADY_AFTER_S = 3.0
#: ... as long as the latest failure is this recent.
FAILURE_MEMORY_S = 15.0


class PublisherOptions:
    """Tuning of the producer; defaults suit webhook traffic (small records, many at once)."""

    __slots__ = ("compression", "linger_ms", "max_batch_bytes", "restart_backoff_s",
                 "retry_after_s", "send_timeout_s")

    def __init__(self, *, send_timeout_s: float = 5.0, linger_ms: int = 0,
                 max_batch_bytes: int = 256 * 1024, compression: str | None = None,
                 retry_after_s: int = 5, restart_backoff_s: float = 1.0) -> None:
        # ChatShipper gives up after 20 s; answering 503 well before that lets it retry
        # instead of counting a timeout, and keeps our connections from piling up.
        # linger_ms = 0 on purpose: the producer keeps one request in flight per broker,
        # so records that arrive during a round trip already share the next
        # batch. A fixed linger only adds its delay to every request; measured with 32
        # concurrent senders: linger 0 → 12k records/s p50 1.8 ms, linger 5 → 3.3k/s p50
        # 8 ms (docs/benchmarks.md).
        self.send_timeout_s = send_timeout_s
        self.linger_ms = linger_ms
        self.max_batch_bytes = max_batch_bytes
        # "none" turns compression off (for measurements); unset picks the best installed.
        self.compression = None if compression == "none" else compression or best_compression()
        self.retry_after_s = retry_after_s
        self.restart_backoff_s = restart_backoff_s


class Publisher:
    def __init__(self, kafka: KafkaSettings, metrics: ReceiverMetrics,
                 options: PublisherOptions | None = None) -> None:
        self._kafka = kafka
        self._metrics = metrics
        self.options = options or PublisherOptions()
        self._producer: AIOKafkaProducer | None = None
        self._batcher: RecordBatcher | None = None  # shares batches for self._producer
        self._keeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # the producer is broken: replace it
        self._connected = asyncio.Event()  # a producer is serving (first start only)
        self._stopping = False
        self._last_problem: str | None = "not started"
        # Writes failing while Kafka still answers metadata (e.g. too few in-sync replicas
        # for acks=all, or a denied write): loop time of the first failure since the last
        # acknowledged record (None: the last publish succeeded) and of the latest one.
        self._failing_since: float | None = None
        self._failed_at = 0.0
        self._failure_kind = ""
        # (deadline, delivery future) of every publish, in deadline order (the timeout is
        # constant): one sweeper task expires them, instead of a timer per request.
        self._deadlines: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def _new_producer(self) -> AIOKafkaProducer:
        o = self.options
        # request_timeout bounds every broker round trip and the accumulator's batch expiry;
        # keeping it at the send timeout means a stuck record fails about when we give up.
        return make_producer(
            self._kafka, linger_ms=o.linger_ms, compression_type=o.compression,
            max_batch_size=o.max_batch_bytes, max_request_size=MAX_RECORD_BYTES,
            request_timeout_ms=max(1000, int(o.send_timeout_s * 1000)),
            partitioner=KeyPartitioner())  # Kafka's default partitions, computed cheaper

    async def start(self) -> None:
        """Start the producer; if Kafka is unreachable now, keep trying in the background."""
        self._stopping = False
        self._keeper = asyncio.create_task(self._keep_producer(), name="receiver-producer-keeper")
        self._sweeper = asyncio.create_task(self._expire(), name="receiver-publish-deadlines")
        # Give a reachable broker the chance to be ready before the first request arrives.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.send_timeout_s):
                await self._connected.wait()
        if self._producer is None:
            log.warning("Kafka is not reachable yet; answering 503 until it is",
                        extra={"bootstrap": self._kafka.bootstrap})

    async def stop(self) -> None:
        """Flush what was handed over, then close. Called after in-flight requests drained."""
        self._stopping = True
        self._wake.set()
        for task in (self._keeper, self._sweeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._keeper = self._sweeper = None
        producer, self._producer = self._producer, None
        if producer is not None:
            # Batches already handed over are flushed below; records still queued in the
            # batcher are none (stop runs after in-flight requests drained) or answered 503.
            await self._close_batcher()
            try:
                async with asyncio.timeout(self.options.send_timeout_s):
                    await producer.flush()
            except (TimeoutError, KafkaError):
                log.warning("could not flush the producer before stopping")
            try:
                async with asyncio.timeout(self.options.send_timeout_s):
                    await producer.stop()
            except (TimeoutError, KafkaError):  # a broker still down must not block exit
                log.warning("the producer did not stop cleanly")

    async def _keep_producer(self) -> None:
        """Start the producer (retrying while Kafka is unreachable), then replace it whenever
        ``publish`` finds it broken."""
        while not self._stopping:
            producer = self._new_producer()
            try:
                async with asyncio.timeout(self.options.send_timeout_s * 2):
                    await producer.start()
            except (TimeoutError, KafkaError, OSError) as exc:
                # Parley's own errors (a refused login, a bad certificate) say what to fix.
                problem = (str(exc) if isinstance(exc, ParleyError)
                           else f"cannot connect to Kafka ({type(exc).__name__})")
                if problem != self._last_problem:
                    log.error("Kafka producer cannot start: %s; retrying", problem)
                self._last_problem = problem
                self._metrics.kafka_errors.labels("connect").inc()
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(self.options.restart_backoff_s)
                continue
            self._producer, self._batcher = producer, RecordBatcher(producer)
            self._last_problem = None
            self._connected.set()
            log.info("Kafka producer started", extra={"compression": self.options.compression})
            self._wake.clear()
            await self._wake.wait()  # set by publish() when the producer is broken
            if self._stopping:
                return
            log.warning("Kafka producer state is broken; replacing the producer")
            self._producer = None
            await self._close_batcher()
            # Its pending records were already answered 503 or will time out; don't let
            # a broker that is still in trouble hold up the replacement.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.options.send_timeout_s):
                    await producer.stop()

    async def _close_batcher(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()

    async def _expire(self) -> None:
        """Give up on acknowledgements past their deadline (checked every 50 ms)."""
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(0.05)
            now = loop.time()
            while deadlines and deadlines[0][0] <= now:
                _, delivery = deadlines.popleft()
                if not delivery.done():
                    # The record stays with the producer, which may still write it (an
                    # at-least-once duplicate); aiokafka skips futures already resolved.
                    delivery.set_exception(_Expired())

    def _sender_dead(self, producer: AIOKafkaProducer) -> bool:
        task = getattr(getattr(producer, "_sender", None), "sender_task", None)
        return task is not None and task.done()

    # ------------------------------------------------------------------ producing
    async def publish(self, topic: str, key: bytes, value: bytes,
                      headers: list[tuple[str, bytes]] | None = None) -> Position:
        """Append one record; return its position once Kafka acknowledged it (acks=all).

        Raises KafkaUnavailable when there is no acknowledgement within ``send_timeout_s``.
        Concurrent records for one partition share a batch (:class:`RecordBatcher`); each
        call still returns only after its own record's batch was acknowledged.
        """
        producer, batcher = self._producer, self._batcher
        if producer is None:
            self._metrics.kafka_errors.labels("not_connected").inc()
            raise KafkaUnavailable(retry_after_s=self.options.retry_after_s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.options.send_timeout_s
        partition: int | None = None
        try:
            partitions = producer.client.cluster.partitions_for_topic(topic)
            if batcher is not None and batcher.producer is producer and not headers:
                if not partitions:  # metadata not known yet: wait for it, within the deadline
                    async with asyncio.timeout_at(deadline):
                        partitions = await producer.partitions_for(topic)
                # The partition the producer's partitioner (Kafka's default) would pick.
                partition = partition_for(key, len(partitions))
                delivery: asyncio.Future[Any] = batcher.add(topic, partition, key, value)
            elif partitions:
                # A producer without a batcher (or a record with headers) goes one record at
                # a time. Metadata known: send() only appends to a batch; if the batch is
                # full it waits at most request_timeout_ms (= the send timeout) and raises.
                delivery = await producer.send(topic, value, key=key, headers=headers,
                                               partition=partition_for(key, len(partitions)))
            else:
                async with asyncio.timeout_at(deadline):  # waits for metadata: bound it
                    delivery = await producer.send(topic, value, key=key, headers=headers)
        except TimeoutError:
            self._note_failure("timeout", producer)
            raise KafkaUnavailable(retry_after_s=self.options.retry_after_s) from None
        except Exception as exc:  # not handed over means not durable: 503, the provider retries
            if not isinstance(exc, KafkaError):
                log.error("unexpected error handing a record to the producer", exc_info=True)
            self._note_failure(type(exc).__name__, producer, exc)
            raise KafkaUnavailable(retry_after_s=self.options.retry_after_s) from None
        # Wait for the acknowledgement or the deadline, whichever comes first: the sweeper
        # resolves a delivery still pending at its deadline with _Expired. Awaiting the
        # delivery itself (no waiter future, no callback) keeps a request to one wake-up.
        self._deadlines.append((deadline, delivery))
        try:
            acked: Any = await delivery  # the offset (batched), else aiokafka's RecordMetadata
        except _Expired:
            self._note_failure("timeout", producer)
            raise KafkaUnavailable(retry_after_s=self.options.retry_after_s) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request is being cancelled, not the record's delivery
            self._note_failure("cancelled", producer)
            raise KafkaUnavailable(retry_after_s=self.options.retry_after_s) from None
        except Exception as exc:  # noqa: BLE001 - any delivery failure: not durable, so 503
            self._note_failure(type(exc).__name__, producer, exc)
            raise KafkaUnavailable(retry_after_s=self.options.retry_after_s) from None
        self._failing_since = None
        self._metrics.produced(topic, loop.time() - started)
        if partition is not None:
            return Position(topic, partition, acked)
        return Position(acked.topic, acked.partition, acked.offset)

    def _note_failure(self, kind: str, producer: AIOKafkaProducer,
                      exc: BaseException | None = None) -> None:
        self._metrics.kafka_errors.labels(kind if len(kind) < 60 else "other").inc()
        self._last_problem = f"produce failed ({kind})"
        now = asyncio.get_running_loop().time()
        if self._failing_since is None:
            self._failing_since = now
        self._failed_at, self._failure_kind = now, kind
        broken = isinstance(exc, _BROKEN_PRODUCER) or self._sender_dead(producer)
        if broken and producer is self._producer:
            self._producer = None  # answer 503 at once until the new producer is up
            self._wake.set()

    # ------------------------------------------------------------------ readiness
    async def readiness(self) -> str | None:
        """None when Kafka answers a metadata request now, else what is wrong (one line)."""
        producer = self._producer
        if producer is None:
            return self._last_problem or "Kafka producer not started"
        try:
            async with asyncio.timeout(1.5):
                await producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError) as exc:
            return f"Kafka unreachable ({type(exc).__name__})"
        return self._refusing_writes()

    def _refusing_writes(self) -> str | None:
        """Kafka answers, yet no record was acknowledged for ``UNREADY_AFTER_S`` of failures:
        every webhook would get 503, so the load balancer should send them elsewhere. Only
        while failures are recent (``FAILURE_MEMORY_S``): an unready receiver gets no traffic
        to prove itself with, so it turns ready again and the next webhooks try."""
        since = self._failing_since
        if since is None:
            return None
        now = asyncio.get_running_loop().time()
        if now - since < UNREADY_AFTER_S or now - self._failed_at > FAILURE_MEMORY_S:
            return None
        return (f"Kafka refuses writes: nothing acknowledged for {now - since:.0f} s "
                f"(last: {self._failure_kind})")


class _Expired(Exception):
    """A delivery still pending at its deadline (set by the sweeper, never raised by Kafka)."""

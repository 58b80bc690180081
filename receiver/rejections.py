"""Rejected webhooks, recorded on ``<prefix>.ops.rejections`` for the console.

The receiver answers a 4xx first and records it second: :meth:`RejectionRecorder.note` builds
a small :class:`~contracts.ops.Rejection` and puts it in a bounded queue; it never waits and
never raises, so recording can neither delay nor fail an answer. A background task produces
the queue to Kafka, so every receiver process's rejections reach one topic, which the console
reads wherever it runs.

What a record holds (never a header, token, signature or key): source, status, error code,
reason (which authentication check failed, for a 401), the header or member checked, the
answer's detail, and — only for a request that authenticated but did not fit its contract — the
first ``body_bytes`` of its body, with Natterly's ``auth_token`` member cut and every configured
secret masked (:class:`parley.secrets.SecretMask`).

Bounds, so that a hostile flood neither fills Kafka nor slows the receiver:

1. per source (every unknown source shares one), a token bucket of ``per_s`` records a second
   and ``burst`` at once admits rejections one by one;
2. what the bucket holds back, or what finds the queue (``queue`` records) full, or what Kafka
   refused, is counted per (source, status, error, reason) and written every ``summary_s`` as
   one record with that ``count`` (``sampled`` false): the topic's counts stay whole while its
   size stays bounded by the number of sources and reasons, not by the flood;
3. the producer is the recorder's own (acks=1, one send at a time), never the webhooks'.

``parley_receiver_rejections_total{source, recorded}`` counts every rejection noted:
``recorded="one"`` written one by one, ``"summary"`` counted into a summary record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter

from contracts.errors import ContractError
from contracts.member_cut import strip_member
from contracts.ops import Rejection, encode_rejection
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.kafka.topics import ensure_topics
from parley.secrets import SecretMask
from parley.settings import KafkaSettings, ProviderName
from receiver.errors import ReceiverError, Unauthorized, UnknownSource
from receiver.signatures import BodyToken

__all__ = ["RejectionLimits", "RejectionRecorder", "kept_body"]

log = logging.getLogger("parley.receiver.rejections")

# A URL's source segment is recorded (for "unknown source") only when it looks like a name.
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_DETAIL_CHARS = 300


@dataclass(frozen=True, slots=True)
class RejectionLimits:
    """How much of a flood is recorded (see the module docstring)."""

    per_s: float = 1.0
    burst: int = 20
    queue: int = 256
    summary_s: float = 10.0
    body_bytes: int = 2048
    backoff_s: float = 2.0


_Tally = tuple[str, int, str, str, str | None]  # source, status, error, reason, field


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now


def kept_body(body: bytes, *, provider: ProviderName, mask: SecretMask, limit: int) -> str:
    """The part of an authenticated, invalid body a rejection record may keep: Natterly's
    ``auth_token`` member cut, every configured secret masked, then at most ``limit`` bytes
    of UTF-8 (a character cut in half is dropped)."""
    if provider == "natterly":
        # It authenticated, so it is a JSON object; masking below covers the odd case too.
        with contextlib.suppress(ContractError):
            body = strip_member(body, BodyToken.FIELD)
    text = mask(body.decode("utf-8", "replace"))
    return text.encode()[:limit].decode("utf-8", "ignore")


class RejectionRecorder:
    """Notes rejections without waiting, and writes them to the rejections topic."""

    def __init__(self, kafka: KafkaSettings, topics: Topics, registry: CollectorRegistry,
                 secrets: Iterable[str], limits: RejectionLimits | None = None) -> None:
        self._kafka = kafka
        self._topics = topics
        self.limits = limits or RejectionLimits()
        self._mask = SecretMask(secrets)
        self._queue: asyncio.Queue[Rejection] = asyncio.Queue(self.limits.queue)
        self._buckets: dict[str, _Bucket] = {}
        # Held back, per kind: [count, the last one's time]. Bounded: sources are the
        # configured ones and "-", and errors, reasons and fields are fixed vocabularies.
        self._held: dict[_Tally, tuple[int, datetime]] = {}
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Future[AIOKafkaProducer] | None = None
        # Set by the first rejection: a receiver that never rejects anything never touches
        # the rejections topic (nor needs to be allowed to).
        self._first = asyncio.Event()
        self._noted = Counter(
            "parley_receiver_rejections",
            "Webhooks answered with a 4xx, by source and how they were noted for the "
            "rejections topic: one (a record each) or summary (counted into a summary record).",
            ("source", "recorded"), registry=registry)

    # ------------------------------------------------------------------ the request side
    def note(self, source: str, exc: ReceiverError, *, provider: ProviderName | None = None,
             requested: str | None = None, body: bytes | None = None) -> None:
        """Record that ``exc`` was answered for ``source`` (its label: ``-`` when unknown).

        ``body`` only for a request that authenticated (it is kept, trimmed, for an invalid
        body); ``requested`` is the URL's source segment. Never waits, never raises."""
        if not 400 <= exc.status < 500:
            return  # 503s are Parley's own state (overload, Kafka down), not a bad webhook
        try:
            self._note(source, exc, provider, requested, body)
        except Exception:  # recording must never turn an answer into a 500
            log.warning("could not note a rejection", exc_info=True)

    def _note(self, source: str, exc: ReceiverError, provider: ProviderName | None,
              requested: str | None, body: bytes | None) -> None:
        now = datetime.now(UTC)
        reason, field = exc.code, None
        if isinstance(exc, Unauthorized):
            reason, field = exc.failure.reason, exc.failure.field
        tally: _Tally = (source, exc.status, exc.code, reason, field)
        self._first.set()
        if not self._admit(source):
            self._hold(tally, 1, now)
            return
        kept = None
        if body is not None and provider is not None and self.limits.body_bytes > 0:
            kept = kept_body(body, provider=provider, mask=self._mask,
                             limit=self.limits.body_bytes)
        rejection = Rejection(
            source=source, status=exc.status, error=exc.code, reason=reason, at=now,
            field=field, detail=self._mask(exc.detail)[:_MAX_DETAIL_CHARS],
            requested=(self._mask(requested) if isinstance(exc, UnknownSource) and requested
                       and _NAME.fullmatch(requested) else None),
            body=kept, body_bytes=None if kept is None or body is None else len(body))
        try:
            self._queue.put_nowait(rejection)
        except asyncio.QueueFull:
            self._hold(tally, 1, now)
            return
        self._noted.labels(source, "one").inc()

    def _admit(self, source: str) -> bool:
        """Take a token from ``source``'s bucket (refilled at ``per_s``, at most ``burst``)."""
        now = time.monotonic()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(self.limits.burst, now)
        bucket.tokens = min(float(self.limits.burst),
                            bucket.tokens + (now - bucket.stamp) * self.limits.per_s)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _hold(self, tally: _Tally, count: int, at: datetime) -> None:
        self._keep(tally, count, at)
        self._noted.labels(tally[0], "summary").inc(count)

    def _keep(self, tally: _Tally, count: int, at: datetime) -> None:
        held, last = self._held.get(tally, (0, at))
        self._held[tally] = (held + count, max(last, at))

    # ------------------------------------------------------------------ the writer
    async def start(self) -> None:
        """Start the writer in the background: the receiver serves without waiting for it
        (a broker down at start-up delays only the records). It connects at the first
        rejection."""
        self._task = asyncio.create_task(self._run(), name="rejections-writer")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the writer, giving what is queued or held ``timeout_s`` to be written."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            # Let a connection being made finish (bounded): aiokafka leaves the socket of a
            # bootstrap cut short by a cancel open.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(connecting), timeout_s)
            if not connecting.done():
                connecting.cancel()
        producer, self._producer = self._producer, None
        if producer is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                while not self._queue.empty():
                    await self._send(producer, self._queue.get_nowait())
                await self._send_held(producer)
        with contextlib.suppress(Exception):
            await producer.stop()

    async def _run(self) -> None:
        await self._first.wait()
        while True:
            try:
                # Shielded: a stop() during the connection waits for it (see stop()).
                self._connecting = asyncio.ensure_future(self._connect())
                await self._pump(await asyncio.shield(self._connecting))
            except asyncio.CancelledError:
                raise  # stop() drains and closes the producer
            except Exception as exc:  # noqa: BLE001 - Kafka trouble: retry, keep counting
                log.warning("rejections topic unavailable (%s); retrying in %.0f s",
                            type(exc).__name__, self.limits.backoff_s)
                producer, self._producer = self._producer, None
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()
            await asyncio.sleep(self.limits.backoff_s)

    async def _connect(self) -> AIOKafkaProducer:
        """The rejections topic made sure of, and a started producer (``self._producer``)."""
        await ensure_topics(self._kafka, [self._topics.ops_specs()[0]])
        producer = make_producer(self._kafka, acks=1, enable_idempotence=False)
        self._producer = producer
        await producer.start()
        return producer

    async def _pump(self, producer: AIOKafkaProducer) -> None:
        """Write queued records as they come, and the held counts every ``summary_s``."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.limits.summary_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, due - loop.time())):
                    rejection = await self._queue.get()
            except TimeoutError:
                pass
            else:
                await self._send(producer, rejection)
            if loop.time() >= due:
                await self._send_held(producer)
                due = loop.time() + self.limits.summary_s

    async def _send_held(self, producer: AIOKafkaProducer) -> None:
        held = list(self._held.items())
        self._held = {}
        for i, ((source, status, error, reason, field), (count, at)) in enumerate(held):
            try:
                await self._send(producer, Rejection(
                    source=source, status=status, error=error, reason=reason, at=at,
                    count=count, sampled=False, field=field))
            except BaseException:
                for tally, (c, a) in held[i + 1:]:  # (the failed one _send kept already)
                    self._keep(tally, c, a)
                raise

    async def _send(self, producer: AIOKafkaProducer, rejection: Rejection) -> None:
        """Write one record; if that fails its count goes back to the held ones (and the
        error up, so the writer reconnects)."""
        try:
            await producer.send_and_wait(
                self._topics.rejections, encode_rejection(rejection),
                key=rejection.source.encode(),
                timestamp_ms=int(rejection.at.timestamp() * 1000))
        except BaseException:
            self._keep((rejection.source, rejection.status, rejection.error, rejection.reason,
                        rejection.field), rejection.count, rejection.at)
            raise

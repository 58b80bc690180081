"""The receiver's Prometheus metrics, registered on the process's registry (never globally).

Labels hold only configured source names, event types, status codes and error kinds —
never credentials or body content. Event types come from providers, who add new ones, so
the number of distinct values per source is capped (:class:`BoundedLabel`).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["NO_EVENT", "OTHER_EVENT", "UNKNOWN_SOURCE", "BoundedLabel", "ReceiverMetrics"]

#: Label of requests that were rejected before their event type was known.
NO_EVENT = "-"
#: Label of event types past the cap.
OTHER_EVENT = "other"
#: Label of requests to a source that is not configured (the path segment is not a label).
UNKNOWN_SOURCE = "-"

# Produce latency is one or two broker round trips (linger is 0); the long tail is an
# outage, bounded by the send timeout.
_LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# At most this many (source, event type, status) children are remembered; beyond it the
# slower ``.labels()`` lookup is used (only when providers send hundreds of event types).
_CHILD_CACHE_LIMIT = 4096


class BoundedLabel:
    """Admits at most ``limit`` distinct values per source; later ones become ``other``."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = 200) -> None:
        self._limit = limit
        self._seen: dict[str, set[str]] = {}

    def __call__(self, source: str, value: str) -> str:
        seen = self._seen.setdefault(source, set())
        if value in seen:
            return value
        if len(seen) >= self._limit or len(value) > 100:
            return OTHER_EVENT
        seen.add(value)
        return value


class ReceiverMetrics:
    def __init__(self, registry: CollectorRegistry, event_type_limit: int = 200) -> None:
        self.requests = Counter(
            "parley_receiver_requests", "Webhook requests answered, by source, event type and status.",
            ("source", "event_type", "status"), registry=registry)
        self.produce_seconds = Histogram(
            "parley_receiver_produce_seconds",
            "Time from handing a record to the producer until Kafka acknowledged it (acks=all).",
            ("topic",), buckets=_LATENCY_BUCKETS_S, registry=registry)
        # Read at scrape time from a plain counter the handler keeps (``in_flight_now``):
        # a Gauge's inc/dec take a lock twice per request for a value nobody reads then.
        self.in_flight_now = 0
        self.in_flight = Gauge(
            "parley_receiver_in_flight_requests", "Webhook requests being handled right now.",
            registry=registry)
        self.in_flight.set_function(lambda: self.in_flight_now)
        self.buffered_body_bytes = Gauge(
            "parley_receiver_buffered_body_bytes",
            "Webhook body bytes taken from http.max_buffered_body_bytes by requests in flight.",
            registry=registry)
        self.kafka_errors = Counter(
            "parley_receiver_kafka_errors", "Produce attempts that failed or timed out, by kind.",
            ("kind",), registry=registry)
        self.body_bytes = Histogram(
            "parley_receiver_body_bytes", "Size of accepted webhook bodies.",
            buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576), registry=registry)
        self.event_type = BoundedLabel(event_type_limit)
        # Labelled children by their label values: ``.labels()`` validates and joins its
        # arguments on every call (~2 µs), a dict lookup does not. Bounded, because event
        # types past BoundedLabel's cap all share the "other" child but not a cache key.
        self._answered: dict[tuple[str, str, int], Any] = {}
        self._produce: dict[str, Any] = {}

    def answered(self, source: str, event_type: str, status: int) -> None:
        key = (source, event_type, status)
        child = self._answered.get(key)
        if child is None:
            label = NO_EVENT if event_type == NO_EVENT else self.event_type(source, event_type)
            child = self.requests.labels(source, label, str(status))
            if len(self._answered) < _CHILD_CACHE_LIMIT:
                self._answered[key] = child
        child.inc()

    def produced(self, topic: str, seconds: float) -> None:
        """One record acknowledged by Kafka ``seconds`` after it was handed over."""
        child = self._produce.get(topic)
        if child is None:  # topics come from contracts: a handful per process
            child = self._produce[topic] = self.produce_seconds.labels(topic)
        child.observe(seconds)

"""Prometheus metrics of consumer groups, registered once per process on ``rt.registry``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ConsumerMetrics"]


class ConsumerMetrics:
    """Every consumer runner and the lag monitor of one process share one instance."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "parley_consumer_events", "Events by outcome: handled, filtered, dead_lettered, "
            "parked", ["consumer", "outcome"], registry=registry)
        self.retries = Counter("parley_consumer_retries", "Handler retries after a retriable "
                               "failure", ["consumer"], registry=registry)
        self.batch_seconds = Histogram(
            "parley_consumer_batch_seconds", "Time to handle and commit one fetched batch",
            ["consumer"], registry=registry,
            buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.lag_records = Gauge(
            "parley_consumer_lag_records", "Records between the committed offset and the end",
            ["consumer", "topic", "partition"], registry=registry)
        self.lag_seconds = Gauge(
            "parley_consumer_lag_seconds", "Event time (occurred_at) age of the next "
            "unconsumed record; 0 when caught up", ["consumer", "topic", "partition"],
            registry=registry)
        self.stuck = Gauge("parley_consumer_stuck", "1 if lag > 0 and no committed progress "
                           "within the stuck window", ["consumer"], registry=registry)
        self.parked_keys = Gauge("parley_consumer_parked_keys", "Keys parked behind a dead "
                                 "letter", ["consumer"], registry=registry)

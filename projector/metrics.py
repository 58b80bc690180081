"""Prometheus metrics of the projector, registered on the process's registry (never global)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ProjectorMetrics"]


@dataclass(frozen=True, kw_only=True)
class ProjectorMetrics:
    """Counters and gauges the runner, the dead-letter path and the query API update.

    Built once per process by :meth:`create` on the Runtime's registry, so ``/metrics``
    shows them next to the other roles' metrics.
    """

    records: Counter  # labels: topic — Kafka records consumed and committed to the store
    events: Counter  # domain events folded (a record may carry none or several)
    batches: Counter
    batch_seconds: Histogram  # one batch: decode, fold, store commit, Kafka commit
    rows_written: Counter
    dead_letters: Counter  # labels: stage (decode | apply), error
    lag: Gauge  # labels: topic, partition — high watermark minus next offset to read
    cache_hits: Counter
    cache_misses: Counter
    switches: Counter  # the live projection changed under the runner (a rebuild finished)
    waits: Counter  # labels: outcome (applied | timeout) — read-your-writes waits
    waiting: Gauge  # requests waiting for their min_position right now
    #: labels: provider, field — parts of accepted bodies the normaliser could not use
    #: (a wrongly typed value, an impossible time; ``$``: the whole body)
    dropped_fields: Counter
    #: labels: kind, source — applications of an event to an aggregate another source owns
    #: (skipped: see :mod:`projector.owners`)
    foreign_source: Counter
    #: labels: provider, field — times in events later than their receipt allows, clamped
    #: (see :mod:`projector.clamp`)
    future_times: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ProjectorMetrics:
        p = "parley_projector_"
        return cls(
            records=Counter(p + "records", "Kafka records committed to the projection",
                            ["topic"], registry=registry),
            events=Counter(p + "events", "Domain events folded", registry=registry),
            batches=Counter(p + "batches", "Batches committed", registry=registry),
            batch_seconds=Histogram(p + "batch_seconds", "Time to fold and commit one batch",
                                    registry=registry,
                                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)),
            rows_written=Counter(p + "rows_written", "State rows upserted", registry=registry),
            dead_letters=Counter(p + "dead_letters", "Records skipped and sent to the DLQ",
                                 ["stage", "error"], registry=registry),
            lag=Gauge(p + "lag_records", "High watermark minus next offset to apply",
                      ["topic", "partition"], registry=registry),
            cache_hits=Counter(p + "cache_hits", "Fold states found in the LRU cache",
                               registry=registry),
            cache_misses=Counter(p + "cache_misses", "Fold states loaded from the store",
                                 registry=registry),
            switches=Counter(p + "projection_switches", "Live projection switches seen",
                             registry=registry),
            waits=Counter(p + "position_waits", "min_position waits by outcome", ["outcome"],
                          registry=registry),
            waiting=Gauge(p + "position_waiting", "Requests waiting for min_position now",
                          registry=registry),
            dropped_fields=Counter("parley_normalise_dropped_fields",
                                   "Fields of accepted webhooks the normaliser could not use",
                                   ["provider", "field"], registry=registry),
            foreign_source=Counter(p + "foreign_source",
                                   "Events ignored for an aggregate another source owns",
                                   ["kind", "source"], registry=registry),
            future_times=Counter(p + "future_times",
                                 "Times later than their webhook's receipt allows, clamped",
                                 ["provider", "field"], registry=registry),
        )

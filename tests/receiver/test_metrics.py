"""The receiver's metrics: cached label children count like ``.labels()`` would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from receiver import metrics as metrics_module
from receiver.metrics import NO_EVENT, ReceiverMetrics


def _sample(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return registry.get_sample_value(name, labels)


def test_requests_are_counted_per_source_event_type_and_status() -> None:
    registry = CollectorRegistry()
    m = ReceiverMetrics(registry)
    for _ in range(3):
        m.answered("acme", "ChatInitiated", 200)
    m.answered("acme", NO_EVENT, 401)
    m.answered("shop", "ChatInitiated", 200)
    name = "parley_receiver_requests_total"
    assert _sample(registry, name, {"source": "acme", "event_type": "ChatInitiated",
                                    "status": "200"}) == 3
    assert _sample(registry, name, {"source": "acme", "event_type": "-", "status": "401"}) == 1
    assert _sample(registry, name, {"source": "shop", "event_type": "ChatInitiated",
                                    "status": "200"}) == 1


def test_event_types_past_the_cap_share_other_even_past_the_child_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "_CHILD_CACHE_LIMIT", 5)
    registry = CollectorRegistry()
    m = ReceiverMetrics(registry, event_type_limit=3)
    for n in range(10):
        m.answered("acme", f"Type{n}", 200)
        m.answered("acme", f"Type{n}", 200)
    name = "parley_receiver_requests_total"
    for n in range(3):
        assert _sample(registry, name, {"source": "acme", "event_type": f"Type{n}",
                                        "status": "200"}) == 2
    assert _sample(registry, name, {"source": "acme", "event_type": "other",
                                    "status": "200"}) == 14
    assert b"Type3" not in generate_latest(registry)


def test_in_flight_gauge_reads_the_handlers_counter_and_latency_is_per_topic() -> None:
    registry = CollectorRegistry()
    m = ReceiverMetrics(registry)
    m.in_flight_now += 2
    assert _sample(registry, "parley_receiver_in_flight_requests", {}) == 2
    m.in_flight_now -= 2
    assert _sample(registry, "parley_receiver_in_flight_requests", {}) == 0
    m.produced("a", 0.003)
    m.produced("a", 0.004)
    m.produced("b", 0.5)
    assert _sample(registry, "parley_receiver_produce_seconds_count", {"topic": "a"}) == 2
    assert _sample(registry, "parley_receiver_produce_seconds_count", {"topic": "b"}) == 1

"""A consumer group inside the HTTP process: /api/consumers, /metrics, /readyz, stuck."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumers.api import ConsumedEvent, consumer
from consumers.lag import StuckDetector
from consumers.runner import ConsumerRunner
from consumers.service import ConsumerService
from contracts.topics import Topics
from parley.http import build_app
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings
from tests.kit.consumers.events import chat_event, produce
from tests.kit.consumers.helpers import wait_for

pytestmark = pytest.mark.kafka


def test_stuck_needs_lag_and_no_progress_for_the_window() -> None:
    d = StuckDetector(stuck_after_s=10)
    assert not d.observe("g", "t", 0, 5, lag_records=3, now=0)
    assert not d.observe("g", "t", 0, 5, lag_records=4, now=9)
    assert d.observe("g", "t", 0, 5, lag_records=4, now=10)  # no progress for 10 s
    assert not d.observe("g", "t", 0, 6, lag_records=4, now=11)  # progress resets the clock
    assert not d.observe("g", "t", 0, 6, lag_records=0, now=30)  # caught up: never stuck
    assert not d.observe("g", "t", 0, None, lag_records=2, now=31)
    assert d.observe("g", "t", 0, None, lag_records=2, now=41)  # never committed, no progress
    # A group's own window (``[consumers.NAME] stuck_after_s``) instead of the detector's.
    assert not d.observe("h", "t", 0, 1, lag_records=2, now=0, stuck_after_s=60)
    assert not d.observe("h", "t", 0, 1, lag_records=2, now=30, stuck_after_s=60)
    assert d.observe("h", "t", 0, 1, lag_records=2, now=60, stuck_after_s=60)


def test_each_consumer_gets_one_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ConsumerRunner] = []

    class Counted(ConsumerRunner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr("consumers.service.ConsumerRunner", Counted)

    @consumer("one", topics=("chat",))
    async def one(ev: ConsumedEvent) -> None:
        pass

    @consumer("two", topics=("chat",))
    async def two(ev: ConsumedEvent) -> None:
        pass

    settings = Settings(kafka=KafkaSettings(bootstrap="127.0.0.1:9"), data_dir=str(tmp_path))
    service = ConsumerService(Runtime.from_settings(settings), [one, two])
    assert built == list(service.runners.values())  # the runners it runs, built once each


class _Role:
    name = "test-consumers"

    def __init__(self, service: ConsumerService) -> None:
        self.service = service

    def install(self, app, rt) -> None:  # type: ignore[no-untyped-def]
        self.service.install(app)


@pytest.fixture
async def gate() -> AsyncIterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


async def test_api_consumers_and_metrics_report_lag_and_stuck(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics,
        gate: asyncio.Event) -> None:
    await produce(kafka_settings, topics, [chat_event("blocked", 1), chat_event("blocked", 2)]
                  + [chat_event(f"k{i}", i) for i in range(10)])
    handled: list[str] = []

    @consumer("watched", topics=("chat",))
    async def handle(ev: ConsumedEvent) -> None:
        if ev.key == "blocked":
            await gate.wait()  # a hung dependency
        handled.append(ev.event_id)

    rt = Runtime.from_settings(Settings(kafka=kafka_settings, data_dir=str(tmp_path)))
    service = ConsumerService(rt, [handle], stuck_after_s=0.5, lag_interval_s=0.2)
    async with TestClient(TestServer(build_app(rt, [_Role(service)]))) as client:
        await wait_for(lambda: service.runners["watched"].started.is_set(), what="started")
        assert (await client.get("/readyz")).status == 200

        async def report() -> dict:  # type: ignore[type-arg]
            resp = await client.get("/api/consumers")
            assert resp.status == 200
            [group] = (await resp.json())["groups"]
            return group  # type: ignore[no-any-return]

        deadline = asyncio.get_running_loop().time() + 20
        while not (group := await report())["stuck"]:
            assert asyncio.get_running_loop().time() < deadline, group
            await asyncio.sleep(0.2)
        assert group["consumer"] == "watched" and group["running"] is True
        assert group["group"] == f"{kafka_settings.topic_prefix}.consumers.watched"
        assert group["lag_records"] == 12  # nothing committed: the batch is not finished
        assert group["lag_seconds"] > 0  # the oldest unconsumed event happened in the past
        assert {p["partition"] for p in group["partitions"]} == {0, 1, 2}
        metrics = await (await client.get("/metrics")).text()
        assert 'parley_consumer_stuck{consumer="watched"} 1.0' in metrics
        assert "parley_consumer_lag_records{" in metrics and "parley_consumer_lag_seconds{" in metrics

        gate.set()
        await wait_for(lambda: len(handled) == 12, what="released")
        deadline = asyncio.get_running_loop().time() + 20
        while (group := await report())["lag_records"]:
            assert asyncio.get_running_loop().time() < deadline, group
            await asyncio.sleep(0.2)
        assert group["stuck"] is False and group["lag_seconds"] == 0
        metrics = await (await client.get("/metrics")).text()
        assert 'parley_consumer_events_total{consumer="watched",outcome="handled"} 12.0' in metrics


async def test_a_failing_group_is_reported_without_hosts_or_users(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    # Issue 16, hole 12: the exception's text (a database's host, a user) reached
    # /api/consumers and /readyz; now a classified reason does.
    leaky = 'connection to server at "crm-db.corp.internal" (10.9.8.7), port 5432 failed: user "crm_admin"'

    async def start() -> None:
        raise OSError(leaky)

    @consumer("leaky", topics=("chat",))
    async def handle(ev: ConsumedEvent) -> None:
        pass

    rt = Runtime.from_settings(Settings(kafka=kafka_settings, data_dir=str(tmp_path)))
    service = ConsumerService(rt, [dataclasses.replace(handle, start=start)], lag_interval_s=0.2)
    async with TestClient(TestServer(build_app(rt, [_Role(service)]))) as client:
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            resp = await client.get("/api/consumers")
            text = await resp.text()
            if resp.status == 200 and (await resp.json())["groups"][0]["error"]:
                break
            assert asyncio.get_running_loop().time() < deadline, text
            await asyncio.sleep(0.05)
        assert (await resp.json())["groups"][0]["error"] == "connection failed (OSError)"
        ready = await client.get("/readyz")
        ready_text = await ready.text()
        for leaked in ("crm-db", "10.9.8.7", "5432", "crm_admin"):
            assert leaked not in text and leaked not in ready_text, leaked

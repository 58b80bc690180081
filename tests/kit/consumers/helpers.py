"""Running a consumer runner in the background of a test, and polling for outcomes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from consumers.api import Consumer
from consumers.metrics import ConsumerMetrics
from consumers.runner import ConsumerRunner, ConsumerRunnerOptions
from contracts.topics import Topics
from parley.kafka.clients import make_admin, make_consumer
from parley.privacy.ring import KeyRing
from parley.settings import KafkaSettings


async def wait_for(cond: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    """Poll ``cond`` until true; fail with ``what`` after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.05)


async def eventually(cond: Callable[[], Awaitable[bool]], timeout_s: float = 30.0,
                     what: str = "") -> None:
    """Like :func:`wait_for` for an async condition (an HTTP request, a query)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(consumer: Consumer, k: KafkaSettings, topics: Topics,
                  registry: CollectorRegistry | None = None,
                  options: ConsumerRunnerOptions | None = None,
                  ring: KeyRing | None = None) -> AsyncIterator[ConsumerRunner]:
    runner = ConsumerRunner(consumer, k, topics, ConsumerMetrics(registry or CollectorRegistry()),
                            options=options, ring=ring)
    task = asyncio.create_task(runner.run())
    try:
        started = asyncio.create_task(runner.started.wait())
        done, _ = await asyncio.wait({task, started}, timeout=60,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            started.cancel()
            task.result()  # raises the runner's error
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 60)


async def committed(k: KafkaSettings, group: str) -> dict[TopicPartition, int]:
    admin = make_admin(k)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def end_offsets(k: KafkaSettings, topic_names: list[str]) -> dict[TopicPartition, int]:
    admin = make_admin(k)
    await admin.start()
    try:
        described = await admin.describe_topics(topic_names)
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    c = make_consumer(k, group_id=None)
    await c.start()
    try:
        return {tp: off for tp, off in (await c.end_offsets(tps)).items()}
    finally:
        await c.stop()

"""A parallel rebuild survives a worker process killed mid-rebuild, and an interrupted one
switches nothing (real worker processes, real broker, SQLite: the single-writer case)."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.topics import Topics
from parley.settings import KafkaSettings
from projector.rebuild import rebuild
from projector.rebuild_parallel import ParallelOptions, rebuild_parallel
from projector.rebuild_worker import MemberOptions
from projector.store import Store
from projector.stores import open_store
from tests.kit.live_projector import T0, conversation, delete_dlq, eventually, produce, snapshot

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def a_log(kafka: KafkaSettings, topics: Topics) -> int:
    envs = []
    for i in range(400):
        envs += conversation(f"chat-{i}", n_messages=1 + i % 3, agent=f"ag-{i % 4}",
                             visitor=f"vis-{i % 11}", start=T0 + timedelta(minutes=i))
    return len(await produce(kafka, topics, envs))


def options(url: str, kafka: KafkaSettings) -> ParallelOptions:
    # Small batches: the rebuild takes long enough to be hit in the middle.
    return ParallelOptions(workers=2, store_url=url, kafka=kafka, prefix=kafka.topic_prefix,
                           dead_letters=False, member=MemberOptions(max_records=8, settle_s=10.0))


async def committed(store: Store, copy: str) -> int:
    return sum((await store.offsets(copy)).values()) if copy in await store.list_projections() else 0


async def clean_copy(kafka: KafkaSettings, topics: Topics, tmp_path: Path) -> dict[str, object]:
    store = open_store(f"sqlite:///{tmp_path / 'clean.db'}")
    await store.open()
    try:
        report = await rebuild(store, kafka, topics, out=io.StringIO())
        return await snapshot(store, report.name)
    finally:
        await store.close()


async def test_a_worker_killed_mid_rebuild_is_replaced_and_the_copy_equals_a_clean_one(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    records = await a_log(kafka_settings, topics)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    await store.open()
    out = io.StringIO()
    try:
        task = asyncio.create_task(rebuild_parallel(store, options(url, kafka_settings),
                                                    out=out, progress_every_s=0.5))
        await eventually(lambda: _between(store, "v1", records // 10, records // 2),
                         "the workers committed a tenth of the log", timeout_s=90)
        victim = multiprocessing.active_children()[0]
        os.kill(victim.pid or 0, signal.SIGKILL)  # mid-transaction or mid-fold: no goodbye
        assert await committed(store, "v1") < records  # it died with work left
        report = await asyncio.wait_for(task, 240)
        assert report.records == records and await store.live_projection() == "v1"
        assert f"worker {victim.name} exited (-9) before the copy was done" in out.getvalue()
        # Nothing lost, nothing folded twice: every view equals a clean one-process rebuild.
        assert await snapshot(store, "v1") == await clean_copy(kafka_settings, topics, tmp_path)
    finally:
        await store.close()
        await delete_dlq(kafka_settings, topics)
    assert multiprocessing.active_children() == []


async def test_an_interrupted_parallel_rebuild_keeps_the_live_copy_and_stops_its_workers(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    records = await a_log(kafka_settings, topics)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    await store.open()
    try:
        first = await rebuild(store, kafka_settings, topics, out=io.StringIO())
        live = await snapshot(store, first.name)
        task = asyncio.create_task(rebuild_parallel(store, options(url, kafka_settings),
                                                    out=io.StringIO()))
        await eventually(lambda: _between(store, "v2", 1, records // 2),
                         "the workers started committing", timeout_s=90)
        task.cancel()  # what Ctrl-C does to the coordinator
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.live_projection() == "v1"
        assert await snapshot(store, "v1") == live  # reads still served by v1, untouched
        assert "v2" in await store.list_projections()  # kept, not live
        assert await committed(store, "v2") < records
        assert multiprocessing.active_children() == []  # stopped and joined: none left behind
    finally:
        await store.close()
        await delete_dlq(kafka_settings, topics)


async def _between(store: Store, copy: str, low: int, high: int) -> bool:
    done = await committed(store, copy)
    if done > high:
        pytest.fail(f"the rebuild got too far ({done}) before the test could interrupt it")
    return done >= low

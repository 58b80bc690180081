"""A parallel rebuild survives a worker process killed mid-rebuild, and an interrupted one
switches nothing (real worker processes, real broker, SQLite: the single-writer case)."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
from dataclasses import replace
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


async def test_workers_started_elsewhere_join_the_rebuild_and_the_copy_equals_a_clean_one(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    """``--join`` from another process (another machine in production: same store, same
    Kafka): its worker becomes a member of the rebuild group, and only the coordinator
    switches reads."""
    from parley.kafka.clients import make_admin
    from projector.rebuild import RebuildError
    from projector.rebuild_parallel import _target, join_rebuild

    records = await a_log(kafka_settings, topics)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store, elsewhere = open_store(url), open_store(url)
    await store.open()
    await elsewhere.open()
    group = topics.rebuild_group_id("v1")
    try:
        with pytest.raises(RebuildError, match="no copy v1 in the store"):
            await join_rebuild(elsewhere, options(url, kafka_settings), "v1", out=io.StringIO())
        slow = replace(options(url, kafka_settings), member=MemberOptions(max_records=2,
                                                                          settle_s=10.0))
        coordinator = asyncio.create_task(rebuild_parallel(store, slow, out=io.StringIO()))

        async def target_published() -> bool:
            return bool(await _target(kafka_settings, group))

        # Join as soon as the target is there: the coordinator's own workers are starting too.
        await eventually(target_published, "the coordinator published the target", timeout_s=60,
                         every_s=0.2)
        joined_out = io.StringIO()
        joiner = asyncio.create_task(join_rebuild(elsewhere, replace(slow, workers=1), "V1",
                                                  out=joined_out))

        async def three_members() -> bool:
            if joiner.done():  # it failed (its error is raised here) or the copy is done
                joiner.result()
                pytest.fail(f"the joiner ended before it was seen in the group: "
                            f"{joined_out.getvalue()}")
            admin = make_admin(kafka_settings)
            await admin.start()
            try:
                responses = await admin.describe_consumer_groups([group])
            finally:
                await admin.close()
            # (error_code, group_id, state, protocol_type, protocol, members, …)
            return sum(len(g[5]) for r in responses for g in r.groups if g[1] == group) == 3

        await eventually(three_members, "the joined worker is a member of the rebuild group",
                         timeout_s=90, every_s=0.3)
        assert await asyncio.wait_for(joiner, 240) == 0
        assert "joining with 1 workers in group" in joined_out.getvalue()
        report = await asyncio.wait_for(coordinator, 240)
        assert report.records == records and await store.live_projection() == "v1"
        assert await snapshot(store, "v1") == await clean_copy(kafka_settings, topics, tmp_path)
        with pytest.raises(RebuildError, match="is the live copy"):
            await join_rebuild(elsewhere, options(url, kafka_settings), "v1", out=io.StringIO())
    finally:
        await store.close()
        await elsewhere.close()
        await delete_dlq(kafka_settings, topics)
    assert multiprocessing.active_children() == []

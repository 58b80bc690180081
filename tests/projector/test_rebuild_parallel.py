"""Partition-parallel rebuilds: N worker processes (real ones, real broker) fold the log into the
new copy, and the copy equals what one process folds from the same log."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.topics import Topics
from parley.settings import KafkaSettings
from projector import rollups
from projector.rebuild import rebuild
from projector.rebuild_parallel import ParallelOptions, rebuild_parallel
from projector.rebuild_worker import MemberOptions
from projector.store import Fingerprint, Store
from projector.stores import open_store
from tests.kit.live_projector import (
    T0,
    conversation,
    delete_dlq,
    envelope,
    natterly_user_status,
    produce,
    shipper_conversation,
    snapshot,
)
from tests.kit.rollup_contract import EVERYTHING

pytestmark = pytest.mark.kafka

DIMENSIONS = rollups.DIMENSIONS


async def a_log(kafka: KafkaSettings, topics: Topics, chats: int = 120) -> int:
    """Chats whose visitors and agents are shared by chats in other partitions; records."""
    envs = []
    for i in range(chats):
        envs += conversation(f"chat-{i}", n_messages=1 + i % 4, agent=f"ag-{i % 5}",
                             visitor=f"vis-{i % 9}", start=T0 + timedelta(minutes=i),
                             close=i % 2 == 0)
    for i in range(12):
        envs += shipper_conversation(f"conv-{i}", n_messages=i % 3, start=T0 + timedelta(hours=i))
    envs += [envelope("natterly", "acme", natterly_user_status(f"ag-{i}", "Online", T0))
             for i in range(5)]
    return len(await produce(kafka, topics, envs))


async def fingerprints(store: Store, copy: str) -> list[Fingerprint]:
    out: list[Fingerprint] = []
    while page := await store.fingerprints(copy, after=(out[-1].kind, out[-1].id) if out else None):
        out.extend(page)
    return out


def options(url: str, kafka: KafkaSettings, workers: int, max_records: int) -> ParallelOptions:
    return ParallelOptions(workers=workers, store_url=url, kafka=kafka,
                           prefix=kafka.topic_prefix, dead_letters=False,
                           member=MemberOptions(max_records=max_records, settle_s=10.0))


async def test_two_workers_equal_one_process(store_url: str, kafka_settings: KafkaSettings,
                                             topics: Topics) -> None:
    records = await a_log(kafka_settings, topics)
    store = open_store(store_url)
    await store.open()
    try:
        one = await rebuild(store, kafka_settings, topics, out=io.StringIO(), max_records=37)
        assert one.name == "v1"
        expected, views = await fingerprints(store, "v1"), await snapshot(store, "v1")
        assert {f.kind for f in expected} == {"chat", "message", "visitor", "agent"}
        tallies = {dim: await store.report_tallies("v1", dim, EVERYTHING) for dim in DIMENSIONS}
        assert len(tallies["agent"]) == 10  # 5 agents, a day and a month tally each

        out = io.StringIO()
        two = await rebuild_parallel(store, options(store_url, kafka_settings, 2, 23),
                                     out=out, progress_every_s=0.0)
        # The switch verified v2 against v1 (any difference refuses it); compare here too.
        assert (two.name, two.previous, two.records) == ("v2", "v1", records)
        assert two.verification is not None and two.verification.differ == 0
        assert await fingerprints(store, "v2") == expected  # states and covers, byte for byte
        assert await snapshot(store, "v2") == views
        # The report roll-ups too: the workers' commits add to shared tallies.
        assert {dim: await store.report_tallies("v2", dim, EVERYTHING)
                for dim in DIMENSIONS} == tallies
        assert await store.live_projection() == "v2"
        text = out.getvalue()
        assert f"with 2 workers in group {topics.rebuild_group_id('v2')}" in text
        assert f"{records}/{records} records (100.0%)" in text and "ETA" in text
    finally:
        await store.close()
        await delete_dlq(kafka_settings, topics)


async def test_members_all_there_do_not_wait_when_few_partitions_hold_records(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    """A young log: records in two partitions of one topic, which the (round robin) assignor
    gives one member. With both members in the group it folds at once rather than wait out
    ``settle_s`` (the wait for members still to come), here longer than the test allows."""
    from receiver.partitioner import partition_for

    chosen = [c for c in (f"chat-{i}" for i in range(60))
              if partition_for(c.encode(), kafka_settings.partitions) in (0, 2)][:6]
    envs = [env for chat in chosen for env in conversation(chat, n_messages=2)]
    positions = await produce(kafka_settings, topics, envs)
    assert {(p.topic, p.partition) for p in positions} == {
        (topics.for_aggregate(envs[0].aggregate), 0), (topics.for_aggregate(envs[0].aggregate), 2)}
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    await store.open()
    try:
        waiting = replace(options(url, kafka_settings, 2, 50),
                          member=MemberOptions(max_records=50, settle_s=600.0))
        report = await asyncio.wait_for(rebuild_parallel(store, waiting, out=io.StringIO()), 60)
        assert report.records == len(envs)
        assert (await store.counts(report.name))["chat"] == len(chosen)
    finally:
        await store.close()
        await delete_dlq(kafka_settings, topics)


@pytest.mark.parametrize("given", ["0", "-3", "two", "1.5"])
def test_bad_worker_counts_are_one_line_and_change_nothing(given: str, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    env = {**os.environ, "PARLEY_STORE__URL": f'"sqlite:///{db}"',
           "PARLEY_KAFKA__BOOTSTRAP": '"127.0.0.1:1"', "PARLEY_DATA_DIR": f'"{tmp_path}"'}
    done = subprocess.run([sys.executable, "-m", "parley.cli", "projections", "rebuild",
                           f"--workers={given}"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"parley: error: --workers must be a whole number of at least 1, not {given!r}; "
        "nothing was changed"]
    assert not db.exists()


def test_join_without_a_copy_name_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    env = {**os.environ, "PARLEY_STORE__URL": f'"sqlite:///{db}"',
           "PARLEY_KAFKA__BOOTSTRAP": '"127.0.0.1:1"', "PARLEY_DATA_DIR": f'"{tmp_path}"'}
    done = subprocess.run([sys.executable, "-m", "parley.cli", "projections", "rebuild",
                           "--workers", "2", "--join"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "parley: error: --join needs the copy's name, as the starting process printed it "
        "(`parley projections rebuild NAME --workers N --join`)"]
    assert not db.exists()


def test_the_command_rebuilds_with_workers(kafka_settings: KafkaSettings, topics: Topics,
                                           tmp_path: Path) -> None:
    records = asyncio.run(a_log(kafka_settings, topics, chats=30))
    db = tmp_path / "state.db"
    env = {**os.environ, "PARLEY_STORE__URL": f'"sqlite:///{db}"',
           "PARLEY_KAFKA__BOOTSTRAP": f'"{kafka_settings.bootstrap}"',
           "PARLEY_KAFKA__TOPIC_PREFIX": f'"{kafka_settings.topic_prefix}"',
           "PARLEY_DATA_DIR": f'"{tmp_path}"'}
    done = subprocess.run([sys.executable, "-m", "parley.cli", "projections", "rebuild",
                           "--workers", "2"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert f"rebuilt v1: {records} records in" in done.stdout
    assert "with 2 workers in group" in done.stderr
    assert "live projection switched none -> v1" in done.stderr
    # At the default log level (INFO) the workers' own log lines stay out of the output.
    assert not [line for line in done.stderr.splitlines() if line.startswith("{")]

"""Crash safety: SIGKILL the projector process mid-stream, restart it, compare with a clean rebuild.

The projector runs as the real command (``python -m parley.cli projector --config …``) on the
real broker and a real SQLite file, folding a backlog in small batches, and is killed with
SIGKILL when it has folded a random part of it (seeded; the seed is printed, and
``PARLEY_CRASH_SEED`` replays it), several times. A final clean run catches up and is
stopped with SIGINT. Its state must equal a clean rebuild of the same log into a fresh
store: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from contracts.envelope import Envelope
from contracts.position import Position
from contracts.topics import Topics
from parley.kafka.clients import make_producer
from parley.kafka.launcher import free_ports
from parley.settings import KafkaSettings
from projector.store import Store
from projector.stores import open_store
from tests.kit.live_projector import (
    T0,
    applied,
    conversation,
    delete_dlq,
    eventually,
    last_positions,
    produce,
    rebuilt_snapshot,
    shipper_conversation,
    snapshot,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = 4


def _log(rng: random.Random) -> list[Envelope]:
    """About 2,000 records: both providers, with redeliveries (exact duplicates) mixed in."""
    envs: list[Envelope] = []
    for i in range(250):
        envs += conversation(f"chat-{i}", n_messages=1 + i % 5, agent=f"ag-{i % 7}",
                             start=T0 + timedelta(minutes=i), close=i % 3 != 0)
    for i in range(80):
        envs += shipper_conversation(f"conv-{i}", n_messages=i % 4, start=T0 + timedelta(hours=i))
    envs += rng.sample(envs, len(envs) // 10)  # at-least-once delivery
    rng.shuffle(envs)  # different chats interleave; one chat's records keep their order per key
    return envs


async def _total_offset(store: Store) -> int:
    live = await store.live_projection()
    return sum((await store.offsets(live)).values()) if live else 0


async def _start(config: Path, port: int) -> asyncio.subprocess.Process:
    log_path = config.with_suffix(".log")
    start = log_path.stat().st_size if log_path.exists() else 0  # this run's lines only
    with log_path.open("ab") as log_file:  # a file, not a pipe: a full pipe would block it
        proc = await asyncio.create_subprocess_exec(
            # Small batches: many store transactions per second, so a kill lands inside one.
            sys.executable, "-m", "parley.cli", "projector", "--config", str(config),
            "--max-batch", "50", stdout=asyncio.subprocess.DEVNULL, stderr=log_file)

    async def ready() -> bool:
        # Listening is enough: the kill waits for fold progress in the store. /readyz is no
        # signal here, as its answer is cached for a second, long enough to fold the backlog.
        if proc.returncode is not None:
            raise AssertionError(f"projector exited {proc.returncode}: "
                                 f"{log_path.read_text()[-2000:]}")
        return b'"msg":"listening"' in log_path.read_bytes()[start:]

    await eventually(ready, "projector subprocess ready", timeout_s=60, every_s=0.1)
    return proc


async def _feed(kafka: KafkaSettings, topics: Topics, envs: list[Envelope],
                out: list[Position]) -> None:
    producer = make_producer(kafka, linger_ms=5)
    await producer.start()
    try:
        out += await produce(kafka, topics, envs, producer)
    finally:
        await producer.stop()


async def test_sigkill_mid_batch_restart_equals_clean_rebuild(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    seed = int(os.environ.get("PARLEY_CRASH_SEED") or random.randrange(2**32))
    print(f"crash test seed: {seed} (replay with PARLEY_CRASH_SEED={seed})")
    rng = random.Random(seed)
    envs = _log(rng)
    chunks = [envs[i::KILLS] for i in range(KILLS)]
    [port] = free_ports(1)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write_config(tmp_path / "parley.toml", kafka_settings, url, port=port,
                          log_level="INFO")
    observer = open_store(url)  # reads the file the subprocess writes (SQLite WAL)
    await observer.open()
    positions: list[Position] = []
    lagging_kills = 0
    try:
        for kill, chunk in enumerate(chunks):
            # A backlog, so the projector is busy folding batches when the kill comes; the
            # kill point is a random fraction of the backlog (not a random time, which on a
            # fast machine could fall after it caught up).
            await _feed(kafka_settings, topics, chunk, positions)
            before = await _total_offset(observer)
            target = before + int(len(chunk) * rng.uniform(0.1, 0.7))
            proc = await _start(config, port)
            try:

                async def reached(target: int = target) -> bool:
                    return await _total_offset(observer) >= target

                try:
                    await eventually(reached, f"progress before kill {kill + 1}", timeout_s=60,
                                     every_s=0.005)
                except AssertionError as exc:
                    log = config.with_suffix(".log").read_text()[-6000:]
                    raise AssertionError(f"{exc}; at {await _total_offset(observer)} of target "
                                         f"{target}; projector log:\n{log}") from None
                proc.send_signal(signal.SIGKILL)
                assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            at_kill = await _total_offset(observer)
            if at_kill < sum(last_positions(positions).values()):
                lagging_kills += 1  # killed with records still to fold: mid-stream
            print(f"kill {kill + 1}: {at_kill - before}/{len(chunk)} of this backlog applied")
        assert lagging_kills >= KILLS // 2, "most kills came after the projector had caught up"

        # A clean run catches up and stops on SIGINT with exit code 0.
        proc = await _start(config, port)
        await eventually(lambda: applied(observer, positions), "final catch-up", timeout_s=120)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        live = await observer.live_projection()
        assert live is not None
        recovered = await snapshot(observer, live)
    finally:
        await observer.close()

    try:
        report, rebuilt = await rebuilt_snapshot(kafka_settings, topics,
                                                 f"sqlite:///{tmp_path / 'clean.db'}")
    finally:
        await delete_dlq(kafka_settings, topics)
    assert report.records == len(positions)
    assert rebuilt["counts"] == recovered["counts"]
    assert len(recovered["chats"]) == 330
    assert recovered == rebuilt
    by_id = {c["id"]: c for c in recovered["chats"]}
    assert by_id["chat-4"]["message_count"] == 5  # redeliveries counted once
    assert by_id["conv-3"]["message_count"] == 3

"""Parley's own contenders of ``bench/replay.py``, each run in its own process by
``replay.run_child``: the rebuild (``projector.rebuild.rebuild`` into a fresh SQLite store,
optionally into the outbox and with a state publisher) and the live runner from an empty
store until caught up (optionally publishing states, sealed or not)."""

from __future__ import annotations

import asyncio
import io
import resource
import time
from pathlib import Path
from typing import Any

from contracts.topics import Topics
from parley.settings import KafkaSettings

__all__ = ["cpu_seconds", "run_live", "run_rebuild"]


def cpu_seconds() -> float:
    """CPU seconds of this process so far, all threads (a client library's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_rebuild(bootstrap: str, prefix: str, partitions: int, work: Path, *,
                  states: bool = False, outbox: bool = False) -> dict[str, Any]:
    """``projector.rebuild.rebuild``; with ``outbox``, into the outbox too (``rebuild
    --publish-states``); with ``states`` as well, while a state publisher (the live
    projector's, here in the same process) sends it to the state topics: timed until the
    outbox is empty."""
    from projector.rebuild import rebuild
    from projector.sqlite_store import SqliteStore
    from projector.state_publisher import StatePublisher

    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions)
    topics = Topics(prefix=prefix)
    store = SqliteStore(work / "state.db")
    await store.open()
    producer = StatePublisher.make_producer(k)
    stop = asyncio.Event()
    try:
        if states:
            await StatePublisher.ensure_topics(k, topics)
            await producer.start()
        publisher = StatePublisher(store, producer, topics, poll_s=1.0)
        task = asyncio.create_task(publisher.run(stop)) if states else None
        started, cpu = time.perf_counter(), cpu_seconds()
        report = await rebuild(store, k, topics, out=io.StringIO(), publish_states=outbox)
        if task is not None:
            stop.set()
            await task  # its last round: whatever the rebuild's last batches left
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        counts = await store.counts(report.name)
    finally:
        stop.set()
        if states:
            await producer.stop()
        await store.close()
    return {"records": report.records, "seconds": seconds, "cpu_seconds": cpu,
            "dead_letters": report.dead_letters, "rows": counts,
            "states_published": publisher.published}


async def run_live(bootstrap: str, prefix: str, partitions: int, work: Path, group: str, *,
                states: bool = False, sealed: bool = False) -> dict[str, Any]:
    """The live runner (``parley projector``), from an empty store until caught up with the
    log; with ``states``, publishing every committed state (outbox + state publisher); with
    ``sealed`` too, their personal parts sealed (a key ring over a SQLite key store)."""
    from prometheus_client import CollectorRegistry

    from parley.kafka.clients import make_producer
    from projector.dlq import KafkaDeadLetters
    from projector.metrics import ProjectorMetrics
    from projector.rebuild import event_partitions
    from projector.runner import ProjectorRunnerOptions, Runner
    from projector.sqlite_store import SqliteStore
    from projector.state_publisher import StatePublisher

    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions)
    topics = Topics(prefix=prefix)
    store = SqliteStore(work / "state.db")
    await store.open()
    await KafkaDeadLetters.ensure_topic(k, topics)
    await StatePublisher.ensure_topics(k, topics)
    producer = make_producer(k)
    states_producer = StatePublisher.make_producer(k)
    await producer.start()
    await states_producer.start()
    metrics = ProjectorMetrics.create(CollectorRegistry())
    ring = None
    if sealed:
        from parley.privacy.keys import open_key_store
        from parley.privacy.master import MasterKeys, new_master_key, parse_master_key
        from parley.privacy.ring import KeyRing

        ring = KeyRing(open_key_store(f"sqlite:///{work / 'keys.db'}",
                                      MasterKeys(parse_master_key(new_master_key(), "bench"))))
    publisher = (StatePublisher(store, states_producer, topics, poll_s=1.0, ring=ring)
                 if states else None)
    runner = Runner(store=store, kafka=k, topics=topics, metrics=metrics,
                    dead_letters=KafkaDeadLetters(producer, topics, metrics),
                    options=ProjectorRunnerOptions(group_id=group), publisher=publisher)
    from parley.kafka.clients import make_consumer

    probe = make_consumer(k, group_id=None)
    await probe.start()
    try:
        tps = await event_partitions(k, topics)
        end = {(tp.topic, tp.partition): off for tp, off in (await probe.end_offsets(tps)).items()}
    finally:
        await probe.stop()
    records = sum(end.values())
    stop = asyncio.Event()
    started, cpu = time.perf_counter(), cpu_seconds()
    task = asyncio.create_task(runner.run(stop))
    try:
        while True:
            live = runner.projection
            stored = await store.offsets(live) if live is not None else {}
            done = live is not None and all(stored.get(tp, 0) >= off for tp, off in end.items())
            if done and (publisher is None or await store.outbox(1) == []):
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)  # polling the store for the end: the runner has no hook
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        stop.set()
        await task
        await states_producer.stop()
        await producer.stop()
        await store.close()
        if ring is not None:
            await ring.close()
    return {"records": records, "seconds": seconds, "cpu_seconds": cpu, "dead_letters": 0,
            "states_published": publisher.published if publisher else 0}

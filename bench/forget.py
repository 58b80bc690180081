"""Forgetting one data subject with 1,000 chats: keys gone, projection and search clean.

Issue 20's target: under 10 s from the request to a clean state. Set-up (not timed): a
real broker, a SQLite store and key store, the projector (with its key ring, state
publisher and erasure ledger) and the built-in search consumer running in this process;
``--chats`` chats of one Natterly visitor and as many of other visitors, each the golden
``ChatInitiated`` webhook (two messages) with fresh ids, parsed by the receiver's code and
sealed under their chat's key, folded and indexed. Timed, as ``parley visitors forget``
does it: resolve the subject from the live projection, destroy its keys, record the request
and publish its forgotten records; then until the live copy holds every aggregate erased,
and until the search index holds none of the subject's chats. Reported: each step's
seconds and the total, best and median over ``--runs`` (a new subject each run).
Uses ``$PARLEY_BENCH_KAFKA`` if set, else starts a LocalKafka on free ports (and stops it).

    .venv/bin/python bench/forget.py [--chats 1000] [--runs 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and bench/consumers.py
# would shadow the ``consumers`` package used here.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import orjson  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from consumers.metrics import ConsumerMetrics  # noqa: E402
from consumers.runner import ConsumerRunner  # noqa: E402
from consumers.search.consumer import search_consumer  # noqa: E402
from consumers.search.index import SqliteSearchIndex  # noqa: E402
from contracts.envelope import encode_envelope  # noqa: E402
from contracts.ingest import parse_webhook  # noqa: E402
from contracts.topics import Topics  # noqa: E402
from parley.erasure_ledger import LedgerWriter  # noqa: E402
from parley.kafka.clients import make_producer  # noqa: E402
from parley.kafka.topics import apply_topics  # noqa: E402
from parley.privacy.keys_sqlite import SqliteKeyStore  # noqa: E402
from parley.privacy.master import MasterKeys, new_master_key, parse_master_key  # noqa: E402
from parley.privacy.ring import KeyRing  # noqa: E402
from parley.settings import KafkaSettings  # noqa: E402
from parley.testing.kafka import throwaway_kafka  # noqa: E402
from projector.dlq import KafkaDeadLetters  # noqa: E402
from projector.forget import erased_in, forget, resolve  # noqa: E402
from projector.metrics import ProjectorMetrics  # noqa: E402
from projector.runner import ProjectorRunnerOptions, Runner  # noqa: E402
from projector.state_publisher import StatePublisher  # noqa: E402
from projector.store import Store  # noqa: E402
from projector.stores import open_store  # noqa: E402

GOLDEN = (Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "webhooks" / "natterly"
          / "chat_initiated_identified_visitor.json")


def bodies(visitor: str, chats: int) -> list[tuple[str, bytes]]:
    """``chats`` copies of the golden webhook for ``visitor``, each with fresh chat and
    message ids: (chat id, body)."""
    doc = orjson.loads(GOLDEN.read_bytes())
    out = []
    for _ in range(chats):
        chat = str(uuid.uuid4())
        doc["payload"]["chat"]["uuid"] = chat
        doc["payload"]["chat"]["visitor"]["uuid"] = visitor
        doc["payload"]["chat"]["session_id"] = str(uuid.uuid4())
        for message in doc["payload"]["messages"]:
            message["uuid"], message["chat"] = str(uuid.uuid4()), chat
        out.append((chat, orjson.dumps(doc)))
    return out


async def produce(kafka: KafkaSettings, topics: Topics, ring: KeyRing,
                  webhooks: list[tuple[str, bytes]]) -> None:
    producer = make_producer(kafka)
    await producer.start()
    try:
        sent = []
        for _, body in webhooks:
            env = await ring.seal(parse_webhook("natterly", "acme", body,
                                                received_at=datetime.now(UTC)))
            sent.append(await producer.send(topics.for_aggregate(env.aggregate),
                                            encode_envelope(env), key=env.record_key))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def running(kafka: KafkaSettings, topics: Topics, store: Store, ring: KeyRing,
                  index: SqliteSearchIndex) -> AsyncIterator[None]:
    """The projector (ring, state publisher, ledger) and the search consumer, as tasks."""
    metrics = ProjectorMetrics.create(CollectorRegistry())
    await KafkaDeadLetters.ensure_topic(kafka, topics)
    await StatePublisher.ensure_topics(kafka, topics)
    producer, states = make_producer(kafka), StatePublisher.make_producer(kafka)
    await producer.start()
    await states.start()
    ledger = LedgerWriter(kafka, topics)
    runner = Runner(store=store, kafka=kafka, topics=topics,
                    dead_letters=KafkaDeadLetters(producer, topics, metrics), metrics=metrics,
                    options=ProjectorRunnerOptions(group_id=f"{topics.prefix}-p",
                                                   poll_timeout_ms=50),
                    publisher=StatePublisher(store, states, topics, poll_s=0.1), ring=ring,
                    ledger=ledger)
    search = ConsumerRunner(search_consumer(index), kafka, topics,
                            ConsumerMetrics(CollectorRegistry()))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(runner.run(stop)), asyncio.create_task(search.run(stop))]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await ledger.close()
        await states.stop()
        await producer.stop()


async def until(check: object, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("waited too long")
        await asyncio.sleep(0.02)


def indexed_chats(index_path: Path, chats: list[str]) -> int:
    import sqlite3

    db = sqlite3.connect(index_path)
    try:
        marks = ",".join("?" * len(chats))
        return int(db.execute(f"SELECT count(*) FROM chats WHERE chat_id IN ({marks})",  # noqa: S608
                              chats).fetchone()[0])
    finally:
        db.close()


async def one_run(kafka: KafkaSettings, chats: int, work: Path) -> dict[str, float]:
    topics = Topics(prefix=f"bench-forget-{uuid.uuid4().hex[:8]}")
    await apply_topics(kafka, topics.specs(kafka.partitions))
    keys = SqliteKeyStore(work / f"{topics.prefix}-keys.db",
                          MasterKeys(parse_master_key(new_master_key(), "bench")))
    ring = KeyRing(keys)
    store = open_store(f"sqlite:///{work / f'{topics.prefix}-state.db'}")
    await store.open()
    index_path = work / f"{topics.prefix}-search.db"
    index = SqliteSearchIndex(index_path)
    subject_chats = bodies("c0ffee00-0000-4000-8000-000000000001", chats)
    others = [item for n in range(chats) for item in bodies(f"other-{n}", 1)]
    await produce(kafka, topics, ring, subject_chats + others)
    mine = [chat for chat, _ in subject_chats]
    async with running(kafka, topics, store, ring, index):
        async def folded() -> bool:
            live = await store.live_projection()
            return live is not None and (await store.counts(live))["chat"] == 2 * chats

        await until(folded)
        await until(lambda: _true(indexed_chats(index_path, mine) == chats))
        t0 = time.perf_counter()
        subject = await resolve(store, visitor="c0ffee00-0000-4000-8000-000000000001")
        t_resolved = time.perf_counter()
        request = await forget(subject, store=store, kafka=kafka, topics=topics,
                               keys=ring.store, ring=ring)
        t_published = time.perf_counter()
        live = await store.live_projection()
        assert live is not None
        aggregates = list(request.aggregates)

        async def erased() -> bool:
            return len(await erased_in(store, live, request.erasure_id, aggregates)) == len(
                aggregates)

        await until(erased)
        t_erased = time.perf_counter()
        await until(lambda: _true(indexed_chats(index_path, mine) == 0))
        t_clean = time.perf_counter()
        assert request.keys_destroyed == chats, request.keys_destroyed
    await ring.close()
    await store.close()
    return {"resolve": t_resolved - t0, "keys+publish": t_published - t_resolved,
            "projection": t_erased - t_published, "search": t_clean - t_erased,
            "total": t_clean - t0, "aggregates": float(len(aggregates))}


async def _true(value: bool) -> bool:
    return value


async def main_async(args: argparse.Namespace, bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=6, replication_factor=1)
    results = []
    with tempfile.TemporaryDirectory(prefix="parley-bench-forget-") as tmp:
        for n in range(args.runs):
            got = await one_run(kafka, args.chats, Path(tmp))
            results.append(got)
            print(f"run {n + 1}: " + ", ".join(
                f"{k} {v:.0f}" if k == "aggregates" else f"{k} {v:.2f} s" for k, v in got.items()))
    totals = [r["total"] for r in results]
    print(f"forget of one subject with {args.chats} chats: best {min(totals):.2f} s, median "
          f"{statistics.median(totals):.2f} s (target < 10 s: "
          f"{'met' if statistics.median(totals) < 10 else 'not met'}); cores {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    bootstrap = os.environ.get("PARLEY_BENCH_KAFKA")
    if bootstrap:
        asyncio.run(main_async(args, bootstrap))
        return
    with throwaway_kafka("parley-bench-kafka-", heap_mb=768) as cluster:
        asyncio.run(main_async(args, cluster.bootstrap))


if __name__ == "__main__":
    main()

"""Consumer runtime throughput against aiokafka's raw ``getmany`` loop, in the same run.

Produces N Natterly chat envelopes (realistic bodies, 1,000 chats) to a fresh topic, then
times, each from its first record to its N-th and including commits where it commits:

- ``raw``: aiokafka ``getmany`` in a loop, counting records (the floor: no decoding, no
  commit);
- ``empty``: the consumer runtime with an empty handler (per-key lanes, offset tracking,
  offsets committed in the background after every batch);
- ``search``: the built-in search consumer (envelope decode, normalise, FTS5 upserts).

Each run measures raw, empty, raw again, search, each with a fresh consumer group. Reported:
the best rate of each mode; the median over runs of the ratio to the raw rates measured right
around it; and the same ratio in CPU time of this process per event, which other processes'
load on a shared machine does not move (it includes aiokafka's background fetching, and the
runtime's commits, heartbeats and dead-letter follower). Target: empty >=
0.7 x raw. Uses ``$PARLEY_BENCH_KAFKA`` if set, else starts a LocalKafka on free ports in a
temporary directory (and stops it).

    .venv/bin/python bench/consumers.py [--events 100000] [--runs 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and this module ("consumers")
# would shadow the ``consumers`` package it measures.
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
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import orjson  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from consumers.api import ConsumedEvent, Consumer  # noqa: E402
from consumers.metrics import ConsumerMetrics  # noqa: E402
from consumers.runner import ConsumerRunner, ConsumerRunnerOptions  # noqa: E402
from consumers.search.consumer import search_consumer  # noqa: E402
from consumers.search.index import SqliteSearchIndex  # noqa: E402
from contracts.envelope import encode_envelope  # noqa: E402
from contracts.ingest import parse_webhook  # noqa: E402
from contracts.topics import Topics  # noqa: E402
from parley.kafka.clients import make_admin, make_consumer, make_producer  # noqa: E402
from parley.kafka.topics import apply_topics  # noqa: E402
from parley.settings import KafkaSettings  # noqa: E402
from parley.testing.kafka import throwaway_kafka  # noqa: E402

FETCH = {"max_partition_fetch_bytes": 4 << 20, "fetch_max_bytes": 64 << 20}


def envelopes(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        chat = f"chat-{i % 1000}"
        body = orjson.dumps({
            "event": "ChatAccepted" if i % 3 else "ChatInitiated", "timestamp": 1767600000 + i,
            "auth_token": "tok",
            "payload": {"chat": {"uuid": chat, "subject": f"Order {i % 97} question",
                                 "visitor": {"uuid": f"v{i % 1000}", "name": f"Visitor {i % 1000}"},
                                 "department": {"uuid": "d1", "name": "Sales"},
                                 "site": {"uuid": "s1", "name": "Shop"}},
                        "messages": [{"uuid": f"m{i}", "text": f"message number {i} about "
                                      f"delivery and refund policy", "posted_by_visitor": True,
                                      "created_at": 1767600000 + i,
                                      "author": {"type": "visitor", "name": "Vera"}}]}})
        env = parse_webhook("natterly", "bench", body, received_at=datetime.now(UTC))
        out.append((env.record_key, encode_envelope(env)))
    return out


async def produce(k: KafkaSettings, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    producer = make_producer(k, linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class Rate:
    """Events per second of wall-clock time, and CPU microseconds of this process per event
    (the CPU figure does not move with other processes' load on a shared machine)."""

    def __init__(self, n: int, wall_s: float, cpu_s: float) -> None:
        self.per_s = n / wall_s
        self.cpu_us = cpu_s / n * 1e6


async def raw(k: KafkaSettings, topic: str, n: int) -> Rate:
    c = make_consumer(k, topic, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}", **FETCH)
    await c.start()
    try:
        seen, t0, c0 = 0, 0.0, 0.0
        while seen < n:
            batch = await c.getmany(timeout_ms=200, max_records=2000)
            for records in batch.values():
                if not t0 and records:
                    t0, c0 = time.perf_counter(), time.process_time()
                seen += len(records)
        return Rate(n, time.perf_counter() - t0, time.process_time() - c0)
    finally:
        await c.stop()


async def through_runtime(k: KafkaSettings, topics: Topics, n: int, make: str,
                          tmp: Path) -> Rate:
    state = {"seen": 0, "t0": 0.0, "t1": 0.0, "c0": 0.0, "c1": 0.0}
    done = asyncio.Event()

    def count(m: int) -> None:
        if not state["t0"]:
            state["t0"], state["c0"] = time.perf_counter(), time.process_time()
        state["seen"] += m
        if state["seen"] >= n and not done.is_set():
            state["t1"], state["c1"] = time.perf_counter(), time.process_time()
            done.set()

    name = f"bench-{make}-{uuid.uuid4().hex[:8]}"
    if make == "empty":
        async def handle(ev: ConsumedEvent) -> None:
            count(1)

        consumer = Consumer(name=name, handle=handle, topics=("chat",))
    else:
        index = SqliteSearchIndex(tmp / f"{name}.db")
        inner = search_consumer(index, name=name)
        assert inner.handle_batch is not None
        batch_handler = inner.handle_batch

        async def handle_batch(events: Sequence[ConsumedEvent]) -> None:
            await batch_handler(events)
            count(len(events))

        consumer = Consumer(name=name, handle_batch=handle_batch, topics=("chat",),
                            concurrency=1, start=inner.start, stop=inner.stop)
    runner = ConsumerRunner(consumer, k, topics, ConsumerMetrics(CollectorRegistry()),
                            options=ConsumerRunnerOptions(max_records=2000))
    task = asyncio.create_task(runner.run())
    await asyncio.wait({task, asyncio.create_task(done.wait())},
                       return_when=asyncio.FIRST_COMPLETED)
    runner.stop()
    await task
    return Rate(n, state["t1"] - state["t0"], state["c1"] - state["c0"])


Results = dict[str, list[Rate]]


async def bench(bootstrap: str, n: int, runs: int) -> Results:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=6)
    topics = Topics(prefix=prefix)
    await apply_topics(k, topics.specs(6))
    t = time.perf_counter()
    await produce(k, topics.chat, envelopes(n))
    print(f"produced {n} envelopes in {time.perf_counter() - t:.1f}s")
    results: Results = {"raw": [], "empty": [], "raw2": [], "search": []}
    try:
        with tempfile.TemporaryDirectory(prefix="parley-bench-search-") as tmp:
            for run in range(runs):
                # raw, empty, raw again, search: each ratio uses the raw runs on either side,
                # so that load drifting during the run cancels out.
                for mode in results:
                    rate = (await raw(k, topics.chat, n) if mode.startswith("raw")
                            else await through_runtime(k, topics, n, mode, Path(tmp)))
                    results[mode].append(rate)
                    print(f"run {run + 1} {mode.rstrip('2'):<7} {rate.per_s:>10,.0f} events/s "
                          f"{rate.cpu_us:>7.2f} us CPU/event")
    finally:  # the broker may be shared: leave no topics behind
        admin = make_admin(k)
        await admin.start()
        try:
            await admin.delete_topics([t for t in await admin.list_topics()
                                       if t.startswith(f"{prefix}.")])
        finally:
            await admin.close()
    return results


def report(results: Results, n: int) -> None:
    raw_pairs = list(zip(results["raw"], results["raw2"], strict=True))
    wall = {m: [r.per_s / ((a.per_s + b.per_s) / 2) for r, (a, b) in
                zip(results[m], raw_pairs, strict=True)] for m in ("empty", "search")}
    cpu = {m: [((a.cpu_us + b.cpu_us) / 2) / r.cpu_us for r, (a, b) in
               zip(results[m], raw_pairs, strict=True)] for m in ("empty", "search")}
    best_raw = max(r.per_s for r in results["raw"] + results["raw2"])
    print(f"\n{n} events, 6 partitions, 1,000 keys, {len(raw_pairs)} runs:")
    print(f"  {'mode':<7} {'best events/s':>14} {'best/best raw':>14} {'median ratio':>13} "
          f"{'CPU ratio':>10}")
    print(f"  {'raw':<7} {best_raw:>14,.0f} {1:>14.2f} {1:>13.2f} {1:>10.2f}")
    for m in ("empty", "search"):
        best = max(r.per_s for r in results[m])
        print(f"  {m:<7} {best:>14,.0f} {best / best_raw:>14.2f} "
              f"{statistics.median(wall[m]):>13.2f} {statistics.median(cpu[m]):>10.2f}")
    w, c = statistics.median(wall["empty"]), statistics.median(cpu["empty"])
    print(f"target empty >= 0.70 x raw: wall-clock median {w:.2f} "
          f"({'met' if w >= 0.7 else 'MISSED'}), CPU median {c:.2f} "
          f"({'met' if c >= 0.7 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    # aiokafka logs transient metadata misses (a topic just created) at ERROR; not our figures.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("PARLEY_BENCH_KAFKA") or stack.enter_context(
            throwaway_kafka("parley-bench-kafka-", heap_mb=768)).bootstrap
        results = asyncio.run(bench(bootstrap, args.events, args.runs))
    report(results, args.events)


if __name__ == "__main__":
    main()

"""Consumer runtime throughput against aiokafka's raw ``getmany`` loop, in the same run.

Produces N Natterly chat envelopes (realistic bodies, 1,000 chats) to a fresh topic, then
times, each from its first record to its N-th and including commits where it commits:

- ``raw``: aiokafka ``getmany`` in a loop, counting records (the floor: no decoding, no
  commit);
- ``empty``: the consumer runtime with an empty handler (per-key lanes, offset tracking,
  offsets committed in the background after every batch);
- ``search``: the built-in search consumer as it is fed in production: it reads the chat
  *state* topic, so the same envelopes are first folded by the projector's fold (in batches
  of ``--fold-batch`` records, as the projector commits them) and each batch's changed chats
  and messages are sent by the projector's own ``StatePublisher`` (its hand-over path);
  timed from the first state record to the last, SQLite FTS5 with ``synchronous=FULL``.

Each run measures raw, empty, raw again, search, each with a fresh consumer group. Reported:
the best rate of each mode; the median over runs of the ratio to the raw rates measured right
around it; and the same ratio in CPU time of this process per event, which other processes'
load on a shared machine does not move (it includes aiokafka's background fetching, and the
runtime's commits, heartbeats and dead-letter follower). Search is reported in state records
per second and in the events per second they stand for (states/s x events / states). Target:
empty >= 0.8 x raw (issue 19); search >= 30,000 events/s. ``--modes search`` measures search alone
(against another checkout: run it with ``PYTHONPATH=<checkout>``). Uses
``$PARLEY_BENCH_KAFKA`` if set, else starts a LocalKafka on free ports in a temporary
directory (and stops it).

    .venv/bin/python bench/consumers.py [--events 100000] [--runs 5] [--modes search]
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
import dataclasses  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import msgspec  # noqa: E402
import orjson  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from consumers.api import ConsumedEvent, Consumer  # noqa: E402
from consumers.metrics import ConsumerMetrics  # noqa: E402
from consumers.runner import ConsumerRunner, ConsumerRunnerOptions  # noqa: E402
from consumers.search.consumer import search_consumer  # noqa: E402
from consumers.search.index import SqliteSearchIndex  # noqa: E402
from contracts.envelope import encode_envelope  # noqa: E402
from contracts.ingest import parse_webhook  # noqa: E402
from contracts.normalise import normalise  # noqa: E402
from contracts.topics import Topics  # noqa: E402
from parley.kafka.clients import make_admin, make_consumer, make_producer  # noqa: E402
from parley.kafka.topics import apply_topics  # noqa: E402
from parley.settings import KafkaSettings  # noqa: E402
from parley.testing.kafka import throwaway_kafka  # noqa: E402
from projector.fold import affected, apply  # noqa: E402
from projector.outbox import OutboxEntry, covers_of, entry_for, wrap_state  # noqa: E402
from projector.state_publisher import StatePublisher  # noqa: E402
from projector.states import AggregateRef, FoldState  # noqa: E402
from projector.views import row_for  # noqa: E402

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


def folded(records: Sequence[tuple[bytes, bytes]], topic: str, batch: int
           ) -> list[list[OutboxEntry]]:
    """The outbox entries the projector commits folding ``records`` (one partition of
    ``topic``, offsets in order) in batches of ``batch`` records: per batch, the latest state
    of every chat, message, visitor and agent it changed, as ``projector.outbox`` builds them."""
    from contracts.envelope import decode_envelope

    states: dict[AggregateRef, FoldState] = {}
    last: dict[AggregateRef, dict[tuple[str, int], int]] = {}
    out = []
    for lo in range(0, len(records), batch):
        changed: set[AggregateRef] = set()
        for offset in range(lo, min(lo + batch, len(records))):
            for event in normalise(decode_envelope(records[offset][1])):
                for ref in affected(event):
                    states[ref] = apply(ref, states.get(ref), event)
                    last.setdefault(ref, {})[(topic, 0)] = offset
                    changed.add(ref)
        entries = []
        for ref in sorted(changed):
            row = row_for(ref, states[ref])
            row = msgspec.structs.replace(row, state=wrap_state(row.state, covers_of(last[ref])))
            entries.append(entry_for(row, token=lo + 1))
        out.append(entries)
    return out


class _NoOutbox:
    """The publisher's store, for entries handed over from memory: nothing to delete."""

    async def ack_outbox(self, tokens: Sequence[int]) -> None:
        pass


async def publish_states(k: KafkaSettings, topics: Topics, batches: list[list[OutboxEntry]]
                         ) -> int:
    """Send ``batches`` to the state topics with the projector's ``StatePublisher`` (hand-over
    path: one record batch per partition, routed by chat id); how many chat-topic states."""
    await StatePublisher.ensure_topics(k, topics)
    producer = StatePublisher.make_producer(k)
    await producer.start()
    try:
        publisher = StatePublisher(_NoOutbox(), producer, topics)  # type: ignore[arg-type]
        for entries in batches:
            publisher.handoff(entries)
            await publisher.publish_handed()
    finally:
        await producer.stop()
    return sum(e.kind in ("chat", "message") for entries in batches for e in entries)


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
                          tmp: Path, max_records: int | None = None) -> Rate:
    """``n`` records through the consumer runtime: events (``empty``) or states (``search``)."""
    state = {"seen": 0, "t0": 0.0, "t1": 0.0, "c0": 0.0, "c1": 0.0, "batches": 0, "in": 0.0}
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
    else:  # the search consumer as it is built, its batch handler wrapped to count
        inner = search_consumer(SqliteSearchIndex(tmp / f"{name}.db"), name=name)
        assert inner.handle_batch is not None
        batch_handler = inner.handle_batch

        async def handle_batch(events: Sequence[ConsumedEvent]) -> None:
            t = time.perf_counter()
            await batch_handler(events)
            state["batches"] += 1
            state["in"] += time.perf_counter() - t
            was_done = done.is_set()
            count(len(events))
            if state["seen"] == len(events):  # the window count() times starts here...
                state["ix0"] = index_thread_cpu_s()
            elif done.is_set() and not was_done:  # ... and ends here
                state["ix1"] = index_thread_cpu_s()

        consumer = dataclasses.replace(inner, handle_batch=handle_batch)
    runner = ConsumerRunner(consumer, k, topics, ConsumerMetrics(CollectorRegistry()),
                            options=ConsumerRunnerOptions(max_records=max_records))
    task = asyncio.create_task(runner.run())
    await asyncio.wait({task, asyncio.create_task(done.wait())},
                       return_when=asyncio.FIRST_COMPLETED)
    runner.stop()
    await task
    if state["batches"]:
        print(f"  {state['batches']:.0f} batches of {n / state['batches']:,.0f} states on "
              f"average, {state['in'] / (state['t1'] - state['t0']):.0%} of the time in the "
              "handler", flush=True)
        index_us = (state.get("ix1", 0.0) - state.get("ix0", 0.0)) / n * 1e6
        rest_us = (state["c1"] - state["c0"]) / n * 1e6 - index_us
        # What the code could do on an idle machine: in turn on one free core, or (the bound
        # for overlapping the index's writes with the rest) on two.
        print(f"  CPU per state: {index_us:.2f} us on the index thread (SQLite), {rest_us:.2f} us "
              f"on the rest (decoding, rows, runtime, aiokafka): on one free core "
              f"{1e6 / (index_us + rest_us):,.0f} states/s; overlapped on two, at most "
              f"{1e6 / max(index_us, rest_us, 1e-9):,.0f}", flush=True)
    return Rate(n, state["t1"] - state["t0"], state["c1"] - state["c0"])


def index_thread_cpu_s() -> float:
    """CPU seconds used so far by the search index's thread (``search-index…``), from
    /proc (Linux): the part of the process's CPU time that SQLite's writes take."""
    for thread in threading.enumerate():
        if thread.name.startswith("search-index") and thread.native_id is not None:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
            return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
    return 0.0


Results = dict[str, list[Rate]]
MODES = ("raw", "empty", "raw2", "search")


async def bench(bootstrap: str, n: int, runs: int, modes: Sequence[str], fold_batch: int,
                max_records: int | None) -> tuple[Results, int]:
    """Run ``modes`` ``runs`` times; the results and how many chat states were published."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=6)
    topics = Topics(prefix=prefix)
    await apply_topics(k, topics.specs(6))
    records = envelopes(n)
    t = time.perf_counter()
    await produce(k, topics.chat, records)
    print(f"produced {n} envelopes in {time.perf_counter() - t:.1f}s")
    n_states = 0
    if "search" in modes:
        t = time.perf_counter()
        n_states = await publish_states(k, topics, folded(records, topics.chat, fold_batch))
        print(f"folded them in batches of {fold_batch} and published {n_states} chat and "
              f"message states ({n_states / n:.2f} per event) in {time.perf_counter() - t:.1f}s")
    results: Results = {m: [] for m in MODES if m in modes}
    try:
        with tempfile.TemporaryDirectory(prefix="parley-bench-search-") as tmp:
            for run in range(runs):
                # raw, empty, raw again, search: each ratio uses the raw runs on either side,
                # so that load drifting during the run cancels out.
                for mode in results:
                    rate = (await raw(k, topics.chat, n) if mode.startswith("raw")
                            else await through_runtime(k, topics, n_states if mode == "search"
                                                       else n, mode, Path(tmp), max_records))
                    results[mode].append(rate)
                    unit = "states" if mode == "search" else "events"
                    print(f"run {run + 1} {mode.rstrip('2'):<7} {rate.per_s:>10,.0f} {unit}/s "
                          f"{rate.cpu_us:>7.2f} us CPU/{unit[:-1]}", flush=True)
    finally:  # the broker may be shared: leave no topics behind
        admin = make_admin(k)
        await admin.start()
        try:
            await admin.delete_topics([t for t in await admin.list_topics()
                                       if t.startswith(f"{prefix}.")])
        finally:
            await admin.close()
    return results, n_states


def report(results: Results, n: int, n_states: int) -> None:
    print(f"\n{n} events, 6 partitions, 1,000 keys, {len(next(iter(results.values())))} runs:")
    if "search" in results:
        per_event = n_states / n
        rates = sorted(r.per_s for r in results["search"])
        best, median = rates[-1], statistics.median(rates)
        cpu = statistics.median(r.cpu_us for r in results["search"])
        print(f"  search: {n_states} chat and message states ({per_event:.2f} per event); "
              f"states/s best {best:,.0f}, median {median:,.0f}; as events/s best "
              f"{best / per_event:,.0f}, median {median / per_event:,.0f}; "
              f"{cpu:.2f} us CPU/state")
        print(f"  target search >= 30,000 events/s: median "
              f"{'met' if median / per_event >= 30_000 else 'MISSED'}")
    if not {"raw", "raw2", "empty"} <= results.keys():
        return
    raw_pairs = list(zip(results["raw"], results["raw2"], strict=True))
    wall = [r.per_s / ((a.per_s + b.per_s) / 2) for r, (a, b) in
            zip(results["empty"], raw_pairs, strict=True)]
    cpu_ratio = [((a.cpu_us + b.cpu_us) / 2) / r.cpu_us for r, (a, b) in
                 zip(results["empty"], raw_pairs, strict=True)]
    best_raw = max(r.per_s for r in results["raw"] + results["raw2"])
    print(f"  {'mode':<7} {'best events/s':>14} {'best/best raw':>14} {'median ratio':>13} "
          f"{'CPU ratio':>10}")
    print(f"  {'raw':<7} {best_raw:>14,.0f} {1:>14.2f} {1:>13.2f} {1:>10.2f}")
    best = max(r.per_s for r in results["empty"])
    w, c = statistics.median(wall), statistics.median(cpu_ratio)
    print(f"  {'empty':<7} {best:>14,.0f} {best / best_raw:>14.2f} {w:>13.2f} {c:>10.2f}")
    print(f"target empty >= 0.80 x raw: wall-clock median {w:.2f} "
          f"({'met' if w >= 0.8 else 'MISSED'}), CPU median {c:.2f} "
          f"({'met' if c >= 0.8 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default="raw,empty,search",
                        help="comma-separated among raw,empty,search (raw measures twice)")
    parser.add_argument("--fold-batch", type=int, default=5000,
                        help="records per projector commit (its max_records)")
    parser.add_argument("--max-records", type=int, default=None,
                        help="the consumers' max_records (records per batch; default: each "
                             "consumer's own, as deployed: 2000, search 10000)")
    args = parser.parse_args()
    modes = {m.strip() for m in args.modes.split(",")}
    if "raw" in modes:
        modes.add("raw2")
    # aiokafka logs transient metadata misses (a topic just created) at ERROR; not our figures.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("PARLEY_BENCH_KAFKA") or stack.enter_context(
            throwaway_kafka("parley-bench-kafka-", heap_mb=768)).bootstrap
        results, n_states = asyncio.run(bench(bootstrap, args.events, args.runs, sorted(modes),
                                              args.fold_batch, args.max_records))
    report(results, args.events, n_states)


if __name__ == "__main__":
    main()

"""Replay benchmark (issue 5, point 9): Parley's projector rebuild against Quix Streams and faust.

One run:

1. **Fill** a fresh set of Parley's event topics with ``--events`` records (default 1,000,000):
   generated webhooks of both providers, thousands of concurrent chats (``bench/replay_data.py``,
   modelled on ``tests/fixtures/webhooks``), each turned into its envelope by
   ``contracts.ingest.parse_webhook`` and produced keyed and routed as the receiver does
   (librdkafka producer: batching, linger, lz4 compression).
2. **Replay** the topics, each contender in its own fresh process (so each has a cold start,
   its own memory high-water mark and no shared garbage):

   - ``parley``: ``projector.rebuild.rebuild`` into a fresh SQLite store in a temporary
     directory — what ``parley projections rebuild`` runs: batches folded, rows (encoded fold
     state + JSON view + listing columns) and offsets committed in one transaction per batch,
     then the switch of reads;
   - ``quix``: a Quix Streams ``Application``, one ``StreamingDataFrame`` per event topic with
     a stateful ``update`` (RocksDB state, changelog topics on: the library's defaults);
   - ``faust``: a faust-streaming app, one agent over the event topics, folding into a
     ``Table`` (in-memory store, the default, with its changelog topic; ``--faust-store
     rocksdb`` for RocksDB).

   All three do the same work per record with the same code: decode the envelope
   (``contracts.envelope.decode_envelope``), normalise it (``contracts.normalise``), and fold
   every domain event into every aggregate it touches (``projector.fold_fast.affected`` /
   ``apply``), so the comparison is about the runtime around the fold, not the fold.
   Differences, all in the competitors' favour: they keep only fold states (Parley also
   builds and stores each changed aggregate's JSON view and listing columns); their state is
   keyed under the record's key as their state stores require (co-partitioned state), so a
   visitor seen in several chats is folded per chat instead of across chats; they are timed
   from their first record until the app returns with its last state durable (Quix's final
   checkpoint, faust's changelog flush), excluding their start-up (topic creation, group
   join), while Parley is timed over the whole ``rebuild`` call: start-up, the final commit
   and the switch of reads included.

Prints records/s for each (and domain events/s), Parley's ratio to each (target: >= 2x Quix
Streams), each process's peak RSS (``ru_maxrss`` from ``wait4``) and the size of each state
store on disk. Uses ``$PARLEY_BENCH_KAFKA`` if set, else starts a LocalKafka on free ports in
a temporary directory (stopped and wiped after). Only 127.0.0.1.

    .venv/bin/python bench/replay.py [--events 1000000] [--partitions 6]
                                     [--contenders parley,quix,faust] [--faust-store memory]
                                     [--rounds 3]

``--contenders parley,parley-2,quix,quix-2`` (issue 18): ``parley-N`` is the partition-parallel
rebuild with N worker processes, ``quix-N`` N Quix Streams processes in one consumer group
(``bench/replay_parallel.py``); the summary prints ``parley-N / parley`` in records/s and per
CPU-second (all processes' CPU), and ``parley-N / quix-N``.

``--baseline CHECKOUT`` adds the contender ``baseline``: Parley's rebuild run from another
checkout (its ``bench/replay.py`` as the child), so two versions of Parley replay the same log
in alternating rounds of one run, e.g. ``git worktree add /tmp/base main`` then
``--contenders baseline,parley --baseline /tmp/base``; ``baseline-N`` is that checkout's
``parley-N``, compared with this tree's ``parley-N``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path; keep it (replay_data lives
# there) but after the project root, so nothing in bench/ shadows a package.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path[:0] = [str(_ROOT), str(_HERE)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

from contracts.topics import Topics  # noqa: E402
from parley.kafka.topics import apply_topics  # noqa: E402
from parley.settings import KafkaSettings  # noqa: E402
from parley.testing.kafka import throwaway_kafka  # noqa: E402

CONTENDERS = ("parley", "quix", "faust")
#: Parley's own variants (``--contenders``): the rebuild and the live runner, each without and
#: with state publishing (outbox + publisher), for the cost of the state topics;
#: ``live+sealed``: the live runner publishing with the states' personal parts sealed.
STATE_VARIANTS = ("parley+outbox", "parley+states", "live", "live+states", "live+sealed")
RESULT = "RESULT "


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------- fill


def fill(bootstrap: str, topics: Topics, n: int, partitions: int, compression: str,
         seed: int) -> dict[str, Any]:
    from confluent_kafka import Producer
    from replay_data import generate

    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=topics.prefix, partitions=partitions)
    asyncio.run(apply_topics(k, topics.specs(partitions)))
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
        "linger.ms": 50, "batch.size": 1 << 20, "compression.type": compression,
        "queue.buffering.max.messages": 500_000, "queue.buffering.max.kbytes": 1 << 20,
        # the same partitioner as the receiver's producer (Java-compatible murmur2), so a
        # key lands where Parley would put it
        "partitioner": "murmur2_random"})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    stats: dict[str, int] = {}
    started = time.perf_counter()
    size = 0
    for topic, key, value in generate(n, topics, seed=seed, stats=stats):
        size += len(value)
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or errors:
        sys.exit(f"fill failed: {remaining} undelivered, errors: {errors[:3]}")
    return {"seconds": time.perf_counter() - started, "chats": stats.get("chats", 0),
            "bytes": size}


# ------------------------------------------------------------------------------ contenders


def run_child(name: str, args: argparse.Namespace) -> None:
    """Inside a contender's own process: replay, then print one RESULT line."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    work = Path(args.work)
    if name in ("parley", *STATE_VARIANTS):
        from replay_parley import run_live, run_rebuild

        from parley.loop import run  # the loop `parley projections rebuild` runs on

        states = name.endswith(("+states", "+sealed"))
        if name.startswith("live"):
            job = run_live(args.bootstrap, args.prefix, args.partitions, work, args.group,
                        states=states, sealed=name.endswith("+sealed"))
        else:
            job = run_rebuild(args.bootstrap, args.prefix, args.partitions, work, states=states,
                          outbox=states or name.endswith("+outbox"))
        result = run(job, "auto")
        # after close: the WAL is checkpointed into the database file
        result["store_bytes"] = sum(p.stat().st_size for p in work.glob("state.db*"))
    elif (parallel := _workers(name)) is not None:
        from replay_parallel import run_parley_n, run_quix_n

        kind, n = parallel
        if kind == "parley":
            result = run_parley_n(args.bootstrap, args.prefix, args.partitions, work, n)
            result["store_bytes"] = sum(p.stat().st_size for p in work.glob("state.db*"))
        else:
            result = run_quix_n(args.bootstrap, args.prefix, args.group, args.events, work, n)
    elif name == "quix":
        from replay_rivals import run_quix
        result = run_quix(args.bootstrap, args.prefix, args.group, args.events, work)
    elif name == "faust":
        from replay_rivals import run_faust
        result = run_faust(args.bootstrap, args.prefix, args.group, min(args.events, args.faust_events),
                           args.partitions, work, args.faust_store)
    else:
        sys.exit(f"unknown contender {name!r}")
    print("\n" + RESULT + json.dumps(result), flush=True)


def _workers(name: str) -> tuple[str, int] | None:
    """``parley-N`` / ``quix-N`` (N processes, ``bench/replay_parallel.py``): (kind, N)."""
    kind, dash, n = name.partition("-")
    if dash and kind in ("parley", "quix") and n.isdigit() and int(n) >= 1:
        return kind, int(n)
    return None


def spawn(name: str, args: argparse.Namespace, bootstrap: str, prefix: str, timeout_s: float,
          group: str) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; its result plus its peak RSS (wait4)."""
    work = Path(tempfile.mkdtemp(prefix=f"parley-replay-{name}-"))
    script = Path(__file__).resolve()
    if name == "baseline" or name.startswith("baseline-"):  # another checkout's parley(-N)
        script = Path(args.baseline).resolve() / "bench" / "replay.py"
        name = name.replace("baseline", "parley", 1)
    cmd = [sys.executable, str(script), "--child", name, "--bootstrap", bootstrap,
           "--prefix", prefix, "--events", str(args.events), "--partitions", str(args.partitions),
           "--work", str(work), "--faust-store", args.faust_store,
           "--faust-events", str(args.faust_events), "--group", group]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout_s
        out_parts: list[str] = []
        err_parts: list[str] = []
        import threading

        def drain(stream: Any, sink: list[str]) -> None:
            for line in stream:
                sink.append(line)

        readers = [threading.Thread(target=drain, args=(proc.stdout, out_parts), daemon=True),
                   threading.Thread(target=drain, args=(proc.stderr, err_parts), daemon=True)]
        for t in readers:
            t.start()
        status, rusage = 0, None
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                _, status, rusage = os.wait4(proc.pid, 0)
                err_parts.append(f"\n(killed after {timeout_s:.0f} s)\n")
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        for t in readers:
            t.join(5)
        lines = [line for line in "".join(out_parts).splitlines() if line.startswith(RESULT)]
        if proc.returncode != 0 or not lines:
            tail = "".join(err_parts)[-4000:]
            return {"error": f"exit {proc.returncode}", "stderr": tail}
        result: dict[str, Any] = json.loads(lines[-1][len(RESULT):])
        result["max_rss_bytes"] = rusage.ru_maxrss * 1024  # Linux: KiB
        result.setdefault("store_bytes", _dir_size(work))
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------ main


def _mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def bench(args: argparse.Namespace, bootstrap: str, prefix: str) -> int:
    topics = Topics(prefix=prefix)
    print(f"filling {args.events:,} records into {prefix}.events.* ({args.partitions} partitions "
          f"each, {args.compression}) on {bootstrap} ...", flush=True)
    filled = fill(bootstrap, topics, args.events, args.partitions, args.compression, args.seed)
    print(f"  {filled['chats']:,} chats, {filled['bytes'] / args.events:,.0f} B/record, "
          f"{filled['seconds']:.1f} s", flush=True)
    # The broker has just written the whole log into the page cache: write it back now, or
    # the first contender is timed while the kernel flushes gigabytes behind it.
    os.sync()
    rounds: dict[str, list[dict[str, Any]]] = {}
    for n in range(1, args.rounds + 1):
        for name in args.contenders.split(","):
            load = os.getloadavg()[0]
            tag = f" (round {n}/{args.rounds})" if args.rounds > 1 else ""
            print(f"{name}: replaying{tag} (load {load:.2f}) ...", flush=True)
            # The rivals' consumer group and changelogs: fresh each round, named with the
            # prefix so that delete_topics removes them too.
            result = spawn(name, args, bootstrap, prefix, args.timeout, f"{prefix}-{name}-{n}")
            result["load"] = load
            rounds.setdefault(name, []).append(result)
            if "error" in result:
                print(f"  {name} FAILED ({result['error']}):\n{result['stderr']}", flush=True)
                continue
            rate = result["records"] / result["seconds"]
            print(f"  {result['records']:,} records in {result['seconds']:.1f} s = {rate:,.0f} "
                  f"records/s; peak RSS {_mib(result['max_rss_bytes'])}; store "
                  f"{_mib(result['store_bytes'])}", flush=True)
    # Each contender's median round by records/s (a failed round counts as the slowest).
    results: dict[str, dict[str, Any]] = {}
    for name, runs in rounds.items():
        ranked = sorted(runs, key=lambda r: 0.0 if "error" in r else r["records"] / r["seconds"])
        results[name] = ranked[(len(ranked) - 1) // 2]
    if args.rounds > 1:
        even = " (of an even number, the slower middle one)" if args.rounds % 2 == 0 else ""
        print(f"\nmedian round of {args.rounds} per contender{even}; rounds alternated between "
              "contenders")
    print(f"\n{args.events:,} records ({filled['chats']:,} chats), {args.partitions} partitions per "
          f"topic, Python {sys.version.split()[0]}")
    print(f"  {'contender':<9} {'records':>9} {'records/s':>10} {'seconds':>8} {'per CPU-s':>10} "
          f"{'peak RSS':>10} {'store':>10} {'load':>5}")
    for name, r in results.items():
        if "error" in r:
            print(f"  {name:<9} {'failed':>10}")
            continue
        print(f"  {name:<9} {r['records']:>9,} {r['records'] / r['seconds']:>10,.0f} "
              f"{r['seconds']:>8.1f} {r['records'] / r['cpu_seconds']:>10,.0f} "
              f"{_mib(r['max_rss_bytes']):>10} {_mib(r['store_bytes']):>10} {r['load']:>5.2f}")
    if args.rounds > 1:
        # The median round by records/s follows the machine's load; CPU per record moves
        # less from round to round, so its median over every round is printed too.
        print("  per CPU-second, median of all rounds (each round's):")
        for name, runs in rounds.items():
            done = [r["records"] / r["cpu_seconds"] for r in runs if "error" not in r]
            if done:
                print(f"    {name:<10} {statistics.median(done):>8,.0f}  ("
                      + ", ".join(f"{x:,.0f}" for x in done) + ")")
    parley = results.get("parley")
    if parley and "error" not in parley:
        p_rate = parley["records"] / parley["seconds"]
        p_cpu = parley["records"] / parley["cpu_seconds"]
        for name, r in results.items():
            if (name != "parley" and not name.startswith("baseline") and not _workers(name)
                    and "error" not in r):
                ratio = p_rate / (r["records"] / r["seconds"])
                cpu_ratio = p_cpu / (r["records"] / r["cpu_seconds"])
                print(f"  parley / {name}: {ratio:.2f}x records/s ({cpu_ratio:.2f}x per CPU-second)")
        for base_name, base_run in results.items():
            mine = results.get(base_name.replace("baseline", "parley", 1))
            if (base_name.startswith("baseline") and mine and "error" not in base_run
                    and "error" not in mine):
                ratio = (mine["records"] / mine["seconds"]) / (base_run["records"] / base_run["seconds"])
                cpu_ratio = base_run["cpu_seconds"] / mine["cpu_seconds"] * (
                    mine["records"] / base_run["records"])
                print(f"  {base_name.replace('baseline', 'parley', 1)} / {base_name} "
                      f"({args.baseline}): {ratio:.3f}x records/s ({cpu_ratio:.3f}x per CPU-second)")
        for base, variant in (("parley", "+outbox"), ("parley", "+states"), ("live", "+states")):
            plain, loud = results.get(base), results.get(base + variant)
            if plain and loud and "error" not in plain and "error" not in loud:
                ratio = (loud["records"] / loud["seconds"]) / (plain["records"] / plain["seconds"])
                verdict = "met" if ratio >= 0.85 else "MISSED"
                print(f"{base}{variant} / {base}: {ratio:.2f}x records/s "
                      f"(target >= 0.85: {verdict})")
        states, sealed = results.get("live+states"), results.get("live+sealed")
        if states and sealed and "error" not in states and "error" not in sealed:
            print(f"live+sealed / live+states: "
                  f"{(sealed['records'] / sealed['seconds']) / (states['records'] / states['seconds']):.2f}x "
                  f"records/s ({states['cpu_seconds'] / sealed['cpu_seconds']:.2f}x per CPU-second)")
        _parallel_ratios(results)
        quix = results.get("quix")
        if quix and "error" not in quix:
            ratio = p_rate / (quix["records"] / quix["seconds"])
            print(f"target parley >= 2x quix: {'met' if ratio >= 2 else 'MISSED'} ({ratio:.2f}x)")
    print("RESULTS " + json.dumps(rounds if args.rounds > 1 else results))
    return 0


def _parallel_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Issue 18's targets: parley-N against parley (one process) and against quix-N."""
    def rates(name: str) -> tuple[float, float] | None:
        r = results.get(name)
        if not r or "error" in r:
            return None
        return r["records"] / r["seconds"], r["records"] / r["cpu_seconds"]

    one = rates("parley")
    for name in results:
        parsed = _workers(name)
        if parsed is None or parsed[0] != "parley" or (mine := rates(name)) is None:
            continue
        n = parsed[1]
        if one is not None:
            wall, cpu = mine[0] / one[0], mine[1] / one[1]
            print(f"{name} / parley: {wall:.2f}x records/s, {cpu:.2f}x per CPU-second (targets "
                  f"for 2 workers: >= 1.5x: {'met' if wall >= 1.5 else 'MISSED'}, >= 0.9x: "
                  f"{'met' if cpu >= 0.9 else 'MISSED'})")
        rival = rates(f"quix-{n}") or (rates("quix") if n == 1 else None)
        if rival is not None:
            ratio = mine[0] / rival[0]
            print(f"{name} / quix-{n}: {ratio:.2f}x records/s ({mine[1] / rival[1]:.2f}x per "
                  f"CPU-second; target >= 2x: {'met' if ratio >= 2 else 'MISSED'})")


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Drop every topic of this run (its event topics and the competitors' changelogs, whose
    names all contain ``prefix``): on a shared broker the run leaves nothing behind."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if prefix in t]
    if names:
        for future in admin.delete_topics(names, operation_timeout=60).values():
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - best effort
                print(f"could not delete a topic: {exc}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--compression", default="lz4", choices=("lz4", "zstd", "gzip", "none"))
    parser.add_argument("--faust-store", default="memory", choices=("memory", "rocksdb"))
    parser.add_argument("--faust-events", type=int, default=200_000,
                        help="faust folds this many records (the first it reads) and is timed on "
                             "those: at under 1,000 records/s all of them would take half an hour")
    parser.add_argument("--seed", type=int, default=1)
    # Three by default: each contender's rate moves by 10-20 % between runs on a shared VM,
    # and independently of the other's; the median of alternating rounds is steadier.
    parser.add_argument("--rounds", type=int, default=3,
                        help="replay this many times per contender, alternating; report medians")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per contender, seconds")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="contender 'baseline': the parley rebuild run from another checkout "
                             "(e.g. `git worktree add /tmp/base main`), to compare two versions "
                             "of Parley in one run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args)
        return 0
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    configured = os.environ.get("PARLEY_BENCH_KAFKA")
    with contextlib.ExitStack() as stack:
        bootstrap = configured or stack.enter_context(
            throwaway_kafka("parley-bench-kafka-", heap_mb=1024)).bootstrap
        prefix = f"replay{uuid.uuid4().hex[:8]}"
        try:
            return bench(args, bootstrap, prefix)
        finally:
            if configured:  # a shared broker: leave nothing behind (a throwaway one is wiped)
                delete_topics(bootstrap, prefix)


if __name__ == "__main__":
    sys.exit(main())

"""Scale benchmark (issue 7, point 5): Parley on a 3-broker cluster with PostgreSQL.

One run, everything on 127.0.0.1:

1. Start a 3-node Kafka cluster (``LocalKafka``, KRaft, combined broker+controller nodes) and a
   local PostgreSQL (``parley.testing.postgres.LocalPostgres``: ``fsync`` on, ``synchronous_commit``
   off — crash-safe, like SQLite's WAL with ``synchronous=NORMAL``).
2. For each of four set-ups — 1 or 2 receivers x 1 or 3 projectors — start the real processes
   (``python -m parley.cli receiver|projector --config …``) on fresh topics (replication
   factor 3, ``min.insync.replicas`` 2, ``--partitions`` per topic) and a fresh PostgreSQL
   schema, then:

   - **ingest**: ``--concurrency`` senders post Natterly webhooks (each a new message in one
     of a few hundred open chats, visitors shared between chats) for ``--seconds``, to the
     receivers in turn (a client-side load balancer), as fast as they answer. Reported:
     webhooks acknowledged per second, and the projectors' rate (records from the start of
     ingest until the projection has applied all of them);
   - **end-to-end latency**: then a paced load (``--rate`` webhooks/s for ``--seconds``/2);
     after every fifth 2xx the sender asks a projector (in turn) for the chat with
     ``min_position`` = the 2xx's position; the time from the 2xx to the API's answer is how
     long a webhook takes to become visible to a client that asks so. Beside it, a watcher
     polls the store's offsets every 10 ms: the time from the 2xx until the projection holds
     the record (what any replica then serves). Also the webhooks' own 2xx latency.
3. **Replay**: fresh topics filled (before the set-ups, which also warms the brokers up) with
   ``--replay-events`` generated records of both providers (``bench/replay_data.py``) are
   rebuilt into a fresh PostgreSQL schema and into a fresh SQLite file, one after the other in
   this process (``projector.rebuild.rebuild``).

The machine's load average is printed with every figure: the benchmark shares the machine
with the brokers, PostgreSQL and the load generator (and whatever else runs there).

    .venv/bin/python bench/scale.py [--seconds 8] [--concurrency 16] [--rate 100]
                                    [--partitions 6] [--replay-events 30000]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path[:0] = [str(_ROOT), str(_HERE)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import aiohttp  # noqa: E402
import orjson  # noqa: E402

from contracts.position import Position  # noqa: E402
from contracts.topics import Topics  # noqa: E402
from parley.kafka.launcher import LocalKafka, free_ports  # noqa: E402
from parley.kafka.topics import apply_topics  # noqa: E402
from parley.settings import KafkaSettings  # noqa: E402
from parley.testing.postgres import LocalPostgres  # noqa: E402
from projector.store import Store  # noqa: E402
from tests.kit.live_projector import write_config  # noqa: E402
from tests.kit.processes import ParleyProcess  # noqa: E402

TOKEN = "bench-natterly-token-0123"  # noqa: S105 - a local test source
JSON = {"Content-Type": "application/json"}
T0 = 1_780_000_000  # webhook times (Unix seconds), 2026


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


@dataclass
class CpuGroups:
    """Processes whose CPU time is counted, by role."""

    groups: dict[str, list[int]]
    postmaster: int

    def sample(self) -> dict[str, float]:
        out = {name: sum(_cpu(pid) for pid in pids) for name, pids in self.groups.items()}
        out["postgres"] = sum(_cpu(pid) for pid in [self.postmaster, *_children(self.postmaster)])
        usage = os.times()
        out["load generator"] = usage.user + usage.system
        return out


# ------------------------------------------------------------------------------ webhooks
class Webhooks:
    """An endless stream of distinct Natterly webhooks: each adds a message to one of ``chats``
    open chats (a chat closes after 8 messages and a new one opens)."""

    def __init__(self, tag: str, chats: int = 300, visitors: int = 120) -> None:
        self.tag, self.visitors = tag, visitors
        self.next_chat = chats
        self.open = [[f"{tag}-c{i}", 0] for i in range(chats)]
        self.n = 0

    def next(self) -> tuple[str, bytes]:
        slot = self.open[self.n % len(self.open)]
        self.n += 1
        chat, k = str(slot[0]), int(slot[1])
        at = T0 + self.n
        number = int(chat.rsplit("c", 1)[1])
        message = {"uuid": f"{chat}-m{k}", "chat": chat, "text": f"message {k} of {chat}",
                   "event": False, "author": {"type": "Visitor", "name": "V"},
                   "posted_by_visitor": True, "created_at": at, "updated_at": at}
        body = {"event": "ChatInitiated" if k == 0 else "ChatAccepted", "timestamp": at,
                "auth_token": TOKEN, "payload": {"messages": [message], "chat": {
                    "uuid": chat, "status": "Initiated" if k == 0 else "Accepted",
                    "subject": "Help", "initiated_at": at - k, "closed_at": 0,
                    "department": {"uuid": "dep-1", "name": "Sales"},
                    "visitor": {"uuid": f"{self.tag}-v{number % self.visitors}", "name": "Visitor"},
                    **({"user": {"uuid": f"ag-{number % 20}", "name": "Agent"}} if k else {})}}}
        slot[1] = k + 1
        if k + 1 == 8:  # the chat is done: open another
            slot[0], slot[1] = f"{self.tag}-c{self.next_chat}", 0
            self.next_chat += 1
        return chat, orjson.dumps(body)


# ------------------------------------------------------------------------------- set-ups
@dataclass
class Figures:
    receivers: int
    projectors: int
    ingest_per_s: float = 0.0
    project_per_s: float = 0.0
    ack_ms: list[float] = field(default_factory=list)
    visible_ms: list[float] = field(default_factory=list)  # 2xx -> API answer with min_position
    applied_ms: list[float] = field(default_factory=list)  # 2xx -> offset committed in the store
    errors: int = 0
    load: str = ""
    cpu_us: dict[str, float] = field(default_factory=dict)  # CPU per webhook while flooding
    idle_cores: dict[str, float] = field(default_factory=dict)  # cores used before the load
    busy_cores: dict[str, float] = field(default_factory=dict)  # cores used under the load


async def _applied(store: Store, positions: dict[tuple[str, int], int]) -> bool:
    live = await store.live_projection()
    if live is None:
        return False
    stored = await store.offsets(live)
    return all(stored.get(tp, 0) > off for tp, off in positions.items())


async def run_setup(receivers: int, projectors: int, *, kafka: KafkaSettings, dsn: str,
                    work: Path, args: argparse.Namespace, cpu: CpuGroups) -> Figures:
    from projector.stores import open_store

    tag = f"r{receivers}p{projectors}"
    k = KafkaSettings(bootstrap=kafka.bootstrap, topic_prefix=f"bench-{tag}-{os.getpid()}",
                      partitions=args.partitions, replication_factor=3)
    topics = Topics(prefix=k.topic_prefix)
    await apply_topics(k, topics.specs(args.partitions))
    url = f"{dsn}?schema=bench_{tag}"
    ports = free_ports(receivers + projectors)
    procs: list[ParleyProcess] = []
    for i in range(receivers):
        config = write_config(work / f"{tag}-rx{i}.toml", k, f"sqlite:///{work / 'unused.db'}",
                              port=ports[i], natterly_token=TOKEN)
        procs.append(ParleyProcess(f"{tag}-rx{i}", ["receiver", "--config", str(config)], ports[i], work))
    for i in range(projectors):
        port = ports[receivers + i]
        config = write_config(work / f"{tag}-px{i}.toml", k, url, port=port)
        procs.append(ParleyProcess(f"{tag}-px{i}", ["projector", "--config", str(config), "--group",
                                                    f"bench-{tag}"], port, work))
    rx, px = procs[:receivers], procs[receivers:]
    figures = Figures(receivers, projectors)
    observer = open_store(url)
    try:
        await asyncio.gather(*(p.start() for p in procs))
        await asyncio.gather(*(p.wait_ready(120) for p in procs))
        await observer.open()
        hooks = Webhooks(tag)
        last: dict[tuple[str, int], int] = {}
        turn = [0, 0]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

            async def post(body: bytes) -> tuple[float, Position | None]:
                port = rx[turn[0] % len(rx)].port
                turn[0] += 1
                started = time.perf_counter()
                async with http.post(f"http://127.0.0.1:{port}/webhooks/acme", data=body,
                                     headers=JSON) as resp:
                    answer = await resp.json()
                seconds = time.perf_counter() - started
                if resp.status != 200:
                    figures.errors += 1
                    return seconds, None
                position = Position.parse(answer["position"])
                tp = (position.topic, position.partition)
                last[tp] = max(last.get(tp, -1), position.offset)
                return seconds, position

            # Ingest, as fast as the receivers answer.
            deadline = time.perf_counter() + args.seconds
            acked = [0]

            async def flood() -> None:
                while time.perf_counter() < deadline:
                    _, position = await post(hooks.next()[1])
                    acked[0] += position is not None

            groups = CpuGroups({"receivers": [p.proc.pid for p in rx if p.proc],
                                "projectors": [p.proc.pid for p in px if p.proc], **cpu.groups},
                               cpu.postmaster)
            # Idle first (heartbeats, controllers, GC), to tell the traffic's own CPU from it.
            idle_from, idle_started = groups.sample(), time.perf_counter()
            await asyncio.sleep(2)
            before = groups.sample()
            idle_s = time.perf_counter() - idle_started
            idle = {name: (before[name] - idle_from[name]) / idle_s for name in before}
            started = time.perf_counter()
            await asyncio.gather(*(flood() for _ in range(args.concurrency)))
            figures.ingest_per_s = acked[0] / (time.perf_counter() - started)
            while not await _applied(observer, last):
                if time.perf_counter() - started > args.seconds + 120:
                    raise RuntimeError(f"{tag}: the projectors did not catch up in 120 s")
                await asyncio.sleep(0.05)
            figures.project_per_s = acked[0] / (time.perf_counter() - started)
            after = groups.sample()
            busy_s = time.perf_counter() - started
            figures.cpu_us = {name: (after[name] - before[name]) / max(acked[0], 1) * 1e6
                              for name in after}
            figures.idle_cores = idle
            figures.busy_cores = {name: (after[name] - before[name]) / busy_s for name in after}

            # End-to-end latency, at a moderate pace.
            gap = args.concurrency / args.rate
            deadline = time.perf_counter() + args.seconds / 2
            pending: list[tuple[Position, float]] = []
            live = await observer.live_projection()
            assert live is not None

            async def watch() -> None:
                # When does the store hold it? (What any API replica reads, polled every 10 ms.)
                while time.perf_counter() < deadline + 10 and (pending or time.perf_counter() < deadline):
                    stored = await observer.offsets(live)
                    now = time.perf_counter()
                    for item in [i for i in pending if stored.get((i[0].topic, i[0].partition), 0)
                                 > i[0].offset]:
                        pending.remove(item)
                        figures.applied_ms.append((now - item[1]) * 1000)
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())

            async def paced() -> None:
                while time.perf_counter() < deadline:
                    began = time.perf_counter()
                    chat, body = hooks.next()
                    seconds, position = await post(body)
                    figures.ack_ms.append(seconds * 1000)
                    if position is not None and hooks.n % 5 == 0:
                        acked_at = time.perf_counter()
                        pending.append((position, acked_at))
                        target = px[turn[1] % len(px)]
                        turn[1] += 1
                        async with http.get(f"http://127.0.0.1:{target.port}/api/chats/{chat}",
                                            params={"min_position": str(position)}) as resp:
                            await resp.read()
                            if resp.status == 200:
                                figures.visible_ms.append((time.perf_counter() - acked_at) * 1000)
                            else:
                                figures.errors += 1
                    await asyncio.sleep(max(0.0, gap - (time.perf_counter() - began)))

            await asyncio.gather(*(paced() for _ in range(args.concurrency)))
            await watcher
        figures.load = load_average()
    finally:
        await observer.close()
        for p in procs:
            if p.running:
                await p.stop(signal.SIGTERM)
    return figures


# -------------------------------------------------------------------------------- replay
def fill(bootstrap: str, topics: Topics, n: int, partitions: int) -> None:
    from confluent_kafka import Producer
    from replay_data import generate

    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=topics.prefix, partitions=partitions,
                      replication_factor=3)
    asyncio.run(apply_topics(k, topics.specs(partitions)))
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 50, "batch.size": 1 << 20, "compression.type": "lz4",
                         "partitioner": "murmur2_random"})
    for topic, key, value in generate(n, topics, seed=7):
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        sys.exit("fill failed: records left undelivered")


async def replay(store: Store, kafka: KafkaSettings, topics: Topics) -> tuple[float, int]:
    from projector.rebuild import rebuild

    await store.open()
    try:
        started = time.perf_counter()
        report = await rebuild(store, kafka, topics, out=io.StringIO())
        return report.records / (time.perf_counter() - started), report.records
    finally:
        await store.close()


# ---------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="ingest time per set-up")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent senders")
    parser.add_argument("--rate", type=float, default=100.0, help="webhooks/s of the latency phase")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--replay-events", type=int, default=30_000)
    parser.add_argument("--setups", default="1x1,2x1,1x3,2x3", help="RECEIVERSxPROJECTORS,…")
    args = parser.parse_args()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    work = Path(tempfile.mkdtemp(prefix="parley-bench-scale-"))
    ports = free_ports(6)
    kafka = LocalKafka(work / "kafka", brokers=3, ports=ports[:3], controller_ports=ports[3:],
                       heap_mb=512)
    # Its own temporary directory: PostgreSQL runs as an unprivileged user when we are root.
    postgres = LocalPostgres(Path(tempfile.mkdtemp(prefix="parley-bench-pg-")), settings={
        "fsync": "on", "synchronous_commit": "off", "full_page_writes": "on"})
    print(f"machine: {os.cpu_count()} cores, load average {load_average()} (1/5 min) at start",
          flush=True)
    try:
        started = time.perf_counter()
        bootstrap = kafka.up().bootstrap
        dsn = postgres.up()
        print(f"3 brokers + PostgreSQL up in {time.perf_counter() - started:.0f} s", flush=True)
        k = KafkaSettings(bootstrap=bootstrap, partitions=args.partitions, replication_factor=3)
        # The replay's log first: filling it also warms the brokers up (JIT), so the first
        # set-up measured is not the only one on cold brokers.
        topics = Topics(prefix=f"bench-replay-{os.getpid()}")
        fill(bootstrap, topics, args.replay_events, args.partitions)
        results: list[Figures] = []
        for setup in args.setups.split(","):
            receivers, projectors = (int(x) for x in setup.split("x"))
            state = kafka.load_state()
            assert state is not None and postgres.pid is not None
            cpu = CpuGroups({"brokers": [n.pid for n in state.nodes if n.pid]}, postgres.pid)
            f = asyncio.run(run_setup(receivers, projectors, kafka=k, dsn=dsn, work=work, args=args,
                                      cpu=cpu))
            results.append(f)
            print(f"{receivers} receiver(s), {projectors} projector(s): ingest {f.ingest_per_s:.0f}/s, "
                  f"projected {f.project_per_s:.0f}/s, 2xx p50 {percentile(f.ack_ms, .5):.1f} ms "
                  f"p99 {percentile(f.ack_ms, .99):.1f} ms, in the store p50 "
                  f"{percentile(f.applied_ms, .5):.0f} ms p99 {percentile(f.applied_ms, .99):.0f} ms, "
                  f"API with min_position p50 {percentile(f.visible_ms, .5):.0f} ms "
                  f"p99 {percentile(f.visible_ms, .99):.0f} ms ({len(f.visible_ms)} probes), "
                  f"errors {f.errors}, load {f.load}", flush=True)
            print("    CPU while flooding, per webhook (cores busy / idle before): " + ", ".join(
                f"{name} {us:.0f} µs ({f.busy_cores[name]:.2f} / {f.idle_cores[name]:.2f})"
                for name, us in f.cpu_us.items()), flush=True)

        rk = KafkaSettings(bootstrap=bootstrap, topic_prefix=topics.prefix, partitions=args.partitions)
        from projector.stores import open_store

        pg_rate, pg_records = asyncio.run(replay(open_store(f"{dsn}?schema=bench_replay"), rk, topics))
        pg_load = load_average()
        lite_rate, lite_records = asyncio.run(replay(open_store(f"sqlite:///{work / 'replay.db'}"),
                                                     rk, topics))
        print(f"replay of {pg_records} records: PostgreSQL {pg_rate:.0f} records/s (load {pg_load}), "
              f"SQLite {lite_rate:.0f} records/s (load {load_average()}); {lite_records} records")
        table: list[dict[str, Any]] = [
            {"receivers": f.receivers, "projectors": f.projectors, "ingest_per_s": round(f.ingest_per_s),
             "projected_per_s": round(f.project_per_s),
             "ack_p50_ms": round(percentile(f.ack_ms, .5), 1),
             "ack_p99_ms": round(percentile(f.ack_ms, .99), 1),
             "applied_p50_ms": round(percentile(f.applied_ms, .5)),
             "applied_p99_ms": round(percentile(f.applied_ms, .99)),
             "visible_p50_ms": round(percentile(f.visible_ms, .5)),
             "visible_p99_ms": round(percentile(f.visible_ms, .99)),
             "visible_mean_ms": round(statistics.fmean(f.visible_ms)) if f.visible_ms else None,
             "cpu_us_per_webhook": {name: round(us) for name, us in f.cpu_us.items()},
             "cores_busy": {name: round(c, 2) for name, c in f.busy_cores.items()},
             "cores_idle": {name: round(c, 2) for name, c in f.idle_cores.items()},
             "load": f.load} for f in results]
        print("RESULT " + orjson.dumps({"setups": table, "replay": {
            "records": pg_records, "postgres_per_s": round(pg_rate), "sqlite_per_s": round(lite_rate)}}
        ).decode())
        return 0
    finally:
        postgres.down(wipe=True)
        state = kafka.load_state()
        for node in state.nodes if state else []:  # the data goes anyway: no clean shutdown
            kafka.stop_node(node.node_id, sig=signal.SIGKILL)
        kafka.down(wipe=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""Receiver throughput and latency against a bare aiohttp handler, in one run.

Serves, on 127.0.0.1, (a) the real receiver (``build_app`` + ``ReceiverRole``: JSON check,
streamed body, Natterly token or ChatShipper signature check, contracts parsing, sealing,
idempotent acks=all produce to a real broker, metrics, JSON logging at INFO) and (b) a bare
aiohttp handler that reads the body and answers 204. A load generator in a *separate
process* (so it does not share the servers' event loop) drives each in turn with the same
requests, a fixed number of concurrent connections for a fixed time, then stops by itself.
Prints both rates, their ratio, latency percentiles, and the CPU per request of the server,
the load generator and the broker (if started here), so one sees how they share the cores.

Kafka: ``PARLEY_BENCH_KAFKA`` (a bootstrap address) if set, else a LocalKafka started on
free ports in a temporary directory and stopped at the end.

After the alternating runs, the receiver alone is driven open-loop (requests started at a
fixed rate, whatever the answers' pace, latency counted from each request's scheduled start)
at 25%, 50% and 90% of its median closed-loop rate: the p50/p99 an operator can expect when a
deployment runs at that share of its peak (docs/operations.md, "Sizing").

``--traffic`` (bench/receiver_traffic.py, bodies built and signed before the timed window):
``fixed`` (the default, as every earlier figure) cycles 4,096 look-alike 1.7 kB Natterly
``ChatInitiated`` bodies, which compress in Kafka far better than real ones; ``mixed`` sends
real-looking webhooks of both providers (``bench/replay_data.py``'s generator), each to its
source, Natterly's with the source's token, ChatShipper's signed (X-Hub-Signature).

The receiver runs as configured by default, so it seals each body with its chat's data key
(docs/privacy.md), in a SQLite key store of a temporary directory (a fresh one per run, as a
new deployment). ``fixed``: by default each of the 4,096 bodies is a new chat (the worst
case: a key-store commit per webhook, shared by those queued meanwhile, until the bodies
come round again); ``--chats N`` cycles them over N chats (a chat gets about requests ÷ N
webhooks). ``mixed``: each conversation is a chat of its own, about one webhook in twelve
starts one; ``--chats N`` sets how many are open at a time. ``--no-encrypt``: no sealing.

``--profile FILE`` samples the receiver server's own CPU time (``ITIMER_PROF``, so time spent
waiting for a busy CPU is not counted, unlike a wall-clock sampler on a loaded machine) during
its measured runs, writes the stacks collapsed (flamegraph / speedscope input) and prints
the CPU per request by stage (docs/benchmarks.md, "Where the time goes").

    .venv/bin/python bench/receiver.py [--concurrency 32] [--seconds 10] [--warmup-seconds 2]
                                       [--runs 5] [--loop auto|uvloop|asyncio] [--linger-ms 0]
                                       [--profile FILE] [--no-latency] [--chats N]
                                       [--no-encrypt] [--traffic fixed|mixed]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# Run as `python bench/receiver.py`, this file's folder comes first on sys.path and its own
# name would hide the `receiver` package: the project root goes before it (as bench/replay.py).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path[:0] = [str(_HERE.parent), str(_HERE)]

import receiver_traffic as traffic  # noqa: E402 - the bodies, their sources and credentials

HOST = "127.0.0.1"
LOAD_SHARES = (0.25, 0.5, 0.9)  # of the receiver's peak rate, for latency under load
# Targets (issue 19): receiver rate >= 0.6 x bare, CPU per request <= 2 x bare, p99 < 25 ms.
TARGET_RATIO, TARGET_CPU_RATIO, TARGET_P99_MS = 0.6, 2.0, 25.0


# ------------------------------------------------------------------ load generator (child)
def _cpu_from(loop: asyncio.AbstractEventLoop, at: float) -> list[float]:
    """``[this process's CPU time when the loop reaches `at`]``; the caller appends the
    time at the end, so ``cpu[-1] - cpu[0]`` is the measured window's."""
    cpu: list[float] = []
    loop.call_at(at, lambda: cpu.append(time.process_time()))
    return cpu


def _figures(latencies: list[float], statuses: dict[int, int], seconds: float,
             cpu: list[float]) -> dict[str, object]:
    latencies.sort()
    return {"requests": len(latencies), "rate_per_s": len(latencies) / seconds,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "max_ms": 1000 * latencies[-1], "statuses": statuses,
            "loadgen_cpu_us_per_req": 1e6 * (cpu[-1] - cpu[0]) / max(1, len(latencies))}


async def _drive(base: str, kind: str, concurrency: int, seconds: float, warmup_s: float
                 ) -> dict[str, object]:
    import aiohttp

    requests = traffic.requests(kind, base)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup_s
        stop_at = measure_from + seconds
        cpu = _cpu_from(loop, measure_from)

        async def worker() -> None:
            nonlocal counter
            while (now := loop.time()) < stop_at:
                counter += 1
                url, body, headers = requests[counter % len(requests)]
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    done = loop.time()
                if now >= measure_from:
                    latencies.append(done - now)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu.append(time.process_time())
    return _figures(latencies, statuses, seconds, cpu)


async def _drive_open(base: str, kind: str, rate_per_s: float, seconds: float, warmup_s: float
                      ) -> dict[str, object]:
    """Open-loop load: request i starts at ``i / rate_per_s`` whatever the answers' pace, and
    its latency counts from that scheduled start (so a stall is not hidden by senders that
    wait for it, "coordinated omission")."""
    import aiohttp

    requests = traffic.requests(kind, base)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    # Enough connections that a short stall queues requests on the server, not here.
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time()
        measure_from, stop_at = start + warmup_s, start + warmup_s + seconds
        cpu = _cpu_from(loop, measure_from)

        async def one(request: tuple[str, bytes, dict[str, str]], scheduled: float) -> None:
            url, body, headers = request
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
            if scheduled >= measure_from:
                latencies.append(loop.time() - scheduled)
                statuses[resp.status] = statuses.get(resp.status, 0) + 1

        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while (scheduled := start + i / rate_per_s) < stop_at:
            if (delay := scheduled - loop.time()) > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(requests[i % len(requests)], scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks)
        cpu.append(time.process_time())
    return {"offered_per_s": rate_per_s} | _figures(latencies, statuses, seconds, cpu)


async def load(base: str, concurrency: int, seconds: float, warmup_s: float,
               rate_per_s: float | None = None, *, kind: str = "fixed",
               broker: int | None = None) -> dict[str, object]:
    """Run the load generator in a child process against the server at ``base`` (``http://
    host:port``) with ``kind``'s traffic and return its figures (its own CPU per request
    included), plus the CPU time this (server) process and the broker (pid ``broker``, if
    known) spent per request meanwhile. ``rate_per_s`` makes the load open-loop at that rate
    instead of ``concurrency`` senders in a closed loop."""
    cpu_before, broker_before = time.process_time(), process_cpu_s(broker)
    rate = [] if rate_per_s is None else ["--rate", f"{rate_per_s:.1f}"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load", base, "--traffic", kind,
        "--concurrency", str(concurrency), "--seconds", str(seconds),
        "--warmup-seconds", str(warmup_s), *rate, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + warmup_s + 120)
    if proc.returncode != 0:
        raise SystemExit(f"load generator failed with exit code {proc.returncode}")
    result: dict[str, object] = json.loads(out)
    statuses = result["statuses"]
    assert isinstance(statuses, dict)
    total = sum(int(n) for n in statuses.values())
    # Requests of the warm-up are not in the figures but did use CPU: scale by the run time.
    scale = 1e6 * seconds / (seconds + warmup_s) / max(1, total)
    result["server_cpu_us_per_req"] = (time.process_time() - cpu_before) * scale
    result["broker_cpu_us_per_req"] = (None if broker is None else
                                       (process_cpu_s(broker) - broker_before) * scale)
    return result


# ------------------------------------------------------------------ CPU profile (parent)
class CpuProfile:
    """Samples this process's Python stack every ``interval_s`` of its CPU time (user + system,
    ``ITIMER_PROF``). A wall-clock sampler (py-spy) on a loaded 2-core machine also counts the
    time a runnable process waits for a CPU, which lands on whatever woke another process (a
    socket write to the broker or the load generator); CPU-time sampling does not. Time in C
    code (uvloop, the kernel) is counted at the Python frame that called it, or, for the event
    loop's own work, the next one it runs."""

    def __init__(self, interval_s: float = 0.0005) -> None:
        self.interval_s = interval_s
        self.stacks: dict[str, int] = {}

    def _sample(self, signum: int, frame: object) -> None:
        names = []
        f = frame
        while f is not None:
            code = f.f_code  # type: ignore[attr-defined]
            where = "/".join(code.co_filename.rsplit("/", 2)[-2:])  # aiohttp/ vs asyncio/streams.py
            names.append(f"{code.co_qualname} ({where})")
            f = f.f_back  # type: ignore[attr-defined]
        key = ";".join(reversed(names))
        self.stacks[key] = self.stacks.get(key, 0) + 1

    def __enter__(self) -> CpuProfile:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval_s, self.interval_s)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)

    def write(self, path: Path) -> None:
        """Collapsed stacks ("a;b;c count" lines), for flamegraph.pl or speedscope."""
        path.write_text("".join(f"{k} {n}\n" for k, n in sorted(self.stacks.items())))


# Stages of a webhook, each named by the frames that do its work. A sample goes to the stage
# of the innermost frame that matches (so the produce call inside the handler is "produce",
# not "handler"); a sample no stage claims is aiohttp's own work if an aiohttp frame is on
# its stack (HTTP parsing, routing, request objects), else the event loop's or other.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("read body", ("WebhookHandler._read_body",)),
    ("parse, verify, decode", ("WebhookHandler._authenticate_and_parse",)),
    ("seal (facts, AES-GCM, the key ring)", ("WebhookHandler._seal", "KeyRing.seal")),
    ("key store (a chat's first key)", ("SqliteKeyStore.", "(privacy/keys_sqlite.py)")),
    ("envelope", ("encode_envelope", "Topics.for_aggregate")),
    ("produce (hand-off to the batch)", ("Publisher.publish", "RecordBatcher.add")),
    ("Kafka send and ack (aiokafka, batch flush)",
     ("Sender.", "SendProduceReqHandler.", "AIOKafkaConnection.", "MessageBatch.",
      "MessageAccumulator.", "AIOKafkaClient.", "RecordBatcher.", "batcher.py")),
    ("metrics", ("ReceiverMetrics.",)),
    ("respond (answer, headers, socket write)",
     ("json_response", "RequestHandler.finish_response", "WebhookAccepted")),
    ("handler (own lines)", ("WebhookHandler.post",)),
)
AIOHTTP, OTHER = "aiohttp (HTTP parse, routing, request objects)", "event loop and other"


def stage_shares(stacks: dict[str, int]) -> list[tuple[str, float]]:
    """The share of the samples in each stage (STAGES, then AIOHTTP and OTHER)."""
    per_stage: dict[str, int] = {}
    for key, n in stacks.items():
        frames = key.split(";")
        stage = next((name for frame in reversed(frames) for name, marks in STAGES
                      if any(m in frame for m in marks)), None)
        if stage is None:
            stage = AIOHTTP if any("(aiohttp/" in f for f in frames) else OTHER
        per_stage[stage] = per_stage.get(stage, 0) + n
    total = max(1, sum(per_stage.values()))
    return [(name, per_stage.get(name, 0) / total)
            for name in [name for name, _ in STAGES] + [AIOHTTP, OTHER]]


# ------------------------------------------------------------------ servers (parent)
@contextlib.asynccontextmanager
async def serving(app: object, port: int) -> AsyncIterator[str]:
    from aiohttp import web

    assert isinstance(app, web.Application)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        await runner.cleanup()


def bare_app() -> object:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks/{source}", handler)
    return app


@contextlib.contextmanager
def kafka_bootstrap() -> Iterator[tuple[str, str, int | None]]:
    """``(bootstrap, description, the broker's pid)``: the pid only of a broker started here
    (None for ``PARLEY_BENCH_KAFKA``), for :func:`process_cpu_s`."""
    configured = os.environ.get("PARLEY_BENCH_KAFKA")
    if configured:
        yield configured, "PARLEY_BENCH_KAFKA", None
        return
    from parley.testing.kafka import throwaway_kafka

    with throwaway_kafka("parley-bench-receiver-", heap_mb=1024) as state:
        yield (state.bootstrap, f"LocalKafka {state.kafka_version} (1 node, started for this run)",
               state.nodes[0].pid)


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; 0 for None."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(args: argparse.Namespace, bootstrap: str, broker: int | None,
                profile: CpuProfile | None
                ) -> tuple[list[dict[str, dict[str, object]]], list[dict[str, object]], str]:
    """The alternating runs, the open-loop runs at LOAD_SHARES of the receiver's peak, and
    the name of the loop they were served on. ``profile`` samples the receiver's runs;
    ``broker`` is the broker's pid (None: not started here), for its CPU per request."""
    import msgspec

    from parley.http import build_app
    from parley.kafka.launcher import free_ports
    from parley.kafka.topics import apply_topics
    from parley.logs import JsonFormatter
    from parley.loop import loop_name
    from parley.runtime import Runtime
    from parley.settings import KafkaSettings, PrivacySettings, Settings
    from parley.testing.scratch import scratch_dir
    from receiver.publisher import PublisherOptions
    from receiver.role import ReceiverRole

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=args.partitions),
        sources=traffic.sources())
    await apply_topics(settings.kafka, Runtime.from_settings(settings).topics.specs(args.partitions))
    # Each receiver run gets a key store of its own: never the working directory's .parley/.
    key_dir = scratch_dir("parley-bench-keys-")
    key_stores = iter(range(1_000_000))
    # Production logging (JSON lines at INFO: rejections, not accepted requests), to a file.
    log_file = scratch_dir("parley-bench-log-") / "receiver.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(JsonFormatter(settings.all_secrets()))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(os.environ.get("BENCH_LOG_LEVEL", "INFO"))
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    bare_port, receiver_port = free_ports(2)
    options = PublisherOptions(compression=args.compression, linger_ms=args.linger_ms)

    async def receiver_load(rate_per_s: float | None = None) -> dict[str, object]:
        # A fresh process's worth of state each run, keys included.
        privacy = PrivacySettings(encrypt=not args.no_encrypt,
                                  key_store=f"sqlite:///{key_dir}/keys-{next(key_stores)}.db")
        rt = Runtime.from_settings(msgspec.structs.replace(settings, privacy=privacy))
        async with serving(build_app(rt, [ReceiverRole(rt, options)]), receiver_port) as url:
            with profile if profile is not None and rate_per_s is None else contextlib.nullcontext():
                return await load(url, args.concurrency, args.seconds, args.warmup_seconds,
                                  rate_per_s, kind=args.traffic, broker=broker)

    runs: list[dict[str, dict[str, object]]] = []
    # Alternate the two servers, so that a noisy neighbour on the machine hits both alike.
    for _ in range(args.runs):
        results: dict[str, dict[str, object]] = {}
        async with serving(bare_app(), bare_port) as url:
            results["bare"] = await load(url, args.concurrency, args.seconds,
                                         args.warmup_seconds, kind=args.traffic, broker=broker)
        results["receiver"] = await receiver_load()
        results["receiver"]["load_avg"] = os.getloadavg()[0]
        runs.append(results)
    runs[-1]["receiver"]["log_lines"] = sum(1 for _ in log_file.open())
    # Latency under load: open-loop at shares of the receiver's median closed-loop rate.
    peak = sorted(float(r["receiver"]["rate_per_s"]) for r in runs)[len(runs) // 2]  # type: ignore[arg-type]
    under_load = [] if args.no_latency else [
        await receiver_load(share * peak) for share in LOAD_SHARES]
    return runs, under_load, loop_name(asyncio.get_running_loop())


def _line(name: str, r: dict[str, object]) -> str:
    f = {k: float(v) for k, v in r.items() if isinstance(v, int | float)}
    return (f"{name:>17}: {f['rate_per_s']:8.0f} req/s  p50 {f['p50_ms']:6.2f} ms  "
            f"p99 {f['p99_ms']:6.2f} ms  max {f['max_ms']:7.2f} ms  "
            f"server CPU {f['server_cpu_us_per_req']:4.0f} us/req  statuses {r['statuses']}  "
            f"load generator CPU {f['loadgen_cpu_us_per_req']:4.0f} us/req  broker CPU "
            + (f"{f['broker_cpu_us_per_req']:4.0f} us/req" if "broker_cpu_us_per_req" in f
               else "n/a (PARLEY_BENCH_KAFKA)"))


def _traffic_desc(args: argparse.Namespace) -> str:
    if args.traffic == "fixed":
        return f"{args.chats} chats" if args.chats else "a new chat per body"
    return (f"mixed traffic of both providers, {args.chats or traffic.MIXED_OPEN} "
            "conversations open at a time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--compression", help="producer codec (default: the best installed)")
    parser.add_argument("--linger-ms", type=int, default=0, help="the producer's linger")
    parser.add_argument("--loop", default="auto", choices=("auto", "uvloop", "asyncio"),
                        help="the servers' event loop (default: what `parley run` uses)")
    parser.add_argument("--runs", type=int, default=5, help="alternating runs (median reported)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="sample the receiver's CPU in its runs; write collapsed stacks here")
    parser.add_argument("--no-latency", action="store_true",
                        help="skip the open-loop runs at 25/50/90%% of the receiver's peak")
    parser.add_argument("--traffic", default="fixed", choices=traffic.TRAFFIC,
                        help="fixed: one Natterly body with a few members changing (the "
                        "default, as earlier figures); mixed: real-looking webhooks of both "
                        "providers (bench/receiver_traffic.py)")
    parser.add_argument("--chats", type=int, default=0,
                        help="fixed: cycle the bodies over N chats (default: a new chat per "
                        "body); mixed: N conversations open at a time (default "
                        f"{traffic.MIXED_OPEN}), each its own chat")
    parser.add_argument("--no-encrypt", action="store_true",
                        help="privacy.encrypt = false (the default seals, docs/privacy.md)")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)  # child mode, open loop
    args = parser.parse_args()
    if args.load:
        drive = (_drive(args.load, args.traffic, args.concurrency, args.seconds,
                        args.warmup_seconds)
                 if args.rate is None else
                 _drive_open(args.load, args.traffic, args.rate, args.seconds,
                             args.warmup_seconds))
        print(json.dumps(asyncio.run(drive)))
        return
    from parley import loop

    if args.chats:
        os.environ["PARLEY_BENCH_CHATS"] = str(args.chats)  # read by the load generator
    profile = CpuProfile() if args.profile else None
    load_before = os.getloadavg()[0]
    with kafka_bootstrap() as (bootstrap, kafka_desc, broker):
        started = time.perf_counter()
        runs, under_load, loop_desc = loop.run(bench(args, bootstrap, broker, profile), args.loop)
        elapsed = time.perf_counter() - started
    from receiver.publisher import best_compression

    print(f"Kafka: {kafka_desc}; {os.cpu_count()} CPUs; concurrency {args.concurrency}; "
          f"compression {args.compression or best_compression()}; loop {loop_desc}; "
          f"{'no sealing' if args.no_encrypt else 'sealed (privacy.encrypt)'}, "
          f"{_traffic_desc(args)}; "
          f"{args.seconds:g} s measured after {args.warmup_seconds:g} s warm-up, per server per run")
    ratios = []
    for i, run in enumerate(runs, 1):
        bare, rcv = run["bare"], run["receiver"]
        ratio = float(rcv["rate_per_s"]) / float(bare["rate_per_s"])  # type: ignore[arg-type]
        cpu_ratio = (float(rcv["server_cpu_us_per_req"])  # type: ignore[arg-type]
                     / float(bare["server_cpu_us_per_req"]))  # type: ignore[arg-type]
        ratios.append((ratio, float(rcv["p99_ms"]), cpu_ratio))  # type: ignore[arg-type]
        print(f"run {i}:")
        print(_line("bare aiohttp 204", bare))
        print(_line("receiver", rcv))
        print(f"{'ratio':>17}: {ratio:.2f} (CPU per request {cpu_ratio:.2f}x bare; "
              f"load average {float(rcv['load_avg']):.1f})")  # type: ignore[arg-type]
    ratio, p99, _ = sorted(ratios)[len(ratios) // 2]
    cpu_ratio = sorted(c for _, _, c in ratios)[len(ratios) // 2]  # the median of its own
    verdict = ("met" if ratio >= TARGET_RATIO and cpu_ratio <= TARGET_CPU_RATIO
               and p99 < TARGET_P99_MS else "NOT met")
    print(f"median run: ratio receiver / bare {ratio:.2f}, receiver CPU per request (median) "
          f"{cpu_ratio:.2f}x bare, "
          f"receiver p99 {p99:.1f} ms (target ratio >= {TARGET_RATIO} with CPU <= "
          f"{TARGET_CPU_RATIO:g}x and p99 < {TARGET_P99_MS:g} ms: {verdict})")
    if under_load:
        print("receiver latency under open-loop load (share of its median closed-loop rate):")
        for share, r in zip(LOAD_SHARES, under_load, strict=True):
            print(_line(f"{share:.0%} = {float(r['offered_per_s']):.0f}/s", r))  # type: ignore[arg-type]
    if profile is not None:
        profile.write(args.profile)
        cpu_us = sorted(float(r["receiver"]["server_cpu_us_per_req"])  # type: ignore[arg-type]
                        for r in runs)[len(runs) // 2]
        print(f"receiver CPU per request by stage ({sum(profile.stacks.values())} samples, "
              f"stacks in {args.profile}; median {cpu_us:.0f} us/req):")
        for stage, share in stage_shares(profile.stacks):
            print(f"  {stage:<52} {share * cpu_us:6.1f} us  {share:6.1%}")
    print(f"(whole run {elapsed:.0f} s, load average {load_before:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end; the receiver's last run wrote "
          f"{runs[-1]['receiver']['log_lines']} log lines at {os.environ.get('BENCH_LOG_LEVEL', 'INFO')})")


if __name__ == "__main__":
    main()

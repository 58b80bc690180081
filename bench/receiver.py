"""Receiver throughput and latency against a bare aiohttp handler, in one run.

Serves, on 127.0.0.1, (a) the real receiver (``build_app`` + ``ReceiverRole``: JSON check,
streamed body, Natterly token check, contracts parsing, idempotent acks=all produce to a
real broker, metrics, JSON logging at INFO) and (b) a bare aiohttp handler that
reads the body and answers 204. A load generator in a *separate process* (so it does not
share the servers' event loop) drives each in turn with a fixed number of concurrent
connections for a fixed time, then stops by itself. Prints both rates, their ratio, and
latency percentiles.

Kafka: ``PARLEY_BENCH_KAFKA`` (a bootstrap address) if set, else a LocalKafka started on
free ports in a temporary directory and stopped at the end.

    .venv/bin/python bench/receiver.py [--concurrency 32] [--seconds 10] [--warmup-seconds 2]
                                       [--runs 5] [--loop auto|uvloop|asyncio] [--linger-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# Run as `python bench/receiver.py`, this file's folder comes first on sys.path and its own
# name would hide the `receiver` package; drop that entry (nothing else is imported from it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

HOST = "127.0.0.1"
TOKEN = "bench-natterly-token-4f1c"  # noqa: S105 - a throwaway token for this run


# ------------------------------------------------------------------ load generator (child)
def _body(i: int) -> bytes:
    """A realistic ~1.7 kB Natterly ChatInitiated body; one chat per body (keys spread).

    Members in the order of Natterly's own example (docs/providers.md;
    tests/fixtures/webhooks/natterly/chat_initiated_seed.json): event, timestamp, payload, then
    auth_token last."""
    chat = str(uuid.UUID(int=i + 1))
    return json.dumps({
        "event": "ChatInitiated", "timestamp": 1517228896 + i,
        "payload": {
            "chat": {"uuid": chat, "status": "Initiated", "subject": "Question about my order",
                     "initiated_at": 1517228896, "last_message_at": 1517228896,
                     "prompt_for_transcript": True, "prompt_for_rating": True, "closed_at": 0,
                     "verified": False, "trusted": False, "pending_message": None,
                     "ip_address": "2a02:8010:6006:0:9854:480a:c38d:dcd8", "city": None,
                     "country": "United Kingdom", "country_code": "GB", "browser": "Chrome",
                     "platform": "Macintosh", "stale": False, "time_zone": "Europe/London",
                     "rating": None,
                     "department": {"uuid": "3adf89d1-2c22-4c4d-b72f-c274a08ba3cf", "name": "Sales"},
                     "user": None,
                     "visitor": {"name": "Anonymous Chicken", "avatar_url": "", "anonymous": True},
                     "visitor_custom_data": {},
                     "site": {"uuid": "91d068f1-7452-4391-9e06-32e151f76f4f", "name": "My Site",
                              "color": "2ecc71", "initials": "MS"}},
            "messages": [{"uuid": str(uuid.UUID(int=10**9 + i)), "chat": chat,
                          "text": "Hello, I have a question about order #" + str(i),
                          "event": False, "created_at": 1517228896, "updated_at": 1517228896,
                          "author": {"type": "AnonymousAnimal", "name": "Anonymous Chicken",
                                     "avatar_url": ""}, "posted_by_visitor": True}]},
        "auth_token": TOKEN,
    }, indent=2).encode()


async def _drive(url: str, concurrency: int, seconds: float, warmup_s: float) -> dict[str, object]:
    import aiohttp

    bodies = [_body(i) for i in range(4096)]
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        loop = asyncio.get_running_loop()
        measure_from = loop.time() + warmup_s
        stop_at = measure_from + seconds

        async def worker() -> None:
            nonlocal counter
            while (now := loop.time()) < stop_at:
                counter += 1
                body = bodies[counter % len(bodies)]
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    done = loop.time()
                if now >= measure_from:
                    latencies.append(done - now)
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    return {
        "requests": len(latencies),
        "rate_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "max_ms": 1000 * latencies[-1],
        "statuses": statuses,
    }


async def load(url: str, concurrency: int, seconds: float, warmup_s: float) -> dict[str, object]:
    """Run the load generator in a child process and return its figures, plus the CPU time
    this (server) process spent per request meanwhile."""
    cpu_before = time.process_time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load", url, "--concurrency", str(concurrency),
        "--seconds", str(seconds), "--warmup-seconds", str(warmup_s),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + warmup_s + 120)
    if proc.returncode != 0:
        raise SystemExit(f"load generator failed with exit code {proc.returncode}")
    result: dict[str, object] = json.loads(out)
    statuses = result["statuses"]
    assert isinstance(statuses, dict)
    total = sum(int(n) for n in statuses.values())
    # Requests of the warm-up are not in the figures but did use CPU: scale by the run time.
    result["server_cpu_us_per_req"] = (1e6 * (time.process_time() - cpu_before) * seconds
                                       / (seconds + warmup_s) / max(1, total))
    return result


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
def kafka_bootstrap() -> Iterator[tuple[str, str]]:
    configured = os.environ.get("PARLEY_BENCH_KAFKA")
    if configured:
        yield configured, "PARLEY_BENCH_KAFKA"
        return
    from parley.testing.kafka import throwaway_kafka

    with throwaway_kafka("parley-bench-receiver-", heap_mb=1024) as state:
        yield state.bootstrap, f"LocalKafka {state.kafka_version} (1 node, started for this run)"


async def bench(args: argparse.Namespace, bootstrap: str
                ) -> tuple[list[dict[str, dict[str, object]]], str]:
    """The alternating runs, and the name of the loop they were served on."""
    from parley.http import build_app
    from parley.kafka.launcher import free_ports
    from parley.kafka.topics import apply_topics
    from parley.logs import JsonFormatter
    from parley.loop import loop_name
    from parley.runtime import Runtime
    from parley.settings import KafkaSettings, Settings, SourceSettings
    from receiver.publisher import PublisherOptions
    from receiver.role import ReceiverRole

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=args.partitions),
        sources={"acme": SourceSettings(provider="natterly", auth_tokens=(TOKEN,))})
    await apply_topics(settings.kafka, Runtime.from_settings(settings).topics.specs(args.partitions))
    # Production logging (JSON lines at INFO: rejections, not accepted requests), to a file.
    log_file = Path(tempfile.mkdtemp(prefix="parley-bench-log-")) / "receiver.log"
    handler = logging.FileHandler(log_file)
    handler.setFormatter(JsonFormatter(settings.all_secrets()))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(os.environ.get("BENCH_LOG_LEVEL", "INFO"))
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    bare_port, receiver_port = free_ports(2)
    runs: list[dict[str, dict[str, object]]] = []
    # Alternate the two servers, so that a noisy neighbour on the machine hits both alike.
    for _ in range(args.runs):
        results: dict[str, dict[str, object]] = {}
        async with serving(bare_app(), bare_port) as url:
            results["bare"] = await load(f"{url}/webhooks/acme", args.concurrency, args.seconds,
                                         args.warmup_seconds)
        rt = Runtime.from_settings(settings)  # a fresh process's worth of state each run
        role = ReceiverRole(rt, PublisherOptions(compression=args.compression, linger_ms=args.linger_ms))
        async with serving(build_app(rt, [role]), receiver_port) as url:
            results["receiver"] = await load(f"{url}/webhooks/acme", args.concurrency,
                                             args.seconds, args.warmup_seconds)
        runs.append(results)
    runs[-1]["receiver"]["log_lines"] = sum(1 for _ in log_file.open())
    return runs, loop_name(asyncio.get_running_loop())


def _line(name: str, r: dict[str, object]) -> str:
    f = {k: float(v) for k, v in r.items() if isinstance(v, int | float)}
    return (f"{name:>17}: {f['rate_per_s']:8.0f} req/s  p50 {f['p50_ms']:6.2f} ms  "
            f"p99 {f['p99_ms']:6.2f} ms  max {f['max_ms']:7.2f} ms  "
            f"server CPU {f['server_cpu_us_per_req']:4.0f} us/req  statuses {r['statuses']}")


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
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(_drive(args.load, args.concurrency, args.seconds,
                                            args.warmup_seconds))))
        return
    from parley import loop

    with kafka_bootstrap() as (bootstrap, kafka_desc):
        started = time.perf_counter()
        runs, loop_desc = loop.run(bench(args, bootstrap), args.loop)
        elapsed = time.perf_counter() - started
    from receiver.publisher import best_compression

    print(f"Kafka: {kafka_desc}; {os.cpu_count()} CPUs; concurrency {args.concurrency}; "
          f"compression {args.compression or best_compression()}; loop {loop_desc}; "
          f"{args.seconds:g} s measured after {args.warmup_seconds:g} s warm-up, per server per run")
    ratios = []
    for i, run in enumerate(runs, 1):
        bare, rcv = run["bare"], run["receiver"]
        ratio = float(rcv["rate_per_s"]) / float(bare["rate_per_s"])  # type: ignore[arg-type]
        ratios.append((ratio, float(rcv["p99_ms"])))  # type: ignore[arg-type]
        print(f"run {i}:")
        print(_line("bare aiohttp 204", bare))
        print(_line("receiver", rcv))
        print(f"{'ratio':>17}: {ratio:.2f}")
    ratio, p99 = sorted(ratios)[len(ratios) // 2]
    verdict = "met" if ratio >= 0.5 and p99 < 50 else "NOT met"
    print(f"median run: ratio receiver / bare {ratio:.2f}, receiver p99 {p99:.1f} ms "
          f"(target ratio >= 0.5 with p99 < 50 ms: {verdict})")
    print(f"(whole run {elapsed:.0f} s; the receiver's last run wrote "
          f"{runs[-1]['receiver']['log_lines']} log lines at {os.environ.get('BENCH_LOG_LEVEL', 'INFO')})")


if __name__ == "__main__":
    main()

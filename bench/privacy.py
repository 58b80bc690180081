"""Per-subject encryption (docs/privacy.md): what it costs, with and without, in one run.

1. **Decrypt**: opening one sealed record whose body is ~2 kB (a Natterly ChatInitiated with
   visitor, messages and custom data): AES-256-GCM decrypt alone, and ``open_envelope`` (the
   decrypt plus the envelope with its body restored), best of several timeit rounds.
2. **Sealing CPU** (in process, no HTTP or Kafka, so a busy machine disturbs it little): CPU
   time per webhook of what the receiver does to a body between reading it and producing it
   (``parse_webhook``, then ``KeyRing.seal`` with a SQLite key store, then the record's
   encoding) against the same without sealing, 32 concurrent tasks, ``--records`` bodies
   cycling over ``--chats`` chats (each chat's first webhook creates its key, grouped as
   the receiver groups them), and over a new chat per body (every webhook creates a key);
   with ``--traffic mixed``, ``--records`` mixed webhooks only.
3. **Receiver**: requests/s of the real receiver (``bench/receiver.py``'s load generator in a
   separate process, closed loop) with ``privacy.encrypt`` false and true, alternating runs
   (which goes first alternates too), medians; with the CPU per request of this process (the
   receiver and its producer), of the load generator and of the broker (one started here).
   The keys live in a SQLite key store in a temporary directory; ``--chats N``: the bodies
   cycle over N chats (each chat's first webhook creates its key).
4. **Projector rebuild**: records/s of ``projector.rebuild`` over the same N webhooks produced
   plain to one topic prefix and sealed to another (through the receiver's publisher, 32 at a
   time: batched and compressed as a real log is), into an in-memory store, alternating as
   above; with the CPU per record of this process and of the broker. With ``--traffic
   fixed`` the log is the first ``--chats`` fixed bodies over and over (identical records).

``--traffic`` (``bench/receiver.py --traffic``, bench/receiver_traffic.py) picks the webhooks
of parts 2 to 4: ``fixed`` (the default, as every earlier figure), one 1.7 kB Natterly
ChatInitiated with a few members changing, whose plain records compress in Kafka's zstd
batches far better than real ones (sealed ones do not compress at all), so it overstates
what sealing costs; ``mixed``, real-looking webhooks of both providers
(``bench/replay_data.py``'s generator), ``--chats`` conversations open at a time, each a chat
of its own (its first webhook creates its key).

On a machine shared with other work the rates move with the neighbours' load (printed with
every round); the CPU per request or record moves less, so compare both.

Kafka: ``PARLEY_BENCH_KAFKA`` (a bootstrap address) if set, else a LocalKafka for the run.

    .venv/bin/python bench/privacy.py [--runs 3] [--seconds 5] [--records 20000] [--chats 2000]
                                      [--traffic fixed|mixed] [--skip decrypt,seal,...]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import io
import json
import os
import statistics
import sys
import time
import timeit
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from parley.testing.scratch import scratch_dir  # noqa: E402 - key stores removed at exit

TARGET_DECRYPT_US, TARGET_RATIO = 5.0, 0.9


@functools.cache
def _bench_receiver() -> object:
    """bench/receiver.py as a module (its load generator, servers and broker)."""
    spec = importlib.util.spec_from_file_location("bench_receiver", Path(__file__).with_name("receiver.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def webhooks(args: argparse.Namespace, n: int) -> list[tuple[str, bytes]]:
    """``n`` ``(provider, body)`` of ``--traffic`` (bench/receiver_traffic.py): fixed, over
    ``PARLEY_BENCH_CHATS`` chats (none: a chat per body); mixed, as many conversations open."""
    traffic = _bench_receiver().traffic  # type: ignore[attr-defined]
    if args.traffic == "fixed":
        return [("natterly", traffic.fixed_body(i)) for i in range(n)]
    return traffic.mixed_webhooks(n)  # type: ignore[no-any-return]


def two_kb_body() -> bytes:
    """A ~2 kB Natterly ChatInitiated: identified visitor, custom data, three messages."""
    chat = str(uuid.uuid4())
    visitor = {"uuid": str(uuid.uuid4()), "name": "Priya Patel", "email_address": "priya@example.org",
               "avatar_url": "", "anonymous": False}
    messages = [{"uuid": str(uuid.uuid4()), "chat": chat, "text": text, "event": False,
                 "author": {"type": "Visitor", "name": "Priya Patel", "avatar_url": "",
                            "details": {"name": "Priya Patel", "avatar_url": "", "anonymous": False}},
                 "posted_by_visitor": True, "created_at": 1700000000 + n,
                 "updated_at": 1700000000 + n, "file": None, "formatting": None, "whisper": False}
                for n, text in enumerate(("Hi, where is my order ORD-10442?",
                                          "It was due on Monday and the tracking page is empty.",
                                          "Could you check with the courier please?"))]
    body = {"event": "ChatInitiated", "timestamp": 1700000000, "payload": {
        "chat": {"uuid": chat, "status": "Initiated", "subject": "Question about delivery",
                 "initiated_at": 1700000000, "last_message_at": 1700000042, "closed_at": 0,
                 "ip_address": "81.2.69.160", "city": "Manchester", "country": "United Kingdom",
                 "country_code": "GB", "browser": "Firefox", "platform": "Windows",
                 "time_zone": "Europe/London", "rating": None,
                 "department": {"uuid": str(uuid.uuid4()), "name": "Sales"}, "user": None,
                 "visitor": visitor, "visitor_custom_data": {"plan": "gold", "order_ref": "ORD-10442",
                                                             "segment": "returning"},
                 "site": {"uuid": str(uuid.uuid4()), "name": "My Site", "color": "2ecc71",
                          "initials": "MS"}, "session_id": str(uuid.uuid4())},
        "messages": messages}}
    return json.dumps(body, separators=(",", ":")).encode()


async def decrypt_figures() -> dict[str, float]:
    from datetime import UTC, datetime

    from contracts.envelope import decode_envelope, encode_envelope
    from contracts.ingest import parse_webhook
    from parley.privacy import MasterKeys, MemoryKeyStore
    from parley.privacy.master import new_master_key, parse_master_key
    from parley.privacy.ring import KeyRing
    from parley.privacy.seal import open_envelope

    body = two_kb_body()
    ring = KeyRing(MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "bench"))))
    env = parse_webhook("natterly", "acme", body, received_at=datetime.now(UTC))
    stored = decode_envelope(encode_envelope(await ring.seal(env)))
    assert stored.subject is not None and not isinstance(stored.subject, type(None))
    key = await ring.store.get(str(stored.subject))
    assert key is not None
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(key.secret)
    blob = stored.sealed
    assert isinstance(blob, bytes)
    aad = f"parley-seal-1\x00{stored.subject}\x00{stored.event_id}\x00{stored.source}".encode()
    assert bytes(open_envelope(stored, key, aead).body) == bytes(env.body)

    def best_us(fn: object, number: int = 20000) -> float:
        return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6  # type: ignore[arg-type]

    raw = encode_envelope(stored)
    return {
        "body_bytes": float(len(body)),
        "aead_decrypt_us": best_us(lambda: aead.decrypt(blob[5:17], blob[17:], aad)),
        "open_envelope_us": best_us(lambda: open_envelope(stored, key, aead)),
        "decode_envelope_sealed_us": best_us(lambda: decode_envelope(raw)),
        "decode_envelope_plain_us": best_us(lambda: decode_envelope(encode_envelope(env))) -
        best_us(lambda: encode_envelope(env)),
    }


async def seal_cpu_figures(args: argparse.Namespace) -> dict[str, float]:
    """CPU µs per webhook, plain and sealed, for ``--chats`` chats and for a chat per body."""
    from datetime import UTC, datetime

    from contracts.envelope import encode_envelope
    from contracts.ingest import parse_webhook
    from parley.privacy.config import build_key_ring
    from parley.settings import PrivacySettings, Settings

    async def per_webhook(bodies: list[tuple[str, bytes]], sealed: bool) -> float:
        keys = scratch_dir("parley-bench-keys-")
        ring = build_key_ring(Settings(privacy=PrivacySettings(
            key_store=f"sqlite:///{keys}/keys.db")))
        await ring.store.open()  # not part of the figure
        pending = iter(bodies)

        async def worker() -> None:
            for provider, body in pending:
                env = parse_webhook(provider, "acme", body, received_at=datetime.now(UTC))
                encode_envelope(await ring.seal(env) if sealed else env)
        started = time.process_time()
        await asyncio.gather(*(worker() for _ in range(32)))
        cpu = time.process_time() - started
        await ring.close()
        await ring.store.close()  # idempotent; the ring closes only a store it opened
        return cpu / len(bodies) * 1e6

    figures: dict[str, float] = {}
    for name, chats in (("chats", args.chats), ("new", 0))[:1 if args.traffic == "mixed" else 2]:
        os.environ["PARLEY_BENCH_CHATS"] = str(chats) if chats else ""
        bodies = webhooks(args, args.records)
        rounds = [(await per_webhook(bodies, False), await per_webhook(bodies, True))
                  for _ in range(args.runs)]
        figures[f"{name}_plain"] = statistics.median(p for p, _ in rounds)
        figures[f"{name}_sealed"] = statistics.median(s for _, s in rounds)
    os.environ.pop("PARLEY_BENCH_CHATS", None)
    return figures


def _orders(runs: int) -> list[tuple[str, str]]:
    """Which goes first in each round: plain, then sealed, then the other way round, so a
    neighbour's load that grows or fades during a round hits both alike."""
    return [("plain", "sealed") if n % 2 == 0 else ("sealed", "plain") for n in range(runs)]


async def receiver_figures(args: argparse.Namespace, bootstrap: str,
                           broker: int | None) -> list[dict[str, float]]:
    from parley.http import build_app
    from parley.kafka.launcher import free_ports
    from parley.kafka.topics import apply_topics
    from parley.runtime import Runtime
    from parley.settings import KafkaSettings, PrivacySettings, Settings
    from receiver.role import ReceiverRole

    br = _bench_receiver()
    prefix = f"bprv{uuid.uuid4().hex[:8]}"
    keys = scratch_dir("parley-bench-keys-")
    base = Settings(kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=6),
                    sources=br.traffic.sources())  # type: ignore[attr-defined]
    await apply_topics(base.kafka, Runtime.from_settings(base).topics.specs(6))
    (port,) = free_ports(1)
    os.environ["PARLEY_BENCH_CHATS"] = str(args.chats)  # the load generator's chat spread
    kind = args.traffic
    warmup_s = 1.0

    def app(name: str, keys_db: str) -> object:
        privacy = PrivacySettings(encrypt=name == "sealed", key_store=f"sqlite:///{keys}/{keys_db}")
        rt = Runtime.from_settings(Settings(kafka=base.kafka, sources=base.sources,
                                            privacy=privacy))
        return build_app(rt, [ReceiverRole(rt)])

    for name in ("plain", "sealed"):  # not counted: the broker's JIT warms up on both
        async with br.serving(app(name, "warm-up.db"), port) as url:  # type: ignore[attr-defined]
            await br.load(url, 32, 2.0, warmup_s, kind=kind)  # type: ignore[attr-defined]
    runs: list[dict[str, float]] = []
    for n, order in enumerate(_orders(args.runs)):
        run: dict[str, float] = {}
        for name in order:
            async with br.serving(app(name, f"keys-{n}.db"), port) as url:  # type: ignore[attr-defined]
                r = await br.load(url, 32, args.seconds, warmup_s, kind=kind, broker=broker)  # type: ignore[attr-defined]
            statuses = r["statuses"]
            assert set(statuses) == {"200"}, statuses
            run[name] = float(r["rate_per_s"])
            run[name + "_cpu_us"] = float(r["server_cpu_us_per_req"])
            # Scaled like the server's: the warm-up's requests are not counted.
            run[name + "_broker_us"] = float(r["broker_cpu_us_per_req"] or 0.0)
            run[name + "_loadgen_us"] = float(r["loadgen_cpu_us_per_req"])
        run["load"] = os.getloadavg()[0]
        runs.append(run)
    return runs


async def _publish_all(publisher: Any, topics: Any, pending: Iterator[Any]) -> None:
    """Publish ``pending``'s envelopes one at a time (one of several concurrent senders)."""
    from contracts.envelope import encode_envelope

    for env in pending:
        await publisher.publish(topics.for_aggregate(env.aggregate), env.record_key,
                                encode_envelope(env))


async def rebuild_figures(args: argparse.Namespace, bootstrap: str,
                          broker: int | None) -> list[dict[str, float]]:
    from datetime import UTC, datetime

    from prometheus_client import CollectorRegistry

    from contracts.ingest import parse_webhook
    from contracts.topics import Topics
    from parley.kafka.topics import apply_topics
    from parley.privacy.config import build_key_ring
    from parley.settings import KafkaSettings, PrivacySettings, Settings
    from projector.rebuild import rebuild
    from projector.stores import open_store
    from receiver.metrics import ReceiverMetrics
    from receiver.publisher import Publisher, PublisherOptions

    br = _bench_receiver()
    keys = scratch_dir("parley-bench-keys-")
    settings = Settings(kafka=KafkaSettings(bootstrap=bootstrap, partitions=6),
                        privacy=PrivacySettings(key_store=f"sqlite:///{keys}/keys.db"))
    ring = build_key_ring(settings)
    now = datetime.now(UTC)
    os.environ["PARLEY_BENCH_CHATS"] = str(args.chats)
    bodies = ([("natterly", br.traffic.fixed_body(i % args.chats))  # type: ignore[attr-defined]
               for i in range(args.records)]  # as before: the --chats first bodies, over again
              if args.traffic == "fixed" else webhooks(args, args.records))
    plain = [parse_webhook(provider, "acme", body, received_at=now) for provider, body in bodies]
    sealed = [await ring.seal(e) for e in plain]
    kafkas = {}
    for name, envelopes in (("plain", plain), ("sealed", sealed)):
        kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"bprr{name}{uuid.uuid4().hex[:6]}",
                              partitions=6)
        topics = Topics(prefix=kafka.topic_prefix)
        await apply_topics(kafka, topics.specs(6))
        # Written as the receiver writes them (its publisher: batches of what 32 concurrent
        # requests hand over, compressed with its codec), so both logs hold batches of the
        # same number of records: what a rebuild really fetches and decompresses.
        publisher = Publisher(kafka, ReceiverMetrics(CollectorRegistry()), PublisherOptions())
        await publisher.start()
        pending = iter(envelopes)
        try:
            await asyncio.gather(*(_publish_all(publisher, topics, pending) for _ in range(32)))
        finally:
            await publisher.stop()
        kafkas[name] = (kafka, topics)
    runs: list[dict[str, float]] = []
    for order in _orders(args.runs):
        run: dict[str, float] = {}
        for name in order:
            kafka, topics = kafkas[name]
            store = open_store("memory://")
            await store.open()
            fresh = build_key_ring(settings)  # an empty cache, as a rebuild process starts
            cpu, broker_before = time.process_time(), br.process_cpu_s(broker)  # type: ignore[attr-defined]
            try:
                report = await rebuild(store, kafka, topics, out=io.StringIO(),
                                       ring=fresh if name == "sealed" else None)
            finally:
                await store.close()
                await fresh.close()
            assert report.records == args.records and report.dead_letters == 0
            run[name] = report.records / report.seconds
            # This process's CPU (the fold, and the in-memory store's writes) per record.
            run[name + "_cpu_us"] = 1e6 * (time.process_time() - cpu) / report.records
            run[name + "_broker_us"] = (1e6 * (br.process_cpu_s(broker) - broker_before)  # type: ignore[attr-defined]
                                        / report.records)
        run["load"] = os.getloadavg()[0]
        runs.append(run)
    await ring.close()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="per receiver run")
    parser.add_argument("--records", type=int, default=20000, help="per rebuild")
    parser.add_argument("--chats", type=int, default=2000,
                        help="fixed traffic: the bodies cycle over N chats; mixed: N "
                        "conversations open at a time, each its own chat")
    parser.add_argument("--traffic", default="fixed", choices=("fixed", "mixed"),
                        help="the webhooks of the sealing, receiver and rebuild parts "
                        "(bench/receiver.py --traffic)")
    parser.add_argument("--skip", default="",
                        help="comma list of: decrypt,seal,receiver,rebuild")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    started = time.perf_counter()
    if "decrypt" not in skip:
        d = asyncio.run(decrypt_figures())
        verdict = "met" if d["open_envelope_us"] < TARGET_DECRYPT_US else "NOT met"
        print(f"decrypt a {d['body_bytes']:.0f}-byte body: AES-GCM {d['aead_decrypt_us']:.2f} us, "
              f"open_envelope {d['open_envelope_us']:.2f} us (target < {TARGET_DECRYPT_US:g} us: "
              f"{verdict}); decoding the record: sealed {d['decode_envelope_sealed_us']:.2f} us, "
              f"plain {d['decode_envelope_plain_us']:.2f} us")
    if "seal" not in skip:
        c = asyncio.run(seal_cpu_figures(args))
        mixed = f"{args.records} mixed webhooks, {args.chats} conversations open at a time"
        for name, what in ((("chats", mixed),) if args.traffic == "mixed" else (
                ("chats", f"{args.records} webhooks over {args.chats} chats"),
                ("new", "a new chat per webhook"))):
            print(f"sealing CPU per webhook, {what}: plain {c[name + '_plain']:.1f} us, sealed "
                  f"{c[name + '_sealed']:.1f} us (+{c[name + '_sealed'] - c[name + '_plain']:.1f}"
                  f" us; median of {args.runs}; load average {os.getloadavg()[0]:.1f})")
    if skip >= {"receiver", "rebuild"}:
        return
    br = _bench_receiver()
    with br.kafka_bootstrap() as (bootstrap, desc, broker):  # type: ignore[attr-defined]
        print(f"Kafka: {desc}; {os.cpu_count()} CPUs; {args.traffic} traffic; load average "
              f"{os.getloadavg()[0]:.1f}")
        for what, unit, figures in (
                ("receiver req/s", "request", None if "receiver" in skip else receiver_figures),
                ("rebuild records/s", "record", None if "rebuild" in skip else rebuild_figures)):
            if figures is None:
                continue
            runs = asyncio.run(figures(args, bootstrap, broker))
            for n, r in enumerate(runs, 1):
                broker_cpu = (f"; broker {r['plain_broker_us']:.0f} / {r['sealed_broker_us']:.0f}"
                              if broker is not None else "")
                if "plain_loadgen_us" in r:
                    broker_cpu += (f"; load generator {r['plain_loadgen_us']:.0f} / "
                                   f"{r['sealed_loadgen_us']:.0f}")
                print(f"{what} run {n}: plain {r['plain']:.0f}, sealed {r['sealed']:.0f}, "
                      f"ratio {r['sealed'] / r['plain']:.2f} (CPU plain / sealed: this process "
                      f"{r['plain_cpu_us']:.1f} / {r['sealed_cpu_us']:.1f} us per {unit}"
                      f"{broker_cpu}; load average {r['load']:.1f})")
            ratio = statistics.median(r["sealed"] / r["plain"] for r in runs)
            cpu = statistics.median(r["plain_cpu_us"] / r["sealed_cpu_us"] for r in runs)
            print(f"{what}: median sealed / plain {ratio:.2f} (target >= {TARGET_RATIO}: "
                  f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}); per CPU-second of this "
                  f"process (median of plain CPU / sealed CPU per {unit}) {cpu:.2f}; load average "
                  f"now {os.getloadavg()[0]:.1f}")
    print(f"(whole run {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

"""Publishing states with and without sealing their personal parts (issue 20 point 4), same run.

Folds N Natterly chat envelopes (bench/consumers.py's realistic bodies, 1,000 chats) into the
outbox entries the projector commits, in batches of ``--fold-batch`` records, then sends them
all with the projector's ``StatePublisher`` (its hand-over path) to a real broker: ``plain``
(``privacy.encrypt = false``) and ``sealed`` (a key ring over a SQLite key store, the default
setup), alternating, ``--rounds`` times each. The keys are created in a warm-up round (once
per subject in production, at its first state), so the rounds measure the steady state:
one key-store query per batch for keys older than the ring's cache TTL, and the sealing.

Reported per mode: the median of states/s (wall clock) and of CPU microseconds of this process
per state; sealed ÷ plain of both; the load average before and after. Also the sealing alone
(``StatePublisher._seal``, no Kafka) in microseconds per state. Uses ``$PARLEY_BENCH_KAFKA``
if set, else starts a LocalKafka on free ports in a temporary directory (and stops it).

    .venv/bin/python bench/state_seal.py [--events 20000] [--rounds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from bench.consumers import envelopes, folded  # noqa: E402
from contracts.topics import Topics  # noqa: E402
from parley.privacy.keys import open_key_store  # noqa: E402
from parley.privacy.master import MasterKeys, new_master_key, parse_master_key  # noqa: E402
from parley.privacy.ring import KeyRing  # noqa: E402
from parley.settings import KafkaSettings  # noqa: E402
from parley.testing.kafka import throwaway_kafka  # noqa: E402
from projector.outbox import OutboxEntry  # noqa: E402
from projector.state_publisher import StatePublisher  # noqa: E402


class _NoOutbox:
    """The publisher's store, for entries handed over from memory: nothing to delete."""

    async def ack_outbox(self, tokens: Sequence[int]) -> None:
        pass


async def publish(k: KafkaSettings, topics: Topics, batches: list[list[OutboxEntry]],
                  ring: KeyRing | None) -> tuple[float, float]:
    """Send every batch (hand-over path, as the runner does); wall and CPU seconds."""
    producer = StatePublisher.make_producer(k)
    await producer.start()
    try:
        publisher = StatePublisher(_NoOutbox(), producer, topics, ring=ring)  # type: ignore[arg-type]
        t0, c0 = time.perf_counter(), time.process_time()
        for entries in batches:
            publisher.handoff(entries)
            await publisher.publish_handed()
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await producer.stop()


async def bench(bootstrap: str, n: int, rounds: int, fold_batch: int) -> None:
    prefix = f"bench-seal-{uuid.uuid4().hex[:8]}"
    k = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, partitions=6)
    topics = Topics(prefix=prefix)
    await StatePublisher.ensure_topics(k, topics)
    batches = folded(envelopes(n), topics.chat, fold_batch)
    states = sum(len(b) for b in batches)
    masters = MasterKeys(parse_master_key(new_master_key(), "bench"))
    with tempfile.TemporaryDirectory() as tmp:
        ring = KeyRing(open_key_store(f"sqlite:///{tmp}/keys.db", masters))
        try:
            print(f"{n} records -> {states} states in {len(batches)} batches; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            wall, _ = await publish(k, topics, batches, ring)  # creates every subject's key
            print(f"warm-up, keys created: sealed {states / wall:,.0f} states/s", flush=True)
            t0 = time.perf_counter()
            for entries in batches:
                await StatePublisher(_NoOutbox(), None, topics, ring=ring)._seal(  # type: ignore[arg-type]
                    entries)
            seal_us = (time.perf_counter() - t0) / states * 1e6
            runs: dict[str, list[tuple[float, float]]] = {"plain": [], "sealed": []}
            for r in range(rounds):
                order = ("plain", "sealed") if r % 2 == 0 else ("sealed", "plain")
                for mode in order:
                    wall, cpu = await publish(k, topics, batches,
                                              ring if mode == "sealed" else None)
                    runs[mode].append((states / wall, cpu / states * 1e6))
                    print(f"round {r + 1} {mode}: {states / wall:,.0f} states/s, "
                          f"{cpu / states * 1e6:.1f} CPU us/state", flush=True)
        finally:
            await ring.close()
    med = {m: (statistics.median(x for x, _ in v), statistics.median(c for _, c in v))
           for m, v in runs.items()}
    print(f"sealing alone: {seal_us:.1f} us/state")
    for m, (rate, cpu) in med.items():
        print(f"{m}: median {rate:,.0f} states/s, {cpu:.1f} CPU us/state")
    print(f"sealed / plain: states/s {med['sealed'][0] / med['plain'][0]:.2f}x, "
          f"CPU per state {med['sealed'][1] / med['plain'][1]:.2f}x; "
          f"load {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--fold-batch", type=int, default=500)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("PARLEY_BENCH_KAFKA") or stack.enter_context(
            throwaway_kafka("parley-bench-kafka-", heap_mb=768)).bootstrap
        asyncio.run(bench(bootstrap, args.events, args.rounds, args.fold_batch))


if __name__ == "__main__":
    main()

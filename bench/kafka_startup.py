"""Time from `parley kafka up` to the first successful acks=all produce, for 1 and 3 brokers.

Each run uses a fresh data directory and free ports on 127.0.0.1, goes through the real CLI
(`python -m parley.cli kafka up`), produces one record with acks=all to a new topic, and
stops the cluster. The JVM start alone (`java -version`) is timed in the same run as a floor.

    .venv/bin/python bench/kafka_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contracts.topics import TopicSpec
from parley.kafka import LocalKafka, resolve_jars
from parley.kafka.clients import make_producer
from parley.kafka.launcher import free_port_block
from parley.kafka.topics import apply_topics
from parley.settings import KafkaSettings


async def first_produce(bootstrap: str, rf: int) -> None:
    settings = KafkaSettings(bootstrap=bootstrap, replication_factor=rf)
    await apply_topics(settings, [TopicSpec(name="bench", key="k", partitions=1, retention_ms=-1)])
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait("bench", b"hello", key=b"k")
    finally:
        await producer.stop()


def one_run(brokers: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="parley-bench-kafka-"))
    base = free_port_block(brokers)
    cfg = root / "parley.toml"
    cfg.write_text(f'data_dir = "{root}"\n')
    kafka = LocalKafka(root / "kafka", brokers=brokers, ports=[base + i for i in range(brokers)])
    start = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "parley.cli", "kafka", "up", "--config", str(cfg),
                        "--brokers", str(brokers), "--port", str(base)],
                       check=True, capture_output=True, timeout=180)
        state = kafka.load_state()
        assert state is not None
        asyncio.run(first_produce(state.bootstrap, min(3, brokers)))
        return time.perf_counter() - start
    finally:
        kafka.down(wipe=True)
        shutil.rmtree(root, ignore_errors=True)


def jvm_floor() -> float:
    start = time.perf_counter()
    subprocess.run(["java", "-version"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    resolve_jars()  # not part of the timing: cached after the first `make`
    floor = statistics.median(jvm_floor() for _ in range(args.runs))
    results = {n: [one_run(n) for _ in range(args.runs)] for n in (1, 3)}
    print(f"JVM start floor (java -version): {floor:.2f}s")
    for n, times in results.items():
        print(f"{n} broker(s): up -> first acks=all produce: median {statistics.median(times):.2f}s "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
    ratio = statistics.median(results[3]) / statistics.median(results[1])
    print(f"ratio 3 brokers / 1 broker: {ratio:.2f}x")


if __name__ == "__main__":
    main()

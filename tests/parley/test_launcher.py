"""`parley kafka up|down|status|tool`: real brokers, clear failures, only stops what it
started; Kafka's own tools come with the broker's jars."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from contracts.topics import Topics, TopicSpec
from parley.errors import LauncherError
from parley.kafka import resolve_jars
from parley.kafka.clients import make_consumer, make_producer
from parley.kafka.launcher import LocalKafka, free_ports
from parley.kafka.tools import TOOLS
from parley.kafka.topics import apply_topics
from parley.settings import KafkaSettings

pytestmark = pytest.mark.kafka


def test_port_taken_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        kafka = LocalKafka(tmp_path / "k", ports=[taken], controller_ports=free_ports(1))
        with pytest.raises(LauncherError, match=f"port {taken} .* already in use"):
            kafka.up()
    assert kafka.status() == [] or not any(n.running for n in kafka.status())


def test_missing_java_or_maven_is_one_line(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PARLEY_CACHE_DIR": str(tmp_path / "c")}
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    proc = subprocess.run([sys.executable, "-m", "parley.cli", "kafka", "up", "--config", str(cfg),
                           "--port", str(free_ports(1)[0])],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("parley: error: `java` not found on PATH")


def test_make_kafka_jars_without_maven_is_one_line(tmp_path: Path) -> None:
    """What `make kafka-jars` (and so `make run` / `make test`) runs, on a machine without
    Maven and with an empty jar cache: one line saying what to install, no traceback."""
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PARLEY_CACHE_DIR": str(tmp_path / "c")}
    make_kafka_jars = "from parley.kafka.jars import main; raise SystemExit(main())"
    assert make_kafka_jars in (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    proc = subprocess.run([sys.executable, "-c", make_kafka_jars], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "parley: error: `mvn` not found on PATH; it is needed to resolve the Kafka jars from Maven "
        "Central. Install it (Debian: apt-get install maven)."], proc.stderr


def test_down_stops_only_what_up_started(tmp_path: Path) -> None:
    # A stale state file naming a pid that is not this node's Kafka must not be signalled.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kafka = LocalKafka(tmp_path / "k", ports=free_ports(1), controller_ports=free_ports(1))
        state = kafka._new_state()
        state.nodes[0].pid = bystander.pid
        kafka._save_state(state)
        assert kafka.down() == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.slow
async def test_three_brokers_rf3_min_isr2_survives_one_down(private_kafka) -> None:  # type: ignore[no-untyped-def]
    kafka = await asyncio.to_thread(private_kafka, 3)
    state = kafka.load_state()
    assert state is not None and len(state.nodes) == 3
    settings = KafkaSettings(bootstrap=state.bootstrap, replication_factor=3)
    spec = TopicSpec(name="rf3", key="k", partitions=3, retention_ms=-1)
    assert spec.configs(3)["min.insync.replicas"] == "2"
    await apply_topics(settings, [spec])
    producer = make_producer(settings, request_timeout_ms=10_000)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait("rf3", b"x", key=str(i).encode())
        # One node down: 2 in-sync replicas remain, acks=all writes still succeed.
        await asyncio.to_thread(kafka.stop_node, 3)
        async with asyncio.timeout(60):
            while True:
                try:
                    await producer.send_and_wait("rf3", b"after", key=b"k")
                    break
                except KafkaError:
                    await asyncio.sleep(0.5)  # leader moving: retry until the deadline
    finally:
        await producer.stop()


def test_kafkas_tools_are_resolved_with_the_broker() -> None:
    # ConsumerGroupCommand, ConsoleConsumer, … are in the jars `parley kafka up` resolves, so
    # no separate Kafka download is needed to inspect Parley's topics and groups.
    classes: set[str] = set()
    for jar in resolve_jars().glob("*.jar"):
        with zipfile.ZipFile(jar) as z:
            classes.update(n.removesuffix(".class").replace("/", ".") for n in z.namelist()
                           if n.endswith(".class"))
    assert {"org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "org.apache.kafka.tools.consumer.ConsoleConsumer"} <= classes
    assert {t.main_class for t in TOOLS.values()} <= classes


async def test_consumer_groups_tool_describes_a_parley_group(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    group = Topics(prefix=kafka_settings.topic_prefix).group_id("search")
    consumer = make_consumer(kafka_settings, group_id=group)
    await consumer.start()
    try:
        tp = TopicPartition(topics.chat, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 0})
    finally:
        await consumer.stop()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[kafka]\nbootstrap = "{kafka_settings.bootstrap}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli", "--config", str(cfg), "kafka", "tool",
        "consumer-groups", "--describe", "--group", group,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows = [line.split() for line in out.decode().splitlines()]
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG …
    assert [group, topics.chat, "0", "0", "0", "0"] in [r[:6] for r in rows]

"""``parley topics apply`` on a three-broker cluster that auto-creates topics (one cluster for
the module: each costs ~20 s to start on two cores).

* With ``kafka.replication_factor`` unset it chooses 3 replicas and ``min.insync.replicas`` 2,
  says so, and warns that the cluster creates topics on first use.
* ``replication_factor = 1`` set explicitly is honoured; raising it afterwards leaves those
  topics at ``min.insync.replicas`` 1 (what their one replica can satisfy), says how to add
  replicas, and acks=all writes keep working.
* Topics with two replicas keep ``min.insync.replicas`` 1 when the factor is raised to 3, so
  they still take acks=all writes with one of their brokers down. (Kafka 4 caps the
  effective minimum at a partition's replica count, so a one-replica topic with
  ``min.insync.replicas`` 2 still takes writes; with two replicas and one down it does not:
  every write would fail with NotEnoughReplicas, a 503 per webhook.)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from contracts.topics import Topics
from parley.cli import main
from parley.kafka.clients import make_admin, make_producer
from parley.kafka.launcher import LocalKafka, free_ports
from parley.settings import KafkaSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A three-node cluster with ``auto.create.topics.enable=true`` (Kafka's own default,
    which the launcher turns off). A test that stops a node starts it again."""
    ports = free_ports(6)
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka3"), brokers=3, ports=ports[:3],
                       controller_ports=ports[3:], heap_mb=512,
                       extra_properties={"auto.create.topics.enable": "true"})
    try:
        kafka.up()
        yield kafka
    finally:
        # Its data is wiped anyway: no controlled shutdown (the last node of a cluster that
        # lost its quorum waits out the SIGTERM timeout).
        for node in range(1, 4):
            kafka.stop_node(node, sig=signal.SIGKILL)
        kafka.down(wipe=True)


@pytest.fixture
def cluster(kafka: LocalKafka) -> str:
    """The cluster's bootstrap."""
    state = kafka.load_state()
    assert state is not None
    return state.bootstrap


def _config(tmp_path: Path, bootstrap: str, prefix: str, extra: str = "") -> str:
    cfg = tmp_path / f"{prefix}.toml"
    cfg.write_text(f'[kafka]\nbootstrap = "{bootstrap}"\ntopic_prefix = "{prefix}"\n'
                   f"partitions = 2\n{extra}")
    return str(cfg)


async def _replication(bootstrap: str, topic: str) -> tuple[int, str]:
    """A topic's replicas per partition (the fewest), and its min.insync.replicas. The broker
    asked may not have the topic's metadata yet just after it was created (KRaft hands it to
    each broker in turn; its describe_configs then answers no entries): asked again until it
    has, for up to 30 s."""
    admin = make_admin(KafkaSettings(bootstrap=bootstrap))
    await admin.start()
    try:
        async with asyncio.timeout(30):
            while True:
                [described] = await admin.describe_topics([topic])
                responses = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topic)])
                configs = {e[0]: e[1] for resp in responses for res in resp.resources
                           for e in res[4]}
                if described["partitions"] and "min.insync.replicas" in configs:
                    return (min(len(p["replicas"]) for p in described["partitions"]),
                            configs["min.insync.replicas"])
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


def test_unset_replication_factor_chooses_three_and_warns_of_auto_create(
        cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics", "apply", "--config", _config(tmp_path, cluster, "auto")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == ("replication factor 3, min.insync.replicas 2 (chosen for 3 "
                                   "broker(s); set kafka.replication_factor to override)")
    topics = Topics(prefix="auto")
    for name in (*topics.event_topics, topics.dlq("projector"), topics.dlq("search")):
        assert f"{name}: created (" in out
        assert asyncio.run(_replication(cluster, name)) == (3, "2")
    [warning] = err.splitlines()
    assert warning.startswith("parley: warning: the cluster creates topics on first use "
                              "(auto.create.topics.enable=true on broker(s) 1, 2, 3)")


def test_explicit_one_replica_is_honoured_and_raising_it_keeps_writes_working(
        cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topics = Topics(prefix="one")
    one = _config(tmp_path, cluster, "one", "replication_factor = 1\n")
    assert main(["topics", "apply", "--config", one]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "replication factor 1, min.insync.replicas 1 (kafka.replication_factor)")
    assert asyncio.run(_replication(cluster, topics.chat)) == (1, "1")

    # Raised to 3: these topics keep their one replica (only a reassignment adds some), so
    # min.insync.replicas stays what one replica can satisfy.
    assert main(["topics", "apply", "--config",
                 _config(tmp_path, cluster, "one", "replication_factor = 3\n")]) == 0
    out, err = capsys.readouterr()
    assert f"{topics.chat}: unchanged" in out
    assert (f"parley: warning: {topics.chat}: 1 replica(s) per partition, fewer than the "
            "replication factor 3: Kafka adds replicas only by reassigning partitions "
            "(`parley kafka tool reassign-partitions`); min.insync.replicas stays 1") in err
    assert asyncio.run(_replication(cluster, topics.chat)) == (1, "1")

    async def write() -> int:
        producer = make_producer(KafkaSettings(bootstrap=cluster))  # acks=all
        await producer.start()
        try:
            async with asyncio.timeout(30):
                return (await producer.send_and_wait(topics.chat, b"ok", key=b"chat-1")).offset
        finally:
            await producer.stop()

    assert asyncio.run(write()) == 0


def test_two_replica_topics_keep_taking_writes_with_a_broker_down_after_raising(
        kafka: LocalKafka, cluster: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topics = Topics(prefix="two")
    assert main(["topics", "apply", "--config",
                 _config(tmp_path, cluster, "two", "replication_factor = 2\n")]) == 0
    assert asyncio.run(_replication(cluster, topics.chat)) == (2, "1")
    assert main(["topics", "apply", "--config",
                 _config(tmp_path, cluster, "two", "replication_factor = 3\n")]) == 0
    capsys.readouterr()
    assert asyncio.run(_replication(cluster, topics.chat)) == (2, "1")

    async def leader_of_partition_0() -> int:
        admin = make_admin(KafkaSettings(bootstrap=cluster))
        await admin.start()
        try:
            [described] = await admin.describe_topics([topics.chat])
            return int(next(p["leader"] for p in described["partitions"] if p["partition"] == 0))
        finally:
            await admin.close()

    async def write_with_leader_down() -> int:
        # Only the live brokers as bootstrap: the producer must not wait on the dead one.
        live = ",".join(f"127.0.0.1:{n.port}" for n in kafka.status() if n.running)
        producer = make_producer(KafkaSettings(bootstrap=live), request_timeout_ms=5000)
        await producer.start()
        try:
            async with asyncio.timeout(90):
                while True:  # the partition moves to its other replica once the node is fenced
                    try:
                        meta = await producer.send_and_wait(topics.chat, b"ok", partition=0)
                        return meta.offset
                    except KafkaError:
                        await asyncio.sleep(0.5)  # leader moving: retry until the deadline
        except TimeoutError:
            pytest.fail("acks=all writes still failed 90 s after one of two replicas went down")
        finally:
            # A write that can never succeed stays queued, and stop() would wait for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(producer.stop(), 15)

    leader = asyncio.run(leader_of_partition_0())
    kafka.stop_node(leader, sig=signal.SIGKILL)
    try:
        assert asyncio.run(write_with_leader_down()) == 0
    finally:
        kafka.start_node(leader)

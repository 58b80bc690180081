"""``parley topics apply`` against the real broker: idempotent, raises partitions only when
told to (keys move), repairs
drifted configs and keeps the overrides it does not manage; creates the dead-letter topics,
says which replication it chose, and never sets ``min.insync.replicas`` above the replicas a
topic has. Three-broker behaviour: tests/system/test_topics_cluster.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.topics import Topics, TopicSpec
from parley.cli import main
from parley.errors import SettingsError
from parley.kafka.clients import make_admin, make_producer
from parley.kafka.topics import _partitions, apply_topics, ensure_topics
from parley.settings import KafkaSettings


async def _configs(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    return {e[0]: e[1] for resp in responses for res in resp.resources for e in res[4]}


async def _configs_once(admin: AIOKafkaAdminClient, topic: str, key: str, value: str,
                        timeout_s: float = 30.0) -> dict[str, str]:
    """The topic's configs once ``key`` reads ``value``: an AlterConfigs is acknowledged by the
    controller before every broker's metadata shows it."""
    deadline = time.monotonic() + timeout_s
    while (configs := await _configs(admin, topic)).get(key) != value:
        assert time.monotonic() < deadline, f"{topic}: {key} still {configs.get(key)!r}, not {value!r}"
        await asyncio.sleep(0.1)  # polling the broker's view with a deadline
    return configs


async def test_apply_is_idempotent_raises_partitions_and_repairs_only_its_own_configs(
        kafka_settings: KafkaSettings, unique: str) -> None:
    spec = TopicSpec(name=f"{unique}.apply", key="id", partitions=2)
    first = await apply_topics(kafka_settings, [spec])
    assert [(c.action, c.detail) for c in first.changes] == [
        ("created", "2 partitions, rf=1, min.insync.replicas=1")]
    again = await apply_topics(kafka_settings, [spec])
    assert [c.action for c in again.changes] == ["unchanged"]

    admin = make_admin(kafka_settings)
    await admin.start()
    try:
        # Out of band: an operator's own override, and drift in one Parley manages.
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs={
            "retention.ms": "3600000", "segment.ms": "7200000"})])
        drifted = await _configs_once(admin, spec.name, "retention.ms", "3600000")
        assert drifted["segment.ms"] == "7200000"

        more = TopicSpec(name=spec.name, key="id", partitions=4)
        changes = (await apply_topics(kafka_settings, [more], allow_repartition=True)).changes
        assert len(changes) == 1 and changes[0].action == "updated"
        assert "retention.ms=-1" in changes[0].detail and "partitions 2 -> 4" in changes[0].detail
        after = await _configs_once(admin, spec.name, "retention.ms", "-1")  # repaired
        assert after["segment.ms"] == "7200000"  # not Parley's: left as the operator set it
        described = await admin.describe_topics([spec.name])
        assert len(described[0]["partitions"]) == 4

        # Never lowered: a spec with fewer partitions changes nothing.
        fewer = await apply_topics(kafka_settings, [spec])
        assert [c.action for c in fewer.changes] == ["unchanged"]
        assert len((await admin.describe_topics([spec.name]))[0]["partitions"]) == 4
    finally:
        await admin.delete_topics([spec.name])
        await admin.close()


async def _broker_facts(k: KafkaSettings) -> tuple[int, bool]:
    """The broker count, and whether any broker auto-creates topics (the session's broker may
    be testcontainers' or one given in PARLEY_TEST_KAFKA, not only the launcher's)."""
    admin = make_admin(k)
    await admin.start()
    try:
        brokers = [b["node_id"] for b in (await admin.describe_cluster())["brokers"]]
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, str(b)) for b in brokers])
        auto = any(e[0] == "auto.create.topics.enable" and e[1] == "true"
                   for resp in responses for res in resp.resources for e in res[4])
        return len(brokers), auto
    finally:
        await admin.close()


async def _delete_prefixed(k: KafkaSettings, prefix: str) -> None:
    admin = make_admin(k)
    await admin.start()
    try:
        await admin.delete_topics([t for t in await admin.list_topics()
                                   if t.startswith(prefix + ".")])
    finally:
        await admin.close()


def test_cli_apply_creates_dead_letter_topics_and_says_what_it_chose(
        kafka_settings: KafkaSettings, unique: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "parley.toml"
    cfg.write_text(f'[kafka]\nbootstrap = "{kafka_settings.bootstrap}"\n'
                   f'topic_prefix = "{unique}"\npartitions = 2\n'
                   '[consumers.welcome]\nmax_records = 10\n')
    brokers, auto_create = asyncio.run(_broker_facts(kafka_settings))
    try:
        assert main(["topics", "apply", "--config", str(cfg), "--consumer", "audit"]) == 0
        out, err = capsys.readouterr()
        rf = min(3, brokers)
        assert out.splitlines()[0] == (
            f"replication factor {rf}, min.insync.replicas {2 if rf == 3 else 1} (chosen for "
            f"{brokers} broker(s); set kafka.replication_factor to override)")
        topics = Topics(prefix=unique)
        # The projector's, the built-ins', a configured consumer's and a named one's.
        dlqs = [topics.dlq(g) for g in ("projector", "search", "crm", "welcome", "audit")]
        for name in [*topics.event_topics, topics.rejections, topics.audit, topics.erasures, *dlqs]:
            assert f"{name}: created (" in out
        assert ("auto.create.topics.enable=true" in err) is auto_create
        assert len(err.splitlines()) == (1 if auto_create else 0)

        async def existing() -> set[str]:
            admin = make_admin(kafka_settings)
            await admin.start()
            try:
                return set(await admin.list_topics())
            finally:
                await admin.close()

        assert set(dlqs) <= asyncio.run(existing())
        # Again: nothing to do. A name Kafka cannot use is one line and changes nothing.
        assert main(["topics", "apply", "--config", str(cfg), "--consumer", "audit"]) == 0
        # 4 event, 3 state (compacted), 2 ops, the erasure ledger and 5 dead-letter topics the
        # first time; nothing again.
        assert out.count("created") == 15 and "created" not in capsys.readouterr().out
        assert main(["topics", "apply", "--config", str(cfg), "--consumer", "my:consumer"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("parley: error: consumer group 'my:consumer' is not usable")
    finally:
        asyncio.run(_delete_prefixed(kafka_settings, unique))


async def test_raising_the_replication_factor_keeps_min_insync_replicas_within_the_replicas(
        kafka_settings: KafkaSettings, unique: str) -> None:
    # Topics made with one replica; then the configuration asks for more. Kafka cannot add
    # replicas by a config change, so min.insync.replicas must follow the one replica there
    # is. (Kafka 4 caps the effective minimum at the replica count, so writes to this topic
    # would pass either way; tests/system/test_topics_cluster.py shows two-replica topics,
    # where min.insync.replicas 2 stops every write while one broker is down.)
    spec = TopicSpec(name=f"{unique}.raise", key="id", partitions=1)
    one = msgspec.structs.replace(kafka_settings, replication_factor=1)
    await apply_topics(one, [spec])
    brokers, _ = await _broker_facts(kafka_settings)
    more = msgspec.structs.replace(kafka_settings, replication_factor=brokers + 2)
    report = await apply_topics(more, [spec])
    [change] = report.changes
    assert change.action == "unchanged"
    assert change.warning.startswith(f"1 replica(s) per partition, fewer than the replication "
                                     f"factor {brokers + 2}: Kafka adds replicas only by "
                                     "reassigning partitions")
    admin = make_admin(kafka_settings)
    await admin.start()
    producer = make_producer(kafka_settings)  # acks=all
    await producer.start()
    try:
        assert (await _configs(admin, spec.name))["min.insync.replicas"] == "1"
        async with asyncio.timeout(30):
            meta = await producer.send_and_wait(spec.name, b"still writable", key=b"k")
        assert meta.offset == 0
    finally:
        await producer.stop()
        await admin.delete_topics([spec.name])
        await admin.close()


async def test_more_replicas_than_brokers_is_one_clear_error(
        kafka_settings: KafkaSettings, unique: str) -> None:
    brokers, _ = await _broker_facts(kafka_settings)
    too_many = msgspec.structs.replace(kafka_settings, replication_factor=brokers + 1)
    spec = TopicSpec(name=f"{unique}.many", key="id", partitions=1)
    with pytest.raises(SettingsError, match=rf"kafka.replication_factor is {brokers + 1} but "
                                            rf"the cluster has {brokers} broker\(s\) up"):
        await apply_topics(too_many, [spec])


async def test_ensure_topics_creates_what_is_missing_and_alters_nothing(
        kafka_settings: KafkaSettings, unique: str) -> None:
    # What the roles call at start-up: after `parley topics apply` it only looks, so a role
    # needs no permission to create or alter topics.
    spec = TopicSpec(name=f"{unique}.dlq.x", key="id", partitions=1)
    [created] = await ensure_topics(kafka_settings, [spec])
    assert created.action == "created"
    admin = make_admin(kafka_settings)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, configs={
            "retention.ms": "3600000"})])
        await _configs_once(admin, spec.name, "retention.ms", "3600000")
        assert await ensure_topics(kafka_settings, [spec]) == []
        assert (await _configs(admin, spec.name))["retention.ms"] == "3600000"
    finally:
        await admin.delete_topics([spec.name])
        await admin.close()


async def _partition_counts(k: KafkaSettings, names: list[str]) -> dict[str, int]:
    admin = make_admin(k)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


def test_cli_refuses_to_raise_the_partitions_of_keyed_topics_unless_told(
        kafka_settings: KafkaSettings, unique: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # More partitions remap keys: a chat's new events land in another partition than its old
    # ones, so consumers lose its order and parallel projectors overwrite each other's rows.
    def config(partitions: int) -> str:
        cfg = tmp_path / f"parley-{partitions}.toml"
        cfg.write_text(f'[kafka]\nbootstrap = "{kafka_settings.bootstrap}"\n'
                       f'topic_prefix = "{unique}"\npartitions = {partitions}\n')
        return str(cfg)

    topics = Topics(prefix=unique)
    events = list(topics.event_topics)
    try:
        assert main(["topics", "apply", "--config", config(3)]) == 0
        capsys.readouterr()
        assert main(["topics", "apply", "--config", config(6)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1
        assert err.startswith(f"parley: error: refusing to raise the partitions of keyed "
                              f"topic(s) {topics.chat} from 3 to 6, ")
        assert "--allow-repartition" in err and "rebuild the projections" in err
        assert asyncio.run(_partition_counts(kafka_settings, events)) == dict.fromkeys(events, 3)

        assert main(["topics", "apply", "--config", config(6), "--allow-repartition"]) == 0
        out, err = capsys.readouterr()
        assert f"{topics.chat}: updated (partitions 3 -> 6)" in out
        assert err.splitlines() == [
            f"parley: warning: {name}: partitions raised from 3 to 6: keys now map to other "
            f"partitions, so rebuild the projections and reset the consumer groups to re-read "
            f'each key in order (docs/operations.md, "Topics")'
            for name in (*events, *topics.state_topics)]
        assert asyncio.run(_partition_counts(kafka_settings, events)) == dict.fromkeys(events, 6)
    finally:
        asyncio.run(_delete_prefixed(kafka_settings, unique))


async def test_dead_letter_topics_follow_the_same_rule(
        kafka_settings: KafkaSettings, unique: str) -> None:
    topics = Topics(prefix=unique)
    one, two = topics.dlq_spec("audit"), topics.dlq_spec("audit", partitions=2)
    await apply_topics(kafka_settings, [one])
    try:
        with pytest.raises(SettingsError, match=rf"keyed topic\(s\) {one.name} from 1 to 2"):
            await apply_topics(kafka_settings, [two])
        assert await _partition_counts(kafka_settings, [one.name]) == {one.name: 1}
        [change] = (await apply_topics(kafka_settings, [two], allow_repartition=True)).changes
        assert change.warning.startswith("partitions raised from 1 to 2")
        assert await _partition_counts(kafka_settings, [one.name]) == {one.name: 2}
    finally:
        await _delete_prefixed(kafka_settings, unique)


class _LaggingBroker:
    """An admin client whose broker describes a just-created topic before its metadata caught
    up (an error and no partitions), then as it is: what a 3-broker cluster did once in CI."""

    def __init__(self) -> None:
        self.calls = 0

    async def describe_topics(self, names: list[str]) -> list[dict[str, object]]:
        self.calls += 1
        if self.calls == 1:
            return [{"topic": n, "error_code": 3, "partitions": []} for n in names]
        return [{"topic": n, "error_code": 0,
                 "partitions": [{"partition": 0, "leader": 1, "replicas": [1]}]} for n in names]


async def test_a_topic_described_before_its_metadata_caught_up_is_described_again() -> None:
    """Read as "no replicas", such a topic had its min.insync.replicas sized by the configured
    replication factor (3 → 2) although it has one replica: every acks=all write would fail."""
    admin = _LaggingBroker()
    spec = Topics(prefix="lag").specs(1)[0]
    described = await _partitions(admin, [spec])
    assert described == {spec.name: [{"partition": 0, "leader": 1, "replicas": [1]}]}
    assert admin.calls == 2

"""``parley topics apply``: create or update topics from the specs in ``contracts.topics``.

Idempotent: a topic that exists gets its configs brought in line. Its partition count is
never lowered (Kafka cannot), and raised only when asked (``allow_repartition``): every topic
is keyed, and more partitions send a key's new records to another partition than its old
ones, so consumers lose per-key order and parallel projectors can apply one chat's events out
of order. Without the flag a raise is refused before anything changes, in one line that says
how to do it safely (docs/operations.md, "Topics").

Replication: new topics get ``kafka.replication_factor`` replicas when it is set, else one
per broker up to three (:func:`~contracts.topics.default_replication_factor`; three brokers
or more: 3 replicas, ``min.insync.replicas`` 2). An existing topic keeps its replicas (Kafka
adds some only by reassigning partitions), and its ``min.insync.replicas`` follows the
replicas it *has*: a configured factor above them never demands more in-sync replicas than
exist, which would fail every acks=all write.

Roles call :func:`ensure_topics` at start-up instead: it only creates what is missing, so
once ``parley topics apply`` has run they need no permission to create or alter topics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import msgspec
from aiokafka.admin import NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from contracts.topics import TopicSpec, default_replication_factor
from parley.errors import KafkaRefused, KafkaUnavailable, SettingsError
from parley.kafka.clients import make_admin
from parley.settings import KafkaSettings

__all__ = ["TopicChange", "TopicsReport", "apply_topics", "ensure_topics"]

#: DescribeConfigs' config_source of a per-topic override (KIP-226).
_DYNAMIC_TOPIC_CONFIG = 1
_TOPIC_ALREADY_EXISTS = 36
_AUTO_CREATE = "auto.create.topics.enable"


class TopicChange(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    action: str  # "created" | "updated" | "unchanged"
    detail: str = ""
    warning: str = ""  # something an operator should act on, e.g. fewer replicas than wanted


class TopicsReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``apply_topics`` did, and the cluster facts it decided by."""

    changes: list[TopicChange]
    brokers: int
    replication_factor: int  # of topics created now
    chosen: bool  # True: from the broker count, as kafka.replication_factor is unset
    min_insync_replicas: int | None  # of topics created now with that factor
    auto_create_brokers: tuple[int, ...] = ()  # brokers with auto.create.topics.enable=true

    def summary(self) -> str:
        """One line: the replication chosen (or configured) for new topics, and why."""
        why = (f"chosen for {self.brokers} broker(s); set kafka.replication_factor to override"
               if self.chosen else "kafka.replication_factor")
        isr = "" if self.min_insync_replicas is None else (
            f", min.insync.replicas {self.min_insync_replicas}")
        return f"replication factor {self.replication_factor}{isr} ({why})"

    def warnings(self) -> list[str]:
        """One line each: topics short of replicas, and a cluster that auto-creates topics."""
        out = [f"{c.topic}: {c.warning}" for c in self.changes if c.warning]
        if self.auto_create_brokers:
            ids = ", ".join(map(str, self.auto_create_brokers))
            out.append(f"the cluster creates topics on first use ({_AUTO_CREATE}=true on broker(s) "
                       f"{ids}): a mistyped or missing topic is created silently with broker "
                       f"defaults instead of Parley's specs (finite retention); set "
                       f"{_AUTO_CREATE}=false on the brokers")
        return out


@contextlib.asynccontextmanager
async def _admin(k: KafkaSettings) -> AsyncIterator[Any]:
    admin = make_admin(k)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def apply_topics(k: KafkaSettings, specs: Iterable[TopicSpec], *,
                       allow_repartition: bool = False) -> TopicsReport:
    """Create the missing topics of ``specs``, bring existing ones in line, and report.

    An existing keyed topic with fewer partitions than its spec is raised only with
    ``allow_repartition`` (and then warned about); without it :class:`SettingsError` is
    raised before any topic is created or changed. Returns once every topic has its
    partitions, each with a leader.
    """
    specs = list(specs)
    async with _admin(k) as admin:
        brokers = await _broker_ids(admin)
        rf, chosen = _replication_factor(k, len(brokers))
        existing = set(await admin.list_topics())
        old = [s for s in specs if s.name in existing]
        described = await _partitions(admin, old)
        if not allow_repartition:
            _refuse_repartition(old, described)
        changes = await _create(admin, rf, len(brokers), [s for s in specs if s.name not in existing])
        changes += await _update(admin, rf, old, described)
        await _wait_for_leaders(admin, {s.name: s.partitions for s in specs})
        auto_create = await _auto_creating_brokers(admin, brokers)
    order = {s.name: i for i, s in enumerate(specs)}
    return TopicsReport(
        changes=sorted(changes, key=lambda c: order[c.topic]), brokers=len(brokers),
        replication_factor=rf, chosen=chosen,
        min_insync_replicas=int(specs[0].configs(rf)["min.insync.replicas"]) if specs else None,
        auto_create_brokers=auto_create)


async def ensure_topics(k: KafkaSettings, specs: Sequence[TopicSpec]) -> list[TopicChange]:
    """Create those of ``specs`` that do not exist yet (as ``apply_topics`` would); leave
    existing topics alone. For roles at start-up: with topics made by ``parley topics apply``
    this needs only to describe them, no permission to create or alter."""
    async with _admin(k) as admin:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        brokers = len(await _broker_ids(admin))
        rf, _ = _replication_factor(k, brokers)
        changes = await _create(admin, rf, brokers, missing)
        await _wait_for_leaders(admin, {s.name: s.partitions for s in missing})
        return changes


def _replication_factor(k: KafkaSettings, brokers: int) -> tuple[int, bool]:
    if k.replication_factor is not None:
        return k.replication_factor, False
    return default_replication_factor(brokers), True


async def _broker_ids(admin: Any) -> list[int]:
    cluster = await admin.describe_cluster()
    return sorted(b["node_id"] for b in cluster.get("brokers", ()))


async def _create(admin: Any, rf: int, brokers: int, new: list[TopicSpec]) -> list[TopicChange]:
    if not new:
        return []
    if rf > brokers:
        raise SettingsError(f"kafka.replication_factor is {rf} but the cluster has {brokers} "
                            f"broker(s) up: lower it, or leave it unset to use one replica per "
                            f"broker up to 3")
    response = await admin.create_topics([NewTopic(s.name, s.partitions, rf,
                                                   topic_configs=s.configs(rf)) for s in new])
    raced: set[str] = set()
    for topic, code, *message in response.topic_errors:
        if code == _TOPIC_ALREADY_EXISTS:  # another process created it meanwhile
            raced.add(topic)
        elif code:
            raise _refused("create", topic, code, message)
    return [TopicChange(topic=s.name, action="unchanged", detail="created meanwhile by another client")
            if s.name in raced else
            TopicChange(topic=s.name, action="created",
                        detail=f"{s.partitions} partitions, rf={rf}, "
                               f"min.insync.replicas={s.configs(rf)['min.insync.replicas']}")
            for s in new]


async def _partitions(admin: Any, old: list[TopicSpec], timeout_s: float = 30.0
                      ) -> dict[str, list[dict[str, Any]]]:
    """Each existing topic's partitions, as DescribeTopics lists them.

    A broker whose metadata has not caught up with a topic just created (by another broker
    of the cluster) describes it with an error or no partitions; read as "no replicas", that
    would size min.insync.replicas by the configured factor instead of the replicas the topic
    has. So such topics are described again until every one has its partitions."""
    if not old:  # (an empty list would describe every topic)
        return {}

    def unknown(described: list[dict[str, Any]]) -> list[str]:
        return [t["topic"] for t in described if t.get("error_code") or not t.get("partitions")]

    described = await _describe_until(admin, [s.name for s in old], unknown, timeout_s,
                                      "the brokers do not describe these existing topics")
    return {t["topic"]: t["partitions"] for t in described}


def _refuse_repartition(old: list[TopicSpec], described: dict[str, list[dict[str, Any]]]) -> None:
    """Raise, naming each keyed topic whose spec wants more partitions than it has."""
    raise_ = [f"{s.name} from {len(described[s.name])} to {s.partitions}" for s in old
              if s.key and 0 < len(described.get(s.name) or ()) < s.partitions]
    if raise_:
        raise SettingsError(
            f"refusing to raise the partitions of keyed topic(s) {', '.join(raise_)}: new "
            f"partitions move keys, so a key's new records would land in another partition than "
            f"its old ones, out of order; to do it, stop the writers and let every consumer group drain, run "
            f"`parley topics apply --allow-repartition`, then rebuild the projections and reset "
            f"the consumer groups (docs/operations.md, \"Topics\"), or keep kafka.partitions "
            f"as it was")


def _repartition_warning(have: int, want: int) -> str:
    return (f"partitions raised from {have} to {want}: keys now map to other partitions, so "
            f"rebuild the projections and reset the consumer groups to re-read each key in "
            f"order (docs/operations.md, \"Topics\")")


async def _update(admin: Any, rf: int, old: list[TopicSpec],
                  described: dict[str, list[dict[str, Any]]]) -> list[TopicChange]:
    if not old:
        return []
    current, overrides = await _topic_configs(admin, [s.name for s in old])
    changes: list[TopicChange] = []
    for s in old:
        partitions = described.get(s.name) or []
        # The replicas the topic has, not the configured factor: min.insync.replicas above
        # them would make every acks=all write fail (NotEnoughReplicas).
        replicas = min((len(p["replicas"]) for p in partitions), default=rf)
        notes = []
        want = s.configs(replicas)
        drift = {key: v for key, v in want.items() if current.get(s.name, {}).get(key) != v}
        if drift:
            # AlterConfigs replaces a topic's whole set of overrides (aiokafka has no
            # IncrementalAlterConfigs), so the ones Parley does not manage — an operator's
            # tiered-storage or segment settings — are sent back unchanged with ours.
            keep = overrides.get(s.name, {})
            response = await admin.alter_configs([ConfigResource(
                ConfigResourceType.TOPIC, s.name, configs=keep | want)])
            for resp in response:
                for code, message, _type, name in resp.resources:
                    if code:
                        raise _refused("alter the configs of", name, code, [message])
            notes.append("configs " + ", ".join(f"{key}={v}" for key, v in sorted(drift.items())))
        warnings = []
        have = len(partitions) or s.partitions
        if have < s.partitions:
            response = await admin.create_partitions({s.name: NewPartitions(s.partitions)})
            for topic, code, *message in response.topic_errors:
                if code:
                    raise _refused("add partitions to", topic, code, message)
            notes.append(f"partitions {have} -> {s.partitions}")
            if s.key:
                warnings.append(_repartition_warning(have, s.partitions))
        if replicas < rf:
            warnings.append(
                f"{replicas} replica(s) per partition, fewer than the replication factor {rf}: "
                f"Kafka adds replicas only by reassigning partitions (`parley kafka tool "
                f"reassign-partitions`); min.insync.replicas stays "
                f"{want['min.insync.replicas']} until then")
        changes.append(TopicChange(topic=s.name, action="updated" if notes else "unchanged",
                                   detail="; ".join(notes), warning="; ".join(warnings)))
    return changes


async def _topic_configs(admin: Any, names: list[str]
                         ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Each topic's effective configs, and the per-topic overrides among them."""
    configs = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    current: dict[str, dict[str, str]] = {}
    overrides: dict[str, dict[str, str]] = {}
    for resp in configs:
        for res in resp.resources:
            # (error_code, error_message, resource_type, resource_name, config_entries);
            # an entry: (name, value, read_only, config_source, is_sensitive, synonyms)
            current[res[3]] = {e[0]: e[1] for e in res[4]}
            overrides[res[3]] = {e[0]: e[1] for e in res[4]
                                 if e[3] == _DYNAMIC_TOPIC_CONFIG and not e[4] and e[1] is not None}
    return current, overrides


async def _auto_creating_brokers(admin: Any, brokers: list[int]) -> tuple[int, ...]:
    """The brokers whose ``auto.create.topics.enable`` is true (none when it cannot be read:
    describing broker configs may not be allowed, and this only feeds a warning)."""
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, str(b)) for b in brokers])
    except KafkaError:
        return ()
    on = {int(res[3]) for resp in responses for res in resp.resources if not res[0]
          for e in res[4] if e[0] == _AUTO_CREATE and e[1] == "true"}
    return tuple(sorted(on))


def _refused(what: str, topic: str, code: int, message: list[str | None]) -> KafkaRefused:
    error = for_code(code)
    text = f"Kafka refused to {what} topic {topic}: {error.__name__}"
    if message and message[0]:
        text += f" ({message[0]})"
    if code in (29, 31):  # TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED
        text += ("; run `parley topics apply` as a user allowed to create and alter topics "
                 "before starting the roles")
    return KafkaRefused(text)


async def _wait_for_leaders(admin: Any, partitions: dict[str, int], timeout_s: float = 30.0) -> None:
    """Return once every topic has at least its wanted number of partitions, each with a leader.

    Topics and new partitions are created asynchronously: for a moment after CreateTopics or
    CreatePartitions answers, metadata still shows the old partition count or partitions
    without a leader, and produce or ListOffsets requests fail with NotLeaderForPartition.
    Callers of ``apply_topics`` (``parley topics apply``, ``parley run``, tests) expect usable
    topics, partitioned as the specs say.
    """
    names = list(partitions)
    if not names:  # (an empty list would describe every topic)
        return

    def lacking(described: list[dict[str, Any]]) -> list[str]:
        missing = [t["topic"] for t in described if t.get("error_code") or not t.get("partitions")
                   or len(t["partitions"]) < partitions.get(t["topic"], 0)]
        return missing + [f"{t['topic']}[{p['partition']}]" for t in described
                          for p in t.get("partitions", ()) if p.get("leader", -1) < 0]

    await _describe_until(admin, names, lacking, timeout_s, "topics lack partitions or leaders")


async def _describe_until(admin: Any, names: list[str],
                          lacking: Callable[[list[dict[str, Any]]], list[str]],
                          timeout_s: float, what: str) -> list[dict[str, Any]]:
    """DescribeTopics of ``names`` again until ``lacking`` finds nothing amiss in the answer
    (metadata follows CreateTopics / CreatePartitions with a delay); KafkaUnavailable saying
    ``what`` and the first few it found after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(names)
        short = lacking(described)
        if not short:
            return described
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaUnavailable(f"{what} after {timeout_s:.0f}s: {', '.join(short[:5])}")
        await asyncio.sleep(0.1)  # polling the metadata with a deadline: no event to wait on

"""Topics as code: every Kafka topic Parley uses, its key and its configuration.

``parley topics apply`` creates topics from :meth:`Topics.specs` (event and state topics),
:meth:`Topics.ops_specs` (rejected webhooks, console audit) and :meth:`Topics.dlq_spec` (a
consumer's runner creates its :meth:`Topics.replay_spec` topic);
producers and consumers take topic names from the same :class:`Topics` value, so a name is
spelled in exactly one place. Nothing here talks to Kafka.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

__all__ = [
    "EVENT_TOPIC_KINDS",
    "INFINITE_RETENTION_MS",
    "MAX_BODY_BYTES",
    "MAX_RECORD_BYTES",
    "PROJECTOR",
    "REJECTIONS_RETENTION_BYTES",
    "REJECTIONS_RETENTION_MS",
    "REPLAY_RETENTION_MS",
    "STATE_COMPACTION_LAG_MS",
    "STATE_TOPIC_KINDS",
    "EventTopicKind",
    "StateTopicKind",
    "TopicSpec",
    "Topics",
    "default_replication_factor",
]

#: What a record is about (the envelope's ``aggregate``): it picks the record's event topic and
#: the meaning of its key.
EventTopicKind = Literal["chat", "visitor", "agent", "other"]
EVENT_TOPIC_KINDS: tuple[EventTopicKind, ...] = ("chat", "visitor", "agent", "other")

#: The aggregates with a state topic (a chat's messages travel on the chat's).
StateTopicKind = Literal["chat", "visitor", "agent"]
STATE_TOPIC_KINDS: tuple[StateTopicKind, ...] = ("chat", "visitor", "agent")

#: The projector's name among the groups: its consumer group and dead-letter topic are named
#: for it, and no consumer may take it.
PROJECTOR = "projector"

#: Kafka's spelling of "keep forever".
INFINITE_RETENTION_MS = -1

#: The longest a state topic keeps a superseded state (an erased subject's older states
#: included, docs/privacy.md) while the topic receives writes: a day.
STATE_COMPACTION_LAG_MS = 24 * 3600 * 1000

#: How long a replay topic keeps its copies (:meth:`Topics.replay_spec`): a week.
REPLAY_RETENTION_MS = 7 * 24 * 3600 * 1000

#: How long the rejected-webhooks topic keeps its records (:meth:`Topics.rejections_spec`): a
#: week, and never more than :data:`REJECTIONS_RETENTION_BYTES`.
REJECTIONS_RETENTION_MS = 7 * 24 * 3600 * 1000
#: The most the rejected-webhooks topic holds (its one partition): 256 MiB. The receiver's
#: rate bound keeps a week far below it; this is the floor under a bug or a misconfiguration.
REJECTIONS_RETENTION_BYTES = 256 << 20

#: The largest webhook body Parley accepts (the receiver answers 413 above it).
MAX_BODY_BYTES = 1 << 20
# The envelope's own fields are a few hundred bytes; 64 KiB leaves room for
# record headers and batch framing without ever rejecting a maximal body.
_ENVELOPE_ALLOWANCE_BYTES = 64 << 10
#: ``max.message.bytes`` for event topics: a maximal body plus its envelope.
#: Producers need ``max_request_size`` at least this large.
MAX_RECORD_BYTES = MAX_BODY_BYTES + _ENVELOPE_ALLOWANCE_BYTES

# Kafka's legal topic characters; 249 is its length limit.
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_MAX_TOPIC_LEN = 249


def _check_topic_part(value: str, what: str) -> None:
    if not _TOPIC_CHARS.fullmatch(value) or len(value) > _MAX_TOPIC_LEN - 20:
        raise ValueError(
            f"{what} {value!r} is not usable in a Kafka topic name: "
            "use 1-229 characters from A-Z a-z 0-9 . _ -"
        )


def default_replication_factor(broker_count: int) -> int:
    """Three replicas when the cluster has them, otherwise one per broker."""
    if broker_count < 1:
        raise ValueError(f"broker_count must be >= 1, got {broker_count}")
    return min(3, broker_count)


class TopicSpec(msgspec.Struct, frozen=True):
    """One topic: its name, what its record key means, and its configuration.

    ``min_insync_replicas`` applies only with three or more replicas (with fewer,
    requiring two in-sync replicas would make a single broker outage block every
    acks=all write), see :meth:`configs`.
    """

    name: str
    key: str
    partitions: int
    retention_ms: int = INFINITE_RETENTION_MS
    cleanup_policy: str = "delete"
    min_insync_replicas: int = 2
    #: Compacted topics: the longest a superseded value stays uncompacted (and the age at
    #: which the active segment rolls), so an erased subject's older states go within it.
    max_compaction_lag_ms: int | None = None
    #: ``retention.bytes`` per partition; None leaves the broker's default (no limit).
    retention_bytes: int | None = None

    def configs(self, replication_factor: int) -> dict[str, str]:
        """Kafka topic configs for this topic at the given replication factor."""
        if replication_factor < 1:
            raise ValueError(f"replication_factor must be >= 1, got {replication_factor}")
        # With 3+ replicas keep one of slack, so a rolling restart never blocks
        # acks=all writes; with fewer, any stricter setting would.
        min_isr = min(self.min_insync_replicas, replication_factor - 1) if replication_factor >= 3 else 1
        configs = {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(min_isr),
            # The record timestamp is the producer's receive time, never the
            # broker's append time, so replays see the same timestamps.
            "message.timestamp.type": "CreateTime",
            "max.message.bytes": str(MAX_RECORD_BYTES),
        }
        if self.max_compaction_lag_ms is not None:
            configs["max.compaction.lag.ms"] = str(self.max_compaction_lag_ms)
            configs["segment.ms"] = str(self.max_compaction_lag_ms)
        if self.retention_bytes is not None:
            configs["retention.bytes"] = str(self.retention_bytes)
        return configs


class Topics(msgspec.Struct, frozen=True):
    """Names of Parley's topics under one prefix (tests use a unique prefix each).

    Event topics are ``<prefix>.events.<aggregate>`` and keyed by the aggregate's
    id, so one chat's (visitor's, agent's) events stay in one partition, in order.
    State topics are ``<prefix>.state.<aggregate>``: compacted, keyed by aggregate id, each
    value a :class:`contracts.state_change.StateChange`. Dead-letter topics are
    ``<prefix>.dlq.<name>``; consumer group ids (:meth:`group_id`) live under the prefix too,
    so installations with different prefixes can share one cluster.
    """

    prefix: str = "parley"

    def __post_init__(self) -> None:
        _check_topic_part(self.prefix, "topic prefix")

    @property
    def chat(self) -> str:
        """Events about one chat, keyed by chat id."""
        return f"{self.prefix}.events.chat"

    @property
    def visitor(self) -> str:
        """Events about one visitor, keyed by visitor id."""
        return f"{self.prefix}.events.visitor"

    @property
    def agent(self) -> str:
        """Events about one agent (user), keyed by agent id."""
        return f"{self.prefix}.events.agent"

    @property
    def other(self) -> str:
        """Events with no chat, visitor or agent, keyed by a stable id (the event id)."""
        return f"{self.prefix}.events.other"

    @property
    def event_topics(self) -> tuple[str, str, str, str]:
        """The four event topics, in the order chat, visitor, agent, other."""
        return (self.chat, self.visitor, self.agent, self.other)

    def for_aggregate(self, kind: EventTopicKind) -> str:
        """The event topic that holds records of aggregate ``kind``."""
        match kind:
            case "chat":
                return self.chat
            case "visitor":
                return self.visitor
            case "agent":
                return self.agent
            case "other":
                return self.other
        raise ValueError(f"unknown aggregate kind {kind!r}")

    def aggregate_of(self, topic: str) -> EventTopicKind | None:
        """The aggregate kind whose events ``topic`` holds, or None if not an event topic."""
        for kind, name in zip(EVENT_TOPIC_KINDS, self.event_topics, strict=True):
            if name == topic:
                return kind
        return None

    def state(self, kind: StateTopicKind) -> str:
        """The compacted state topic of aggregate ``kind``, keyed by its id."""
        if kind not in STATE_TOPIC_KINDS:
            raise ValueError(f"no state topic for {kind!r}: use one of {STATE_TOPIC_KINDS}")
        return f"{self.prefix}.state.{kind}"

    @property
    def state_topics(self) -> tuple[str, str, str]:
        """The three state topics, in the order chat, visitor, agent."""
        return (self.state("chat"), self.state("visitor"), self.state("agent"))

    def state_kind_of(self, topic: str) -> StateTopicKind | None:
        """The aggregate kind whose states ``topic`` holds, or None if not a state topic."""
        for kind, name in zip(STATE_TOPIC_KINDS, self.state_topics, strict=True):
            if name == topic:
                return kind
        return None

    def group_id(self, name: str) -> str:
        """The Kafka consumer group id of ``name``: ``<prefix>.projector`` for the projector
        (:data:`PROJECTOR`), ``<prefix>.consumers.<name>`` for consumer ``name``.

        The only place a group id is spelled. Before 2026-12 the projector's group was the
        unprefixed ``parley-projector``; the projector keeps its offsets in its store, so the
        new group needs no migration (docs/projector.md, "Consumer group").
        """
        _check_topic_part(name, "consumer group")
        if name == PROJECTOR:
            return f"{self.prefix}.{PROJECTOR}"
        return f"{self.prefix}.consumers.{name}"

    def rebuild_group_id(self, copy: str) -> str:
        """The consumer group of a parallel rebuild into the projection copy ``copy``:
        ``<prefix>.rebuild.<copy>``. Its members share the event topics' partitions; the
        copy's stored offsets, not the group's, say how far the rebuild got."""
        _check_topic_part(copy, "projection copy")
        return f"{self.prefix}.rebuild.{copy}"

    def dlq(self, group: str) -> str:
        """The dead-letter topic of group ``group`` (the projector's: ``<prefix>.dlq.projector``)."""
        _check_topic_part(group, "consumer group")
        return f"{self.prefix}.dlq.{group}"

    def replay(self, group: str) -> str:
        """The replay topic of consumer group ``group``: ``<prefix>.replay.<group>``.

        ``parley consumers replay`` copies chosen records of the group's topics into it; the
        group's runner reads it beside its own topics (docs/consumers.md, "Scoped replay").
        """
        _check_topic_part(group, "consumer group")
        return f"{self.prefix}.replay.{group}"

    @property
    def erasures(self) -> str:
        """The erasure ledger (docs/privacy.md): each forget asked, and each group's
        processing of it (:mod:`contracts.forgotten`), keyed by erasure id."""
        return f"{self.prefix}.erasures"

    def erasures_spec(self) -> TopicSpec:
        """Spec of the erasure ledger: one partition (one erasure's entries in order, and
        the whole ledger read in one pass), kept for ever: it is the record of compliance,
        and holds ids and times only."""
        return TopicSpec(name=self.erasures, key="erasure id", partitions=1,
                         retention_ms=INFINITE_RETENTION_MS)

    @property
    def rejections(self) -> str:
        """Webhooks the receiver answered with a 4xx (contracts.ops.Rejection), keyed by source."""
        return f"{self.prefix}.ops.rejections"

    @property
    def audit(self) -> str:
        """Console actions (contracts.ops.AuditRecord), keyed by the action's id."""
        return f"{self.prefix}.ops.audit"

    def ops_specs(self) -> tuple[TopicSpec, TopicSpec]:
        """Specs of the rejected-webhooks topic, then the console audit topic.

        Both have one partition (a few records a second at most, read whole by the console,
        in the order written). Rejections are operational evidence, not history: a week, and
        at most :data:`REJECTIONS_RETENTION_BYTES`. The audit is the only trace of what an
        operator did, so it is kept forever, like a dead-letter topic.
        """
        return (
            TopicSpec(name=self.rejections, key="source name", partitions=1,
                      retention_ms=REJECTIONS_RETENTION_MS,
                      retention_bytes=REJECTIONS_RETENTION_BYTES),
            TopicSpec(name=self.audit, key="the action's id", partitions=1,
                      retention_ms=INFINITE_RETENTION_MS),
        )

    def specs(self, partitions: int = 6) -> tuple[TopicSpec, ...]:
        """Specs of the four event topics, then the three state topics.

        Event topics: infinite retention, never compacted. The log is the source of
        truth, so nothing may expire or be compacted away; ``partitions`` bounds each
        aggregate kind's consumer parallelism. State topics: compacted (the latest state
        of every key is kept, older ones go), never expired by time; derived, so they can
        always be written again from the log. A superseded state is compacted away within
        :data:`STATE_COMPACTION_LAG_MS` (segments roll at that age), so a forgotten subject's
        older states do not stay readable there for ever (docs/privacy.md).
        """
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        keys = ("chat id", "visitor id", "agent id", "event id (a stable per-event key)")
        events = tuple(
            TopicSpec(
                name=name,
                key=key,
                partitions=partitions,
                retention_ms=INFINITE_RETENTION_MS,
            )
            for name, key in zip(self.event_topics, keys, strict=True)
        )
        state_keys = ("chat id (a message: chat id/message id, in its chat's partition)",
                      "visitor id", "agent id")
        states = tuple(
            TopicSpec(
                name=name,
                key=key,
                partitions=partitions,
                retention_ms=INFINITE_RETENTION_MS,
                cleanup_policy="compact",
                max_compaction_lag_ms=STATE_COMPACTION_LAG_MS,
            )
            for name, key in zip(self.state_topics, state_keys, strict=True)
        )
        return events + states

    def dlq_spec(self, group: str, partitions: int = 1) -> TopicSpec:
        """Spec of ``group``'s dead-letter topic.

        Retention is infinite too: a dead letter is the only trace that a
        consumer skipped an event, so it stays until an operator re-drives or
        deletes it. One partition keeps dead letters in the order they failed.
        """
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        return TopicSpec(
            name=self.dlq(group),
            key="the failed record's original key",
            partitions=partitions,
            retention_ms=INFINITE_RETENTION_MS,
        )

    def replay_spec(self, group: str, partitions: int = 6) -> TopicSpec:
        """Spec of ``group``'s replay topic.

        Keyed like the records it copies, so one key's copies stay in one partition, in the
        order they were sent. A week of retention: a copy is work in flight, not history (the
        original stays in its own topic); a group stopped longer than that misses the
        replays sent meanwhile and they must be sent again.
        """
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        return TopicSpec(
            name=self.replay(group),
            key="the copied record's original key",
            partitions=partitions,
            retention_ms=REPLAY_RETENTION_MS,
        )

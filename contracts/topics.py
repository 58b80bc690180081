"""Topics as code: the one place naming each topic, its key, size and retention.

Used by ``parley topics apply`` and by every producer and consumer. Names derive from a prefix
(``parley`` by default) so that tests and side-by-side deployments never collide.
"""

from __future__ import annotations

from typing import Literal

import msgspec

AggregateKind = Literal["chat", "visitor", "agent", "other"]
AGGREGATES: tuple[AggregateKind, ...] = ("chat", "visitor", "agent", "other")

# A 1 MiB webhook body plus the envelope around it, with headroom.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024


class TopicSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a topic must look like. ``retention_ms=-1`` keeps records forever."""

    name: str
    key: str
    partitions: int
    retention_ms: int = -1
    cleanup_policy: str = "delete"

    def min_insync_replicas(self, replication_factor: int) -> int:
        # With rf >= 3, two in-sync copies must hold a write before acks=all succeeds, so one
        # broker may fail without losing acknowledged data; smaller clusters cannot afford it.
        return min(2, replication_factor - 1) if replication_factor >= 3 else 1

    def configs(self, replication_factor: int) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(self.min_insync_replicas(replication_factor)),
            "message.timestamp.type": "CreateTime",
            "max.message.bytes": str(MAX_MESSAGE_BYTES),
        }


class Topics(msgspec.Struct, frozen=True, kw_only=True):
    """Parley's topic names for one deployment (one prefix)."""

    prefix: str = "parley"

    @property
    def chat(self) -> str:
        return f"{self.prefix}.events.chat"

    @property
    def visitor(self) -> str:
        return f"{self.prefix}.events.visitor"

    @property
    def agent(self) -> str:
        return f"{self.prefix}.events.agent"

    @property
    def other(self) -> str:
        return f"{self.prefix}.events.other"

    @property
    def event_topics(self) -> tuple[str, str, str, str]:
        return (self.chat, self.visitor, self.agent, self.other)

    def for_aggregate(self, kind: AggregateKind) -> str:
        return f"{self.prefix}.events.{kind}"

    def dlq(self, group: str) -> str:
        return f"{self.prefix}.dlq.{group}"

    def specs(self, partitions: int = 6) -> tuple[TopicSpec, ...]:
        keys = {"chat": "chat id", "visitor": "visitor id", "agent": "agent id",
                "other": "event id (events with no known aggregate)"}
        return tuple(TopicSpec(name=self.for_aggregate(kind), key=keys[kind],
                               partitions=partitions) for kind in AGGREGATES)

    def dlq_spec(self, group: str, partitions: int = 6) -> TopicSpec:
        return TopicSpec(name=self.dlq(group), key="key of the failed record",
                         partitions=partitions)

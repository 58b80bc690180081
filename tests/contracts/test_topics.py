"""Topics as code: names under a prefix, specs and configs."""

from __future__ import annotations

import pytest

from contracts.topics import (
    EVENT_TOPIC_KINDS,
    INFINITE_RETENTION_MS,
    MAX_BODY_BYTES,
    MAX_RECORD_BYTES,
    PROJECTOR,
    Topics,
    TopicSpec,
    default_replication_factor,
)


def test_names_follow_the_prefix() -> None:
    topics = Topics(prefix="t-1a2b")
    assert topics.chat == "t-1a2b.events.chat"
    assert topics.visitor == "t-1a2b.events.visitor"
    assert topics.agent == "t-1a2b.events.agent"
    assert topics.other == "t-1a2b.events.other"
    assert topics.event_topics == (topics.chat, topics.visitor, topics.agent, topics.other)
    assert topics.dlq("search") == "t-1a2b.dlq.search"


def test_default_prefix_and_positional_construction() -> None:
    assert Topics().chat == "parley.events.chat"
    assert Topics("x").chat == "x.events.chat"


def test_for_aggregate_and_back() -> None:
    topics = Topics(prefix="p")
    for kind in EVENT_TOPIC_KINDS:
        assert topics.aggregate_of(topics.for_aggregate(kind)) == kind
    assert topics.aggregate_of("p.dlq.crm") is None


@pytest.mark.parametrize("prefix", ["", "has space", "colon:here", "é", "x" * 240])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="Kafka topic name"):
        Topics(prefix=prefix)


def test_bad_group_is_refused() -> None:
    with pytest.raises(ValueError, match="consumer group"):
        Topics().dlq("crm/sync")
    with pytest.raises(ValueError, match="consumer group"):
        Topics().group_id("crm/sync")


def test_every_group_id_lives_under_the_prefix() -> None:
    # Two installations on one cluster differ in prefix: none of their groups may be shared
    # (the projector's used to be the unprefixed "parley-projector" in both).
    a, b = Topics(prefix="site-a"), Topics(prefix="site-b")
    assert a.group_id(PROJECTOR) == "site-a.projector"
    assert a.group_id("search") == "site-a.consumers.search"
    for name in (PROJECTOR, "search", "crm"):
        assert a.group_id(name).startswith("site-a.")
        assert a.group_id(name) != b.group_id(name)


def test_event_topic_specs_keep_everything_forever() -> None:
    specs = Topics(prefix="p").specs(partitions=12)[:4]
    assert [spec.name for spec in specs] == list(Topics(prefix="p").event_topics)
    for spec in specs:
        assert spec.partitions == 12
        assert spec.retention_ms == INFINITE_RETENTION_MS == -1
        assert spec.cleanup_policy == "delete"
    assert [spec.key for spec in specs][:3] == ["chat id", "visitor id", "agent id"]


def test_state_topic_specs_are_compacted_and_keyed_by_aggregate() -> None:
    topics = Topics(prefix="p")
    specs = topics.specs(partitions=12)[4:]
    assert [spec.name for spec in specs] == ["p.state.chat", "p.state.visitor", "p.state.agent"]
    assert list(topics.state_topics) == [spec.name for spec in specs]
    for spec in specs:
        assert spec.partitions == 12
        configs = spec.configs(3)
        assert configs["cleanup.policy"] == "compact"
        assert configs["retention.ms"] == "-1"
        # a superseded state (an erased subject's older states) goes within a day
        assert configs["max.compaction.lag.ms"] == configs["segment.ms"] == str(24 * 3600 * 1000)
    assert all("max.compaction.lag.ms" not in s.configs(3) for s in topics.specs()[:4])
    assert [topics.state_kind_of(s.name) for s in specs] == ["chat", "visitor", "agent"]
    assert topics.state_kind_of(topics.chat) is None
    with pytest.raises(ValueError, match="no state topic"):
        topics.state("other")  # type: ignore[arg-type]


def test_specs_refuse_zero_partitions() -> None:
    with pytest.raises(ValueError):
        Topics().specs(partitions=0)


def test_dlq_spec() -> None:
    spec = Topics(prefix="p").dlq_spec("crm")
    assert spec.name == "p.dlq.crm"
    assert spec.partitions == 1
    assert spec.retention_ms == -1


@pytest.mark.parametrize(
    ("replication_factor", "min_isr"), [(1, "1"), (2, "1"), (3, "2"), (4, "2"), (5, "2")]
)
def test_configs_by_replication_factor(replication_factor: int, min_isr: str) -> None:
    spec = TopicSpec(name="t", key="chat id", partitions=3, retention_ms=-1)
    configs = spec.configs(replication_factor)
    assert configs == {
        "retention.ms": "-1",
        "cleanup.policy": "delete",
        "min.insync.replicas": min_isr,
        "message.timestamp.type": "CreateTime",
        "max.message.bytes": str(MAX_RECORD_BYTES),
    }


def test_configs_refuse_zero_replicas() -> None:
    with pytest.raises(ValueError):
        TopicSpec(name="t", key="k", partitions=1, retention_ms=-1).configs(0)


def test_records_fit_a_maximal_body() -> None:
    assert MAX_RECORD_BYTES > MAX_BODY_BYTES + 1024


def test_default_replication_factor() -> None:
    assert [default_replication_factor(n) for n in (1, 2, 3, 7)] == [1, 2, 3, 3]
    with pytest.raises(ValueError):
        default_replication_factor(0)

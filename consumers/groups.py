"""Administration of consumer groups: membership, and ``reset --to earliest|latest|<time>``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from consumers.errors import ConsumerError, GroupActive
from parley.kafka.clients import make_admin, make_consumer
from parley.settings import KafkaSettings

__all__ = ["active_members", "committed_topics", "group_known", "parse_reset_target", "partitions",
           "reset_group"]


def parse_reset_target(text: str) -> str | datetime:
    """``earliest``, ``latest``, or an ISO-8601 time (naive means UTC)."""
    if text in ("earliest", "latest"):
        return text
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConsumerError(f"--to {text!r}: expected earliest, latest or an ISO-8601 time such "
                            f"as 2026-01-05T09:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def active_members(k: KafkaSettings, group: str) -> int:
    """How many members the group has right now (0 for an empty or unknown group)."""
    admin = make_admin(k)
    await admin.start()
    try:
        responses: list[Any] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members = 0
    for resp in responses:
        for g in resp.groups:
            # (error_code, group_id, state, protocol_type, protocol, members, …)
            if g[1] == group and g[0] == 0:
                members += len(g[5])
    return members


async def group_known(k: KafkaSettings, group: str, dlq_topic: str) -> bool:
    """Whether Kafka knows of the group: members, committed offsets or its dead-letter topic."""
    admin = make_admin(k)
    await admin.start()
    try:
        if dlq_topic in set(await admin.list_topics()):
            return True
        if await admin.list_consumer_group_offsets(group):
            return True
    finally:
        await admin.close()
    return await active_members(k, group) > 0


async def committed_topics(k: KafkaSettings, group: str) -> list[str]:
    """Topics the group has committed offsets for (how to find an unknown group's topics)."""
    admin = make_admin(k)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sorted({tp.topic for tp in offsets})


async def partitions(k: KafkaSettings, topic_names: Sequence[str]) -> list[TopicPartition]:
    """Every partition of those of ``topic_names`` that exist."""
    admin = make_admin(k)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topic_names))
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described
            if not t.get("error_code") for p in t["partitions"]]


async def reset_group(k: KafkaSettings, group: str, topic_names: list[str],
                      to: str | datetime) -> dict[TopicPartition, int]:
    """Commit new offsets for an idle group; returns them.

    Refuses (:class:`GroupActive`) while the group has members: a running member would keep
    its in-memory positions and overwrite the reset with its next commit.
    """
    n = await active_members(k, group)
    if n:
        raise GroupActive(f"consumer group {group} has {n} active member(s); stop every "
                          f"`parley consumer` (and `parley run`) using it, then reset again")
    tps = await partitions(k, topic_names)
    if not tps:
        raise ConsumerError(f"none of the topics {', '.join(topic_names)} exist")
    c = make_consumer(k, group_id=group)
    await c.start()
    try:
        c.assign(tps)  # no subscribe: this client never joins the group
        if to == "earliest":
            offsets = dict(await c.beginning_offsets(tps))
        elif to == "latest":
            offsets = dict(await c.end_offsets(tps))
        else:
            assert isinstance(to, datetime)
            ms = int(to.timestamp() * 1000)
            found = await c.offsets_for_times(dict.fromkeys(tps, ms))
            ends = await c.end_offsets(tps)
            # No record at or after the time: start at the end (nothing to redeliver).
            offsets = {tp: (found[tp].offset if found.get(tp) is not None else ends[tp])
                       for tp in tps}
        await c.commit(offsets)
    finally:
        await c.stop()
    return offsets

"""The consumer groups the console reports on: the projector's, each consumer group this
process runs, and every other consumer Parley knows of (built-in, entry point, or a
``[consumers.NAME]`` table) that can be loaded here, wherever it runs: a ``parley projector``
pod's console shows the lag of the consumer groups other pods run (with no members, a group
shows as down)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consumers.errors import ConsumerError
from consumers.registry import consumer_config, known_consumers, load_consumer
from consumers.role import BuiltinConsumersRole, ConsumerRole
from contracts.topics import PROJECTOR, Topics
from parley.errors import SettingsError
from parley.settings import Settings
from projector.role import ProjectorRole

__all__ = ["GroupInfo", "groups_of"]


@dataclass(frozen=True)
class GroupInfo:
    """One group: its ``name`` (``projector`` or the consumer's), Kafka ``group`` id, the
    ``topics`` it reads, its dead-letter topic and its ``[consumers.NAME] stuck_after_s``
    (None: the lag monitor's default)."""

    name: str
    group: str
    topics: tuple[str, ...]
    dlq: str
    stuck_after_s: float | None = None


def groups_of(roles: Mapping[str, object], topics: Topics,
              settings: Settings | None = None) -> tuple[GroupInfo, ...]:
    """The groups of the roles a process serves, the projector first, then (with
    ``settings``) the other consumers that can be loaded here."""
    out: list[GroupInfo] = []
    for role in roles.values():
        if isinstance(role, ProjectorRole):
            out.insert(0, GroupInfo(PROJECTOR, role.group_id, topics.event_topics,
                                    topics.dlq(PROJECTOR)))
        elif isinstance(role, BuiltinConsumersRole | ConsumerRole):
            stuck = {w.consumer: w.stuck_after_s for w in role.service.monitor.groups}
            out += [GroupInfo(name, runner.group, tuple(runner.topic_names), topics.dlq(name),
                              stuck.get(name))
                    for name, runner in role.service.runners.items()]
    if settings is not None:
        seen = {g.name for g in out}
        names = [k.name for k in known_consumers()] + list(settings.consumers)
        for name in dict.fromkeys(names):
            if name in seen:
                continue
            try:  # built-ins without their configuration (crm) cannot say what they read
                consumer = load_consumer(name, settings)
            except (ConsumerError, SettingsError):
                continue
            configured = consumer_config(settings, name).get("stuck_after_s")
            out.append(GroupInfo(name, topics.group_id(name),
                                 tuple(consumer.topic_names(topics)), topics.dlq(name),
                                 None if configured is None else float(configured)))
    return tuple(out)

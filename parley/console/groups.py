"""The consumer groups the console reports on: the projector's, and each consumer group this
process runs (``parley run`` runs the built-in ones; a ``parley projector`` process shows the
projector's alone: a consumer's group is shown by the console of the process that runs it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consumers.role import BuiltinConsumersRole, ConsumerRole
from contracts.topics import PROJECTOR, Topics
from projector.role import ProjectorRole

__all__ = ["GroupInfo", "groups_of"]


@dataclass(frozen=True)
class GroupInfo:
    """One group: its ``name`` (``projector`` or the consumer's), Kafka ``group`` id, the
    ``topics`` it reads and its dead-letter topic."""

    name: str
    group: str
    topics: tuple[str, ...]
    dlq: str


def groups_of(roles: Mapping[str, object], topics: Topics) -> tuple[GroupInfo, ...]:
    """The groups of the roles a process serves, the projector first."""
    out: list[GroupInfo] = []
    for role in roles.values():
        if isinstance(role, ProjectorRole):
            out.insert(0, GroupInfo(PROJECTOR, role.group_id, topics.event_topics,
                                    topics.dlq(PROJECTOR)))
        elif isinstance(role, BuiltinConsumersRole | ConsumerRole):
            out += [GroupInfo(name, runner.group, tuple(runner.topic_names), topics.dlq(name))
                    for name, runner in role.service.runners.items()]
    return tuple(out)

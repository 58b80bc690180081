"""Which consumer groups the console reports on (parley/console/groups.py)."""

from __future__ import annotations

from contracts.topics import Topics
from parley.console.groups import groups_of
from parley.settings import Settings


def test_a_projector_only_process_still_shows_the_groups_other_processes_run() -> None:
    """In a deployment the consumers run in pods of their own: the projector pod's console
    lists their groups too (their lag comes from Kafka; without members a group is down)."""
    topics = Topics(prefix="p")
    groups = {g.name: g for g in groups_of({}, topics, Settings())}
    search = groups["search"]
    assert search.group == topics.group_id("search") and search.dlq == topics.dlq("search")
    assert search.topics  # what its consumer reads
    assert "crm" not in groups  # a built-in without its [consumers.crm] table cannot be loaded
    assert groups_of({}, topics) == ()  # without settings: only the roles of this process

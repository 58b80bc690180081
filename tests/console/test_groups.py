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


def test_a_groups_configured_stuck_window_reaches_the_overview() -> None:
    """``[consumers.NAME] stuck_after_s`` is the window the overview's stuck flag uses for that
    group too (it used the monitor's 300 s for every group)."""
    topics = Topics(prefix="p")
    groups = {g.name: g for g in groups_of(
        {}, topics, Settings(consumers={"search": {"stuck_after_s": 30}}))}
    assert groups["search"].stuck_after_s == 30.0
    assert {g.stuck_after_s for g in groups_of({}, topics, Settings())} == {None}

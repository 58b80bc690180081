"""Which consumer groups the console reports on (parley/console/groups.py)."""

from __future__ import annotations

from pathlib import Path

from consumers.role import BuiltinConsumersRole
from contracts.topics import Topics
from parley.console.groups import groups_of
from parley.runtime import Runtime
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


def test_the_groups_this_process_runs_carry_their_stuck_window(tmp_path: Path) -> None:
    """The same for a group run here (its runner's window, from the consumer service)."""
    rt = Runtime.from_settings(Settings(
        data_dir=str(tmp_path), consumers={"search": {"stuck_after_s": 45}}))
    role = BuiltinConsumersRole(rt)
    [search] = groups_of({"consumers": role}, rt.topics)
    assert (search.name, search.stuck_after_s) == ("search", 45.0)

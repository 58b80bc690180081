"""``parley projections rebuild analytics`` as a command (projector/cli.py): it rebuilds the
live copy's roll-ups without Kafka, refuses the flags of a copy's rebuild in one line,
``parley projections status`` names a rebuild that did not end, and a store that cannot
(memory) or has no live copy is refused."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from projector.analytics_rebuild import rebuild_analytics
from projector.sqlite_store import SqliteStore
from tests.kit.analytics_world import DIMS, Folded, afresh, world
from tests.kit.rollup_contract import EVERYTHING


def _parley(*args: str, store_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARLEY_STORE__URL": store_url, "PARLEY_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "parley.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120, check=False)


async def test_the_command_rebuilds_the_live_copys_analytics(tmp_path: Path) -> None:
    """`parley projections rebuild analytics` (any case): no Kafka needed; the live copy's
    roll-ups rebuilt (here from a store whose roll-ups were lost), progress on stderr, one
    line on stdout. Flags of a copy's rebuild are refused in one line, nothing changed."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    folded = Folded()
    try:
        await store.create_projection("v1")
        await store.set_live("v1")
        await store.commit("v1", folded.rows(world(range(20))), {})
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "state.db")
    with conn:
        conn.execute('DELETE FROM "p_v1_rollups"')  # as if folded before the roll-ups existed
        conn.execute('DELETE FROM "p_v1_facts"')
    conn.close()

    refused = _parley("projections", "rebuild", "analytics", "--accept-changes", "--workers", "2",
                      store_url=url, cwd=tmp_path)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1] == (
        "parley: error: --accept-changes, --workers do not apply to `parley projections rebuild "
        "analytics` (it rebuilds the live copy's roll-ups, no new copy); nothing was changed")

    done = _parley("projections", "rebuild", "Analytics", store_url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "rebuild analytics of v1: 22/22 chats and agents (100.0%)" in done.stderr
    assert done.stdout.startswith("rebuilt the analytics of v1: 22 chats and agents in ")
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    try:
        got = {(g, dim, v, p): t for dim in DIMS for g, p, v, t in
               await store.report_tallies("v1", dim, EVERYTHING)}
    finally:
        await store.close()
    assert got == await afresh(folded.final())

    helped = _parley("projections", "rebuild", "--help", store_url=url, cwd=tmp_path)
    assert "ROLLUP_VERSION" in helped.stdout and "--accept-changes" in helped.stdout


async def test_status_shows_a_rebuild_not_ended(tmp_path: Path) -> None:
    """`parley projections status` names a copy whose analytics rebuild began and did not
    end (killed), and stops naming it once a rebuild ends."""
    from parley.settings import KafkaSettings, Settings, StoreSettings
    from projector.cli import projection_status

    url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = Settings(store=StoreSettings(url=url), kafka=KafkaSettings(bootstrap="127.0.0.1:1"))
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    try:
        await store.create_projection("v1")
        await store.set_live("v1")
        await store.analytics_shadow().begin("v1")  # then killed
        says = "  analytics: being rebuilt into shadow roll-ups, not live"
        assert says in await projection_status(settings)
        await rebuild_analytics(store, out=io.StringIO())
        assert says not in await projection_status(settings)
    finally:
        await store.close()


async def test_refused_without_a_store_that_can_or_a_live_copy(tmp_path: Path) -> None:
    from projector.memory_store import MemoryStore
    from projector.rebuild import RebuildError

    memory = MemoryStore()
    await memory.open()
    with pytest.raises(RebuildError, match=r"needs a SQLite file or PostgreSQL store; nothing"):
        await rebuild_analytics(memory, out=io.StringIO())
    empty = SqliteStore(tmp_path / "state.db")
    await empty.open()
    try:
        with pytest.raises(RebuildError, match=r"^no live projection yet"):
            await rebuild_analytics(empty, out=io.StringIO())
    finally:
        await empty.close()

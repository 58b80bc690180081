"""Parley's data is for the user who runs it: after a real `parley kafka up`, `parley topics
apply` and opening the SQLite store, search index and CRM state in one data_dir, nothing
under it grants group or other any permission, though the processes ran with umask 022, and a
data_dir an older version left world-readable is tightened."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.crm.state import CrmState
from consumers.search.index import SqliteSearchIndex
from parley.kafka.launcher import free_port_block
from parley.kafka.local import LocalBroker
from parley.private_files import private_dir, private_sqlite, write_private
from parley.settings import load_settings
from projector.sqlite_store import SqliteStore

pytestmark = pytest.mark.kafka

#: The common default: files 0644, directories 0755.
LOOSE_UMASK = 0o022


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(LOOSE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def _loose(root: Path) -> list[str]:
    """Every path under ``root`` (``root`` included) that grants group or other anything."""
    loose = []
    for p in [root, *root.rglob("*")]:
        try:
            mode = p.lstat().st_mode
        except FileNotFoundError:  # a running broker's temporary file, renamed since the listing
            continue
        if mode & 0o077 and not stat.S_ISLNK(mode):
            loose.append(f"{p.relative_to(root.parent)} {stat.filemode(mode)}")
    return loose


def _parley(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")
           or k == "PARLEY_CACHE_DIR"}
    return subprocess.run([sys.executable, "-m", "parley.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, env=env, cwd=config.parent,
                          timeout=180, check=False, umask=LOOSE_UMASK)


async def test_local_broker_store_and_index_leave_nothing_readable_by_others(
        tmp_path: Path, loose_umask: None) -> None:
    data = tmp_path / "data"
    # What an older version left: a world-readable data_dir, broker directory and store.
    (data / "kafka").mkdir(parents=True, mode=0o755)
    os.chmod(data, 0o755)  # noqa: S103 - loose on purpose: what is to be tightened
    (data / "state.db").touch(mode=0o644)
    config = tmp_path / "parley.toml"
    config.write_text(f'data_dir = "{data}"\n[kafka]\nlocal_port = {free_port_block(1)}\n'
                      "partitions = 2\n", encoding="utf-8")
    up = _parley(config, "kafka", "up")
    try:
        assert up.returncode == 0, up.stderr
        applied = _parley(config, "topics", "apply")  # partitions, segments, a user record
        assert applied.returncode == 0, applied.stderr
        store, index, crm = (SqliteStore(data / "state.db"), SqliteSearchIndex(data / "search.db"),
                             CrmState(data / "crm.db"))
        await store.open()
        await index.open()
        await crm.open()
        try:
            await crm.chat("c1", "acme", subject="billing")  # a write: -wal, -shm
            assert (data / "state.db-wal").exists() and (data / "search.db-wal").exists()
            kafka = data / "kafka"
            for made in ("cluster.json", "owner.json", ".lock", "users", "node-1/server.log",
                         "node-1/stdout.log", "node-1/server.properties",
                         "node-1/data/meta.properties", "crm.db-wal"):
                assert (kafka / made).exists() or (data / made).exists(), made
            assert list(kafka.glob("node-1/data/*/*.log")), "no segments to check"
            assert _loose(data) == []
        finally:
            await crm.close()
            await index.close()
            await store.close()
    finally:
        LocalBroker(load_settings(config, env={})).kafka.down()


def test_private_files_ignore_the_umask_and_tighten_what_is_parleys_own(
        tmp_path: Path) -> None:
    old = os.umask(0)  # the loosest: a plain mkdir or open would grant everyone everything
    try:
        deep = private_dir(tmp_path / "a" / "b" / "c")
        write_private(deep / "cluster.json", b"{}")
        private_sqlite(deep / "state.db")
        assert _loose(tmp_path / "a") == []

        # An existing directory is tightened only when it is Parley's own (tighten=True):
        # the parent of an operator's store file may be a home directory.
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        private_sqlite(shared / "state.db")
        assert stat.S_IMODE(shared.stat().st_mode) == 0o755
        assert stat.S_IMODE((shared / "state.db").stat().st_mode) == 0o600
        private_dir(shared, tighten=True)
        assert stat.S_IMODE(shared.stat().st_mode) == 0o700
    finally:
        os.umask(old)

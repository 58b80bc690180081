"""The local PostgreSQL of the tests starts wherever the checkout lives, as root or not."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import asyncpg
import pytest

from parley.errors import LauncherError
from parley.testing.postgres import LocalPostgres, _reachable_by_others, copy_installation, find_bindir


def test_reachability_reads_every_directory_above_the_tools(tmp_path: Path) -> None:
    bindir = tmp_path / "a" / "bin"
    bindir.mkdir(parents=True)
    for tool in ("initdb", "postgres"):
        (bindir / tool).write_text("#!/bin/sh\n")
        (bindir / tool).chmod(0o755)
    for directory in (tmp_path, tmp_path / "a", bindir):
        directory.chmod(0o755)
    reachable = all(p.stat().st_mode & 0o001 for p in tmp_path.resolve().parents)
    assert _reachable_by_others(bindir) is reachable
    (tmp_path / "a").chmod(0o700)  # like `mktemp -d`, or a clone under /root
    assert not _reachable_by_others(bindir)


def _binaries() -> Path:
    try:
        return find_bindir()
    except LauncherError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged server user exists only when run as root")
def test_root_runs_postgres_from_a_private_checkout(tmp_path: Path) -> None:
    """A clone in a 0700 directory (its .venv holds pgserver's binaries): the server still
    starts, as the unprivileged user, from a copy of the installation it can reach."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    bindir = copy_installation(_binaries(), private)
    assert not _reachable_by_others(bindir)
    root = Path(tempfile.mkdtemp(prefix="parley-test-pg-"))
    server = LocalPostgres(root, bindir=bindir)
    try:
        dsn = server.up()

        async def ask() -> int:
            conn = await asyncpg.connect(dsn)
            try:
                return int(await conn.fetchval("SELECT 40 + 2"))
            finally:
                await conn.close()

        assert asyncio.run(ask()) == 42
    finally:
        server.down(wipe=True)
    assert not root.exists()

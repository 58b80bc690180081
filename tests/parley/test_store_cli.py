"""``parley store migrate [--check]`` against a real PostgreSQL (and SQLite), as a user runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from projector.postgres_store import PostgresStore
from projector.stores import open_store
from tests.kit.postgres import with_options


def _parley(*args: str, store_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARLEY_STORE__URL": store_url, "PARLEY_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "parley.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=60, check=False)


def _with_password(url: str) -> str:
    parts = urlsplit(url)  # the test server trusts 127.0.0.1: any password is accepted
    netloc = f"{parts.username}:hunter2@{parts.hostname}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _line(out: str, start: str) -> str:
    [line] = [line for line in out.splitlines() if line.startswith(start)]
    return line


def test_migrate_check_then_apply_then_up_to_date(pg_url: str, tmp_path: Path) -> None:
    url = _with_password(pg_url)
    check = _parley("store", "migrate", "--check", store_url=url, cwd=tmp_path)
    assert check.returncode == 1, check.stderr
    assert "store (" in check.stdout and "needs 7 (pending: 1 projection registry" in check.stdout
    assert ("2 projection names in lower case, 3 outbox of state changes to publish, "
            "4 verification summaries of rebuilt copies, 5 report roll-up tables of every copy, "
            "6 index of each copy's chats by agent, 7 copies whose report roll-ups are being "
            "rebuilt)") in check.stdout
    assert "search (" in check.stdout and "pending: 1 chats and messages" in check.stdout

    applied = _parley("store", "migrate", store_url=url, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert _line(applied.stdout, "store (").endswith(
        "migrated 0 -> 7 (1 projection registry and live pointer, 2 projection names in lower case, "
        "3 outbox of state changes to publish, 4 verification summaries of rebuilt copies, "
        "5 report roll-up tables of every copy, 6 index of each copy's chats by agent, "
        "7 copies whose report roll-ups are being rebuilt)")
    assert "migrated 0 -> 3" in _line(applied.stdout, "search (")

    again = _parley("store", "migrate", "--check", store_url=url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _line(again.stdout, "store (").endswith("up to date (version 7)")
    assert _line(again.stdout, "search (").endswith("up to date (version 3)")
    for run in (check, applied, again):
        assert "hunter2" not in run.stdout + run.stderr

    async def opens_without_migrating() -> None:
        store = open_store(with_options(url, migrate="off"))
        assert isinstance(store, PostgresStore)
        await store.open()
        await store.close()

    asyncio.run(opens_without_migrating())


def test_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    run = _parley("store", "migrate", store_url="postgresql://parley:hunter2@127.0.0.1:1/parley",
                  cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.startswith("parley: error: cannot connect to PostgreSQL at 127.0.0.1:1/parley")
    assert "hunter2" not in run.stdout + run.stderr


def test_sqlite_stores_migrate_themselves(tmp_path: Path) -> None:
    run = _parley("store", "migrate", store_url=f"sqlite:///{tmp_path / 'state.db'}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "up to date" in run.stdout and (tmp_path / "state.db").is_file()

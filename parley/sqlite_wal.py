"""Switching a SQLite file to write-ahead logging when several processes open it at once.

Parley's SQLite files are shared by processes of one machine: the key store
(``<data_dir>/keys.db``) by every receiver, projector and consumer, a projection store by the
projector and the CLI. ``PRAGMA journal_mode = WAL`` on a file another connection is switching
at the same moment fails at once with "database is locked": SQLite does not call its busy
handler there, so ``busy_timeout`` does not help (two receivers sealing their first webhooks
answered 503 ``key_store_unavailable`` that way). :func:`use_wal` retries it, with a short
backoff, for as long as the connection's ``busy_timeout`` would have waited.
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]

_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def use_wal(db: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL`` on ``db``, retried while the file is locked for as long
    as ``db``'s ``busy_timeout``; the journal mode the file is in (``"memory"`` for an
    in-memory database). Raises the last ``sqlite3.OperationalError`` after that."""
    timeout_ms = db.execute("PRAGMA busy_timeout").fetchone()[0]
    deadline = time.monotonic() + timeout_ms / 1000
    pause = 0.002
    while True:
        try:
            row = db.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in _BUSY or time.monotonic() >= deadline:
                raise
            # A retry with backoff on a lock SQLite will not wait for itself; not a stand-in
            # for synchronisation (the other connection's switch takes microseconds).
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            continue
        return str(row[0]).lower()

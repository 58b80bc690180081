"""Bring a consumer's own SQLite file up to its current tables: add the columns it lacks.

The built-in consumers (search index, CRM state) keep small SQLite files whose tables grew
columns over releases; a file from an older release gets them, with their defaults, when it
is opened. Never drops or changes a column.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

__all__ = ["add_missing_columns"]


def add_missing_columns(db: sqlite3.Connection, added: Mapping[str, Sequence[str]]) -> None:
    """For each table, add every column definition (``"version INTEGER"``) whose column is
    not there yet. Table names and definitions are the caller's constants, never input."""
    for table, columns in added.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in columns:
            if column.split()[0] not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

"""Fixtures of the projector's tests (their helpers are in tests/kit/)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A ``sqlite:///`` URL of a fresh database file in this test's temporary directory."""
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"

"""Fixtures of the projector's tests.

This directory is put on ``sys.path`` so that test modules can import their shared,
test-free helper modules (``store_contract``, ``test_fold_kit``, ``test_runner_kit``):
with ``--import-mode=importlib`` test modules cannot import their siblings otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


# ----------------------------------------------------------------------------- fold / store


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A ``sqlite:///`` URL of a fresh database file in this test's temporary directory."""
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"

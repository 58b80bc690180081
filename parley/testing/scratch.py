"""Scratch directories for tests and benchmarks that hold key stores and master keys."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

__all__ = ["scratch_dir"]


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory named ``prefix…``, removed when this process exits: key
    stores and master keys must not outlive a test session or a benchmark run in /tmp."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path

"""Tests and benchmarks leave nothing behind: their key stores and master keys live in
scratch directories removed when the process exits (parley/testing/scratch.py:scratch_dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_MAKE_ONE = """
from parley.testing.scratch import scratch_dir
scratch = scratch_dir("parley-bench-keys-")
(scratch / "master.key").write_text("a secret")
print(scratch, flush=True)
"""


def test_a_benchmarks_scratch_directory_is_gone_when_it_exits(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _MAKE_ONE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    scratch = Path(done.stdout.strip())
    assert scratch.parent == tmp_path and scratch.name.startswith("parley-bench-keys-")
    assert not scratch.exists()
    assert list(tmp_path.iterdir()) == []

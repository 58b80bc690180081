"""The benchmarks leave nothing behind: their key stores and master keys live in scratch
directories removed when the benchmark's process exits (bench/receiver.py:scratch_dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_MAKE_ONE = """
import importlib.util
spec = importlib.util.spec_from_file_location("bench_receiver", "bench/receiver.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
scratch = module.scratch_dir("parley-bench-keys-")
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

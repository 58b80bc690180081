"""Checks, with the standard library only, what `make` needs before it creates .venv.

Each failure is one line that says what to do, and exit status 1:
- a Python older than the project's floor (3.11);
- a lock file that is missing, empty, or not a hashed lock (every pin `name==version`
  followed by at least one `--hash=sha256:<64 hex>`).

The lock's freshness against pyproject.toml is a test (tests/repo/test_lock.py); here we
only refuse to start an install that pip would abort halfway with a page of output.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")
REGENERATE = "run `make lock` to regenerate it (or restore it with `git checkout -- {path}`)"


def problems(lock: Path) -> str | None:
    """The first thing wrong with ``lock`` as one sentence, or None when it is usable."""
    if not lock.is_file():
        return f"the lock file {lock} is missing: " + REGENERATE.format(path=lock)
    pins: list[str] = []
    current: str | None = None
    hashed: set[str] = set()
    for number, raw in enumerate(lock.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("--hash="):
            if current is None or not HASH.search(line):
                return f"{lock}:{number} is not a valid hash line: " + REGENERATE.format(path=lock)
            hashed.add(current)
            continue
        match = PIN.match(line)
        if match is None:
            return f"{lock}:{number} is not an exact pin (name==version): " + REGENERATE.format(path=lock)
        current = match.group(1).lower()
        pins.append(current)
        if HASH.search(line):
            hashed.add(current)
    if not pins:
        return f"the lock file {lock} pins nothing: " + REGENERATE.format(path=lock)
    unhashed = [name for name in pins if name not in hashed]
    if unhashed:
        return f"{lock} pins {unhashed[0]} without a hash: " + REGENERATE.format(path=lock)
    return None


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (runs before the venv, on any python3)
        found = ".".join(map(str, sys.version_info[:3]))
        print(f"Parley needs Python 3.11+, this is {found}: run make with PYTHON=python3.11 (or newer)")
        return 1
    for path in argv or ["requirements/test.lock"]:
        problem = problems(Path(path))
        if problem is not None:
            print(f"error: {problem}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The lock files pin, with hashes, a version inside pyproject.toml's range for every dependency,
and `make`'s pre-install check refuses a missing or corrupt lock in one line."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME_LOCK = REPO / "requirements" / "runtime.lock"
TEST_LOCK = REPO / "requirements" / "test.lock"
BENCH_LOCK = REPO / "requirements" / "bench.lock"
CHECK = REPO / "requirements" / "check.py"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def pins(lock: Path) -> dict[str, list[tuple[str, str | None]]]:
    """name → [(version, marker)]: a universal lock may pin one name twice under markers."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            out.setdefault(canonicalize_name(match.group(1)), []).append((match.group(2), match.group(3)))
    return out


def requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    build_in = (REPO / "requirements" / "build.in").read_text().splitlines()
    lines += [line for line in build_in if line.strip() and not line.startswith("#")]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize(("lock", "extras"), [
    (RUNTIME_LOCK, ()), (TEST_LOCK, ("test",)), (BENCH_LOCK, ("test", "bench")),
])
def test_every_dependency_is_pinned_inside_its_range(lock: Path, extras: tuple[str, ...]) -> None:
    locked = pins(lock)
    env = default_environment()
    for req in requirements(*extras):
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in {lock.name}: run `make lock`"
        for version, _marker in locked[name]:
            assert req.specifier.contains(version, prereleases=True), (
                f"{lock.name} pins {req.name}=={version}, outside pyproject.toml's {req}: run `make lock`"
            )


@pytest.mark.parametrize(("smaller", "larger"), [(RUNTIME_LOCK, TEST_LOCK), (TEST_LOCK, BENCH_LOCK)])
def test_each_lock_agrees_with_the_one_it_extends(smaller: Path, larger: Path) -> None:
    inner, outer = pins(smaller), pins(larger)
    differ = {name: (inner[name], outer.get(name)) for name in inner if outer.get(name) != inner[name]}
    assert not differ, f"{larger.name} pins these differently from {smaller.name}: {differ}"


def test_the_installed_versions_are_the_locked_ones() -> None:
    from importlib.metadata import version

    locked = pins(TEST_LOCK)
    for name in ("msgspec", "aiokafka", "aiohttp", "orjson", "pytest"):
        assert version(name) in [v for v, _ in locked[name]], f"{name} {version(name)} is not the locked one"


def check(tmp_path: Path, text: str | None) -> subprocess.CompletedProcess[str]:
    lock = tmp_path / "test.lock"
    if text is not None:
        lock.write_text(text)
    return subprocess.run([sys.executable, str(CHECK), str(lock)], capture_output=True, text=True,
                          timeout=30, check=False)


def test_check_accepts_the_committed_locks() -> None:
    done = subprocess.run([sys.executable, str(CHECK), str(RUNTIME_LOCK), str(TEST_LOCK), str(BENCH_LOCK)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize(("text", "says"), [
    (None, "is missing"),
    ("", "pins nothing"),
    ("msgspec>=0.18\n    --hash=sha256:" + "a" * 64 + "\n", "not an exact pin"),
    ("msgspec==0.23.0\n", "without a hash"),
    ("msgspec==0.23.0 \\\n    --hash=sha256:12ab\n", "not a valid hash line"),
    ("<<<<<<< HEAD\nmsgspec==0.23.0\n", "not an exact pin"),
])
def test_check_refuses_a_missing_or_corrupt_lock_in_one_line(tmp_path: Path, text: str | None,
                                                              says: str) -> None:
    done = check(tmp_path, text)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and says in lines[0] and "make lock" in lines[0], done.stdout

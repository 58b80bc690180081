"""Resolve the pinned Apache Kafka jars (the broker and Kafka's command-line tools) from Maven
Central with the machine's Maven.

The jars land in a per-user cache (``~/.cache/parley/kafka-<version>/libs-<pom digest>``, or
under ``$PARLEY_CACHE_DIR``), never in the repository, and are resolved once: a ``.complete``
marker is written only after Maven succeeded, so an interrupted download is redone, not
half-used. The directory is named after the digest of ``pom.xml``, so a change to the jar set
resolves into a new directory instead of replacing one that running brokers read from.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from parley.errors import LauncherError

# 4.4.0 is on Maven Central without its kafka-tools-api jar, so it cannot be resolved there;
# 4.3.1 is the newest release that resolves completely. aiokafka works against it for all
# Parley uses (idempotent acks=all producer, groups with manual commits, seek, transactions,
# admin) — shown by tests/parley/test_kafka_roundtrip.py. The one place the version is
# written: the launcher, the Maven resolution and the tests' container image all read it.
KAFKA_VERSION = "4.3.1"


def cache_dir() -> Path:
    base = os.environ.get("PARLEY_CACHE_DIR")
    root = Path(base) if base else Path.home() / ".cache" / "parley"
    return root / f"kafka-{KAFKA_VERSION}"


def require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LauncherError(f"`{name}` not found on PATH; it is needed to {purpose}. "
                            f"Install it (Debian: apt-get install {_debian_pkg(name)}).")
    return path


def _debian_pkg(tool: str) -> str:
    return {"java": "openjdk-17-jre-headless", "mvn": "maven"}.get(tool, tool)


def _pom_digest() -> str:
    return hashlib.sha256(resources.files("parley.kafka").joinpath("pom.xml").read_bytes()
                          ).hexdigest()[:12]


def libs_dir() -> Path:
    """Where :func:`resolve_jars` puts (or has put) the jars of the current ``pom.xml``."""
    return cache_dir() / f"libs-{_pom_digest()}"


def resolve_jars(*, quiet: bool = True) -> Path:
    """Return the directory holding the broker's and the tools' classpath, resolving it first
    if needed."""
    libs = libs_dir()
    if (libs / ".complete").exists():
        return libs
    mvn = require_tool("mvn", "resolve the Kafka jars from Maven Central")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=libs.parent))
    pom = resources.files("parley.kafka").joinpath("pom.xml")
    with resources.as_file(pom) as pom_path:
        cmd = [mvn, "-B", "-f", str(pom_path), "dependency:copy-dependencies",
               f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
               f"-Dkafka.version={KAFKA_VERSION}"]
        if quiet:
            cmd.insert(1, "-q")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise LauncherError(f"Maven could not resolve Kafka {KAFKA_VERSION} jars:\n{tail}")
    (staging / ".complete").write_text(KAFKA_VERSION)
    try:
        staging.rename(libs)  # atomic: a libs directory is always complete
    except OSError:
        # Another process (a parallel test session) resolved the same jars meanwhile: its
        # directory may be in use already, so keep it and drop ours.
        shutil.rmtree(staging, ignore_errors=True)
        if not (libs / ".complete").exists():
            raise LauncherError(f"{libs} exists without its .complete marker; delete it and "
                                "retry") from None
    return libs


def main() -> int:
    """``make kafka-jars``: resolve the jars, or say in one line why not (no Java, no Maven,
    Maven failing) instead of a traceback."""
    try:
        print("Kafka jars:", resolve_jars())
    except LauncherError as exc:
        print(f"parley: error: {exc}", file=sys.stderr)
        return 1
    return 0

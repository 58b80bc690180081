"""Is there a Docker engine for testcontainers? Asked by the Kafka and PostgreSQL fixtures."""

from __future__ import annotations

import os
from pathlib import Path


def docker_engine_answers() -> bool:
    """Whether a Docker engine answers (testcontainers can run); ``PARLEY_TEST_NO_DOCKER``
    says no without asking."""
    if os.environ.get("PARLEY_TEST_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False  # no engine socket: don't ask docker-py, which leaks one when it fails
    import docker

    try:
        client = docker.from_env(timeout=3)
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no"
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()

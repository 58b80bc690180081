"""Shared fixtures. Kafka is always real Apache Kafka, chosen in this order:

1. ``PARLEY_TEST_KAFKA`` — a bootstrap address you already run (fastest local loop);
2. testcontainers' Kafka, when a Docker engine answers;
3. the project's own local launcher (``parley kafka up``'s code) on free ports, in a
   temporary directory, stopped at the end of the session.

Each test gets unique topic names (a per-test topic prefix) and group names.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from contracts.topics import Topics
from parley.kafka.jars import KAFKA_VERSION
from parley.kafka.launcher import LocalKafka, free_ports
from parley.settings import KafkaSettings
from parley.testing.kafka import throwaway_kafka
from tests.kit.docker import docker_engine_answers
from tests.kit.postgres import fresh_schema, shared_postgres

# Fixtures that tests in several folders use (pytest reads pytest_plugins from this file only).
pytest_plugins = ["tests.kit.receiver_app", "tests.kit.raw_http", "tests.kit.dead_letters"]

TEST_PARTITIONS = 3


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A bootstrap address of a real Kafka broker for this test session."""
    configured = os.environ.get("PARLEY_TEST_KAFKA")
    if configured:
        yield configured
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        # The version `parley kafka up` runs: one constant for both.
        with KafkaContainer(f"apache/kafka:{KAFKA_VERSION}").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with throwaway_kafka("parley-test-kafka-", heap_mb=768) as state:
        yield state.bootstrap


@pytest.fixture
def unique() -> str:
    """A short unique name for this test (topic prefix, group ids)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, unique: str) -> KafkaSettings:
    return KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=unique,
                         partitions=TEST_PARTITIONS, replication_factor=1)


@pytest.fixture
async def topics(kafka_settings: KafkaSettings) -> AsyncIterator[Topics]:
    """This test's own event topics, created from the specs."""
    from parley.kafka.topics import apply_topics

    t = Topics(prefix=kafka_settings.topic_prefix)
    await apply_topics(kafka_settings, t.specs(kafka_settings.partitions))
    yield t
    from parley.kafka.clients import make_admin

    admin = make_admin(kafka_settings)
    await admin.start()
    with contextlib.suppress(Exception):
        await admin.delete_topics([*t.event_topics, *t.state_topics])
    await admin.close()


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[Callable[..., LocalKafka]]:
    """Factory for a Kafka cluster of this test's own (for tests that stop or kill brokers).

    ``start(brokers=1)`` returns a running :class:`LocalKafka` on free ports; every cluster it
    started is stopped and wiped when the test ends.
    """
    started: list[LocalKafka] = []

    def start(brokers: int = 1, heap_mb: int = 512) -> LocalKafka:
        ports = free_ports(2 * brokers)
        kafka = LocalKafka(tmp_path / f"kafka-{len(started)}", brokers=brokers,
                           ports=ports[:brokers], controller_ports=ports[brokers:],
                           heap_mb=heap_mb)
        started.append(kafka)
        kafka.up()
        return kafka

    yield start
    for kafka in started:
        kafka.down(wipe=True)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A DSN of the session's PostgreSQL server (see tests/kit/postgres.py), started on first use."""
    with shared_postgres() as dsn:
        yield dsn


@pytest.fixture
async def pg_url(postgres_dsn: str) -> AsyncIterator[str]:
    """A ``postgresql://`` store URL with a schema of this test's own."""
    async with fresh_schema(postgres_dsn) as url:
        yield url

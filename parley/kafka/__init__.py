"""Kafka plumbing: the local KRaft launcher, client construction and topic administration."""

from parley.kafka.jars import KAFKA_VERSION, resolve_jars
from parley.kafka.launcher import LocalKafka, free_ports

__all__ = ["KAFKA_VERSION", "LocalKafka", "free_ports", "resolve_jars"]

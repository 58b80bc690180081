"""Kafka for tests and benchmarks: a throwaway one-node cluster, and TLS/SASL listeners.

:func:`throwaway_kafka` starts a :class:`~parley.kafka.launcher.LocalKafka` on free ports in
a temporary directory for one test session or benchmark run. :class:`SecureListener` is an
extra listener (:class:`~parley.kafka.launcher.ExtraListener`) with TLS and/or SASL, for the
security tests (``tests/deploy/``).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

from parley.errors import LauncherError
from parley.kafka.launcher import ClusterState, LocalKafka, free_ports

__all__ = ["SecureListener", "throwaway_kafka"]


@contextlib.contextmanager
def throwaway_kafka(prefix: str, *, heap_mb: int = 768) -> Iterator[ClusterState]:
    """A one-node LocalKafka on free ports in a new temporary directory named ``prefix…``,
    for one test session or benchmark run: stopped and removed when the block ends."""
    broker, controller = free_ports(2)
    kafka = LocalKafka(Path(tempfile.mkdtemp(prefix=prefix)), ports=[broker],
                       controller_ports=[controller], heap_mb=heap_mb)
    try:
        yield kafka.up()
    finally:
        kafka.down(wipe=True)


class SecureListener(msgspec.Struct, frozen=True, kw_only=True):
    """An extra listener with TLS and/or SASL (security tests, local TLS set-ups).

    Inter-broker and controller traffic stay on the plaintext listeners; only clients use this
    one. ``users`` become SCRAM credentials when the node's storage is formatted (so they exist
    from the first start) and PLAIN logins of this listener. Names and passwords are limited to
    ``A-Z a-z 0-9 . _ -`` so they need no escaping in properties files or the format tool.
    """

    name: str = "SECURE"
    protocol: Literal["SSL", "SASL_SSL", "SASL_PLAINTEXT"] = "SASL_SSL"
    ports: tuple[int, ...]  # one per node
    keystore_pem: str | None = None  # PEM file: unencrypted PKCS#8 key, then the certificate chain
    truststore_pem: str | None = None  # PEM file of CA certificates trusted for client certificates
    client_auth: Literal["none", "requested", "required"] = "none"
    mechanisms: tuple[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], ...] = (
        "SCRAM-SHA-512", "PLAIN")
    users: dict[str, str] = {}

    def properties(self) -> dict[str, str]:
        """Broker properties of this listener (besides ``listeners`` and the protocol map)."""
        pre = f"listener.name.{self.name.lower()}."
        props: dict[str, str] = {}
        if self.protocol in ("SSL", "SASL_SSL"):
            if not self.keystore_pem:
                raise LauncherError(f"listener {self.name}: {self.protocol} needs keystore_pem")
            props |= {pre + "ssl.keystore.type": "PEM",
                      pre + "ssl.keystore.location": self.keystore_pem,
                      pre + "ssl.client.auth": self.client_auth}
            if self.truststore_pem:
                props |= {pre + "ssl.truststore.type": "PEM",
                          pre + "ssl.truststore.location": self.truststore_pem}
        if self.protocol.startswith("SASL"):
            props[pre + "sasl.enabled.mechanisms"] = ",".join(self.mechanisms)
            for mech in self.mechanisms:
                if mech == "PLAIN":
                    logins = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
                    props[pre + "plain.sasl.jaas.config"] = (
                        f"org.apache.kafka.common.security.plain.PlainLoginModule required {logins};")
                else:
                    props[pre + f"{mech.lower()}.sasl.jaas.config"] = (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;")
        return props

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM credentials."""
        return [f"--add-scram={mech}=[name={u},password={p}]"
                for mech in self.mechanisms if mech.startswith("SCRAM")
                for u, p in self.users.items()]

    def check(self, nodes: int) -> None:
        if len(self.ports) != nodes:
            raise LauncherError(f"listener {self.name}: needs one port per node ({nodes})")
        if self.name.upper() in ("PLAINTEXT", "CONTROLLER") or not _SAFE.fullmatch(self.name):
            raise LauncherError(f"listener name {self.name!r} is reserved or not A-Z, 0-9, _")
        for value in (*self.users, *self.users.values()):
            if not _SAFE_SECRET.fullmatch(value):
                raise LauncherError(f"listener {self.name}: user names and passwords must be "
                                    "A-Z a-z 0-9 . _ - (no escaping is done)")


_SAFE = re.compile(r"[A-Za-z0-9_]+")
_SAFE_SECRET = re.compile(r"[A-Za-z0-9._-]+")

"""A one-node Kafka cluster with TLS and SASL listeners of its own, as the deploy tests'
``secure_kafka`` fixture starts it: where it listens and the settings a client uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from parley.settings import KafkaSecurity, KafkaSettings
from tests.kit.certs import Pki


@dataclass(frozen=True)
class SecureKafka:
    """A one-node cluster with a SASL_SSL listener (SCRAM-SHA-512 and PLAIN) and an SSL
    listener that requires client certificates; plaintext stays for the launcher itself."""

    pki: Pki
    user: str
    password: str
    password_file: Path
    sasl_ssl: str  # bootstrap of the SASL_SSL listener
    mtls: str  # bootstrap of the SSL listener with ssl.client.auth=required
    plaintext: str

    def sasl_settings(self, prefix: str, *, mechanism: str = "SCRAM-SHA-512",
                      password: str | None = None) -> KafkaSettings:
        """Settings a deployment would use: CA file, password from a file unless given."""
        return KafkaSettings(
            bootstrap=self.sasl_ssl, topic_prefix=prefix, partitions=3, replication_factor=1,
            security=KafkaSecurity(
                protocol="SASL_SSL", sasl_mechanism=mechanism,  # type: ignore[arg-type]
                sasl_username=self.user, sasl_password=password,
                sasl_password_file=None if password is not None else str(self.password_file),
                ssl_cafile=str(self.pki.ca_cert)))

    def mtls_settings(self, prefix: str, *, with_cert: bool = True) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=self.mtls, topic_prefix=prefix, partitions=3, replication_factor=1,
            security=KafkaSecurity(
                protocol="SSL", ssl_cafile=str(self.pki.ca_cert),
                ssl_certfile=str(self.pki.client_cert) if with_cert else None,
                ssl_keyfile=str(self.pki.client_key) if with_cert else None))

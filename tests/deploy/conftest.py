"""Fixtures of the deploy tests: a private broker with TLS and SASL listeners of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parley.kafka.launcher import LocalKafka, free_ports
from parley.settings import KafkaSecurity, KafkaSettings
from parley.testing.kafka import SecureListener
from tests.deploy.certs import Pki, make_pki


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


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One secured broker per test module (starting one takes ~15 s), stopped and wiped after."""
    root = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(root / "pki")
    password = secrets.token_urlsafe(18)
    password_file = root / "sasl-password"
    password_file.write_text(password + "\n")
    plain, controller, sasl_port, mtls_port = free_ports(4)
    kafka = LocalKafka(root / "kafka", ports=[plain], controller_ports=[controller], listeners=[
        SecureListener(name="SECURE", protocol="SASL_SSL", ports=(sasl_port,),
                       keystore_pem=str(pki.broker_keystore), users={"parley": password}),
        SecureListener(name="MTLS", protocol="SSL", ports=(mtls_port,),
                       keystore_pem=str(pki.broker_keystore), truststore_pem=str(pki.ca_cert),
                       client_auth="required"),
    ])
    kafka.up()
    try:
        yield SecureKafka(pki=pki, user="parley", password=password, password_file=password_file,
                          sasl_ssl=f"127.0.0.1:{sasl_port}", mtls=f"127.0.0.1:{mtls_port}",
                          plaintext=f"127.0.0.1:{plain}")
    finally:
        kafka.down(wipe=True)

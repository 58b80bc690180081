"""Fixtures of the deploy tests: a private broker with TLS and SASL listeners of its own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from parley.kafka.launcher import LocalKafka, free_ports
from parley.testing.kafka import SecureListener
from tests.kit.certs import make_pki
from tests.kit.secure_kafka import SecureKafka


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

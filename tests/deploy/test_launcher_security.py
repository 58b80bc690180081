"""LocalKafka's extra TLS/SASL listeners: the broker properties and format arguments they
produce, and the inputs they refuse (the broker itself is exercised in test_kafka_security)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.errors import LauncherError
from parley.kafka.launcher import LocalKafka
from parley.testing.kafka import SecureListener


def test_sasl_ssl_listener_properties_and_scram_credentials(tmp_path: Path) -> None:
    lst = SecureListener(ports=(19093,), keystore_pem="/k.pem", truststore_pem="/ca.pem",
                         client_auth="required", users={"parley": "pw-1"})
    kafka = LocalKafka(tmp_path, ports=[19092], controller_ports=[20092], listeners=[lst])
    state = kafka._new_state()
    props = kafka.properties(state, state.nodes[0])
    assert props["listeners"].endswith(",SECURE://127.0.0.1:19093")
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,SECURE://127.0.0.1:19093"
    assert props["listener.security.protocol.map"].endswith(",SECURE:SASL_SSL")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"  # brokers talk plaintext
    assert props["listener.name.secure.ssl.keystore.type"] == "PEM"
    assert props["listener.name.secure.ssl.client.auth"] == "required"
    assert props["listener.name.secure.sasl.enabled.mechanisms"] == "SCRAM-SHA-512,PLAIN"
    assert 'user_parley="pw-1"' in props["listener.name.secure.plain.sasl.jaas.config"]
    assert "ScramLoginModule" in props["listener.name.secure.scram-sha-512.sasl.jaas.config"]
    assert lst.scram_arguments() == ["--add-scram=SCRAM-SHA-512=[name=parley,password=pw-1]"]


@pytest.mark.parametrize(("listener", "needle"), [
    (SecureListener(ports=(1, 2)), "one port per node"),
    (SecureListener(name="PLAINTEXT", ports=(1,)), "reserved"),
    (SecureListener(ports=(1,), users={"u": "p,w]"}), "no escaping"),
])
def test_bad_listeners_are_refused(tmp_path: Path, listener: SecureListener, needle: str) -> None:
    with pytest.raises(LauncherError, match=needle):
        LocalKafka(tmp_path, ports=[1], controller_ports=[2], listeners=[listener])


def test_tls_listener_needs_a_keystore(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, ports=[1], controller_ports=[2],
                       listeners=[SecureListener(protocol="SSL", ports=(3,))])
    state = kafka._new_state()
    with pytest.raises(LauncherError, match="needs keystore_pem"):
        kafka.properties(state, state.nodes[0])

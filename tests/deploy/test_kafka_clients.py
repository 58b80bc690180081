"""Client construction from security settings, without a broker: TLS files, encrypted client
keys with passwords from files, and clear errors that name files but never secrets."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from parley.errors import SettingsError
from parley.kafka.clients import common_kwargs, ssl_context
from parley.settings import KafkaSecurity, KafkaSettings
from tests.kit.certs import make_pki


def test_sasl_ssl_kwargs_read_the_password_file(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("from-file-123\n")
    kw = common_kwargs(KafkaSettings(bootstrap="b:9093", security=KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
        sasl_password_file=str(pw), ssl_cafile=str(pki.ca_cert))))
    assert kw["sasl_plain_password"] == "from-file-123"
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512" and kw["security_protocol"] == "SASL_SSL"
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_encrypted_client_key_with_password_file(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    encrypted = tmp_path / "client-encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-pass-456")))
    pw = tmp_path / "key-pw"
    pw.write_text("key-pass-456\n")
    sec = KafkaSecurity(protocol="SSL", ssl_cafile=str(pki.ca_cert), ssl_certfile=str(pki.client_cert),
                        ssl_keyfile=str(encrypted), ssl_key_password_file=str(pw))
    assert isinstance(ssl_context(sec), ssl.SSLContext)
    pw.write_text("wrong-pass-789")
    with pytest.raises(SettingsError) as err:
        ssl_context(sec)
    assert str(encrypted) in str(err.value) and "wrong-pass-789" not in str(err.value)


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(SettingsError, match=f"ssl_cafile={missing}"):
        common_kwargs(KafkaSettings(bootstrap="b:9093",
                                    security=KafkaSecurity(protocol="SSL", ssl_cafile=str(missing))))


def test_plaintext_needs_nothing() -> None:
    kw = common_kwargs(KafkaSettings(bootstrap="b:9092"))
    assert kw["security_protocol"] == "PLAINTEXT" and "ssl_context" not in kw
    assert "sasl_plain_password" not in kw

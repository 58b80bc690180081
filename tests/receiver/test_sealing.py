"""The receiver seals personal data before Kafka (docs/privacy.md): what is stored holds no
name, email, IP, place or message text readable; opened with the subject's key it is the body
byte for byte. An unreachable key store answers 503 and writes nothing; a missing master key
refuses to start with one line."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from contracts.envelope import decode_envelope
from contracts.topics import Topics
from parley.cli import main
from parley.privacy import MasterKeyError
from parley.runtime import Runtime
from parley.settings import KafkaSettings, PrivacySettings
from receiver.role import ReceiverRole
from tests.kit.receiver_app import AppFactory

pytestmark = pytest.mark.kafka

PERSONAL = (b"Priya Patel", b"priya@example.org", b"81.2.69.160", b"Manchester", b"ORD-10442",
            b"where is my order", b"Question about delivery")
# A port nothing listens on: the key store is "down" the way a dead server is.
UNREACHABLE = "postgresql://parley:pw@127.0.0.1:9/parley?connect_timeout=2"


async def test_stored_records_hold_no_personal_data_readable(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics) -> None:
    body = rx.with_natterly_token(
        (rx.FIXTURES / "natterly" / "chat_initiated_identified_visitor.json").read_bytes(),
        rx.NATTERLY_TOKENS[0])
    resp = await receiver.post("/webhooks/acme", data=body, headers=rx.JSON)
    assert resp.status == 200, await resp.text()
    (raw,) = await rx.read_sealed(kafka_settings, topics)
    for text in PERSONAL:
        assert text not in raw.value, text
    stored = decode_envelope(raw.value)
    assert stored.subject == "natterly:chat:5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"
    facts = msgspec.json.decode(bytes(stored.body))
    assert facts["event"] == "ChatInitiated" and facts["payload"]["chat"]["status"] == "Initiated"
    (opened,) = await rx.open_records(kafka_settings, [raw])
    assert b"Priya Patel" in bytes(decode_envelope(opened.value).body)


async def test_an_unreachable_key_store_answers_503_and_writes_nothing(
        rx: ModuleType, make_receiver: AppFactory, kafka_settings: KafkaSettings,
        topics: Topics, credentials: object) -> None:
    settings = rx.receiver_settings(kafka_settings, credentials)
    settings = msgspec.structs.replace(settings, privacy=PrivacySettings(
        master_key=rx.TEST_MASTER_KEY, key_store=UNREACHABLE))
    client = await make_receiver(settings)
    resp = await client.post("/webhooks/acme", data=rx.with_natterly_token(
        rx.natterly_body(), rx.NATTERLY_TOKENS[0]), headers=rx.JSON)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == str(settings.http.retry_after_s)
    answer = await resp.json()
    assert answer["error"] == "key_store_unavailable" and "pw" not in str(answer)
    assert await rx.read_sealed(kafka_settings, topics) == []


def test_a_missing_master_key_refuses_to_start_with_one_line(
        rx: ModuleType, kafka_settings: KafkaSettings, credentials: object, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = msgspec.structs.replace(
        rx.receiver_settings(kafka_settings, credentials),
        privacy=PrivacySettings(key_store=UNREACHABLE), data_dir=str(tmp_path))
    with pytest.raises(MasterKeyError, match=r"^no master key: set privacy\.master_key_file or "
                                             r"PARLEY_PRIVACY__MASTER_KEY"):
        ReceiverRole(Runtime.from_settings(settings))
    config = tmp_path / "parley.toml"
    config.write_text(f'[kafka]\nbootstrap = "{kafka_settings.bootstrap}"\n'
                      f'[privacy]\nmaster_key_file = "{tmp_path / "absent.key"}"\n'
                      '[sources.acme]\nprovider = "natterly"\n'
                      f'auth_tokens = ["{rx.NATTERLY_TOKENS[0]}"]\n', encoding="utf-8")
    assert main(["receiver", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no master key" in err and "absent.key does not exist" in err


async def test_a_key_wrapped_by_a_master_key_the_receiver_lacks_is_a_503_writing_nothing(
        rx: ModuleType, make_receiver: AppFactory, kafka_settings: KafkaSettings,
        topics: Topics, credentials: object, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # A rotation's rewrap ran before this receiver got the new key: it was a 500 and a
    # traceback; the sender must be told to retry, and the operator which key is missing.
    settings = rx.receiver_settings(kafka_settings, credentials)
    keys = f"sqlite:///{tmp_path / 'keys.db'}"
    body = rx.with_natterly_token(rx.natterly_body(), rx.NATTERLY_TOKENS[0])
    first = await make_receiver(msgspec.structs.replace(settings, privacy=PrivacySettings(
        master_key=rx.TEST_MASTER_KEY, key_store=keys)))
    assert (await first.post("/webhooks/acme", data=body, headers=rx.JSON)).status == 200
    other_master = "b3RoZXItbWFzdGVyLWtleS1mb3ItdGhlLXRlc3QtMzI="
    second = await make_receiver(msgspec.structs.replace(settings, privacy=PrivacySettings(
        master_key=other_master, key_store=keys)))
    resp = await second.post("/webhooks/acme", data=body, headers=rx.JSON)
    assert resp.status == 503, await resp.text()
    assert resp.headers["Retry-After"] == str(settings.http.retry_after_s)
    answer = await resp.json()
    assert answer == {"error": "key_store_unavailable",
                      "detail": "the subject's key cannot be opened; retry later"}
    assert len(await rx.read_sealed(kafka_settings, topics)) == 1  # the first one only
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cannot seal")]
    assert said and "previous_master_keys" in said[0]
    assert rx.TEST_MASTER_KEY not in caplog.text and other_master not in caplog.text

"""Kafka with TLS and SASL: every client Parley builds works over SASL_SSL (SCRAM-SHA-512 and
PLAIN) and mutual TLS; a wrong password, CA or client certificate fails fast with one line.

The broker is a private one of this module with a SASL_SSL and an mTLS listener; its
certificates are generated here (tests/kit/certs.py), its SCRAM user is created when the
storage is formatted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestServer

from contracts.topics import Topics
from parley.kafka.clients import KafkaAuthFailed, check_kafka, make_admin, make_consumer, make_producer
from parley.kafka.topics import apply_topics
from parley.process import assemble
from parley.run import run_roles
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings, SourceSettings, StoreSettings
from tests.kit.secure_kafka import SecureKafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "natterly"
SEED = FIXTURES / "chat_initiated_seed.json"
SEED_CHAT = "287146e8-68fd-43c5-b79a-911058bc1c9c"
SEED_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"  # the fixture's own auth_token
REPO = Path(__file__).resolve().parents[2]
FAIL_FAST_S = 15.0  # far below aiokafka's 40 s request timeout and any retry loop


def _env(secure: SecureKafka, prefix: str, **extra: str) -> dict[str, str]:
    """How a container gets its Kafka settings: environment, password from a mounted file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    # An empty file, named: a developer's ./parley.toml in the checkout is not this test's.
    env |= {"PARLEY_CONFIG": os.devnull}
    env |= {"PARLEY_KAFKA__BOOTSTRAP": secure.sasl_ssl, "PARLEY_KAFKA__TOPIC_PREFIX": prefix,
            "PARLEY_KAFKA__PARTITIONS": "3", "PARLEY_KAFKA__REPLICATION_FACTOR": "1",
            "PARLEY_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
            "PARLEY_KAFKA__SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
            "PARLEY_KAFKA__SECURITY__SASL_USERNAME": secure.user,
            "PARLEY_KAFKA__SECURITY__SASL_PASSWORD_FILE": str(secure.password_file),
            "PARLEY_KAFKA__SECURITY__SSL_CAFILE": str(secure.pki.ca_cert)}
    return env | extra


async def _cli(env: dict[str, str], *args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli", *args, env=env, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_ingest_to_projection_and_search_over_sasl_ssl(secure_kafka: SecureKafka,
                                                             unique: str, tmp_path: Path) -> None:
    # The CLI creates the topics over SASL_SSL, configured only through the environment.
    code, out, err = await _cli(_env(secure_kafka, unique), "topics", "apply")
    assert code == 0, err
    assert f"{unique}.events.chat: created" in out

    kafka = secure_kafka.sasl_settings(unique)
    settings = Settings(kafka=kafka, data_dir=str(tmp_path / "data"),
                        store=StoreSettings(url=f"sqlite:///{tmp_path / 'state.db'}"),
                        sources={"acme": SourceSettings(provider="natterly",
                                                        auth_tokens=(SEED_TOKEN,))})
    rt = Runtime.from_settings(settings)
    server = TestServer(assemble(rt, run_roles(rt)))  # receiver, projector, consumers
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url("/")),
                                         timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post("/webhooks/acme", data=SEED.read_bytes(),
                                 headers={"Content-Type": "application/json"}) as resp:
                assert resp.status in (200, 201, 202), await resp.text()
                position = (await resp.json())["position"]
            assert position.startswith(f"{unique}.events.chat:")
            async with http.get(f"/api/chats/{SEED_CHAT}",
                                params={"min_position": position}) as resp:
                assert resp.status == 200, await resp.text()
                chat = await resp.json()
            assert (chat["id"], chat["source"], chat["message_count"]) == (SEED_CHAT, "acme", 1)
            # The search consumer group reads the same record over the same listener.
            deadline = time.monotonic() + 60
            while True:
                async with http.get("/api/search", params={"q": "test"}) as resp:
                    hits = (await resp.json()).get("hits", [])
                if any(SEED_CHAT in msgspec.json.encode(h).decode() for h in hits):
                    break
                assert time.monotonic() < deadline, "search consumer did not index the chat"
                await asyncio.sleep(0.2)  # poll interval
    finally:
        await server.close()
    # Nothing secret reached a record: the receiver strips Natterly's auth_token.
    consumer = make_consumer(kafka, Topics(prefix=unique).chat, group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        values = [r.value for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    assert values and all(SEED_TOKEN.encode() not in v for v in values)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_produce_consume_with_each_sasl_mechanism(secure_kafka: SecureKafka, unique: str,
                                                        mechanism: str) -> None:
    kafka = secure_kafka.sasl_settings(unique, mechanism=mechanism, password=secure_kafka.password)
    await _roundtrip(kafka)


async def test_produce_consume_with_client_certificates(secure_kafka: SecureKafka,
                                                        unique: str) -> None:
    await _roundtrip(secure_kafka.mtls_settings(unique))


async def _roundtrip(kafka: KafkaSettings) -> None:
    topic = Topics(prefix=kafka.topic_prefix)
    await apply_topics(kafka, topic.specs(1))
    producer = make_producer(kafka)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic.chat, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = make_consumer(kafka, topic.chat, group_id=f"{kafka.topic_prefix}.g")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=15_000)
        assert [r.value for rs in batch.values() for r in rs] == [b"hello"]
        await consumer.commit()
        committed = await consumer.committed(next(iter(batch)))
    finally:
        await consumer.stop()
    assert committed == meta.offset + 1


async def test_wrong_password_fails_fast_with_one_line_in_the_cli(secure_kafka: SecureKafka,
                                                                  unique: str,
                                                                  tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    env = _env(secure_kafka, unique, PARLEY_KAFKA__SECURITY__SASL_PASSWORD_FILE=str(wrong))
    t0 = time.monotonic()
    code, _, err = await _cli(env, "topics", "apply")
    assert time.monotonic() - t0 < FAIL_FAST_S
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"parley: error: Kafka authentication failed at "
                                f"{secure_kafka.sasl_ssl}: user 'parley' with SCRAM-SHA-512 was "
                                "refused"), err
    assert "Traceback" not in err and "not-the-password" not in err


async def test_wrong_password_stops_a_server_role_at_start(secure_kafka: SecureKafka,
                                                           unique: str, tmp_path: Path) -> None:
    # `parley receiver` with a wrong password exits 1 at start instead of answering 503 forever.
    env = _env(secure_kafka, unique, PARLEY_KAFKA__SECURITY__SASL_PASSWORD="wrong-password-x",
               PARLEY_HTTP__PORT="0", PARLEY_SOURCES__ACME__PROVIDER="natterly",
               PARLEY_SOURCES__ACME__AUTH_TOKENS=f'["{SEED_TOKEN}"]')
    del env["PARLEY_KAFKA__SECURITY__SASL_PASSWORD_FILE"]  # inline password from the env instead
    t0 = time.monotonic()
    code, _, err = await _cli(env, "receiver")
    assert time.monotonic() - t0 < FAIL_FAST_S
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith(
        "parley: error: Kafka authentication failed"), err
    assert "wrong-password-x" not in err


async def test_untrusted_broker_certificate_is_named(secure_kafka: SecureKafka, unique: str) -> None:
    kafka = secure_kafka.sasl_settings(unique)
    kafka = msgspec.structs.replace(kafka, security=msgspec.structs.replace(
        kafka.security, ssl_cafile=str(secure_kafka.pki.other_ca_cert)))
    admin = make_admin(kafka)
    t0 = time.monotonic()
    with pytest.raises(KafkaAuthFailed, match=r"certificate does not verify .*ssl_cafile"):
        await admin.start()
    await admin.close()
    assert time.monotonic() - t0 < FAIL_FAST_S


async def test_missing_client_certificate_is_named(secure_kafka: SecureKafka, unique: str) -> None:
    kafka = secure_kafka.mtls_settings(unique, with_cert=False)
    with pytest.raises(KafkaAuthFailed, match="refused the client certificate"):
        await check_kafka(kafka)
    producer = make_producer(kafka)
    with pytest.raises(KafkaAuthFailed):  # what a role sees when it starts its producer
        await producer.start()
    await producer.stop()


async def test_unreachable_broker_is_an_outage_not_an_auth_error(secure_kafka: SecureKafka,
                                                                 unique: str) -> None:
    from parley.kafka.launcher import free_ports

    kafka = msgspec.structs.replace(secure_kafka.sasl_settings(unique),
                                    bootstrap=f"127.0.0.1:{free_ports(1)[0]}")
    assert await check_kafka(kafka, timeout_s=5) is False
    assert await check_kafka(secure_kafka.sasl_settings(unique)) is True

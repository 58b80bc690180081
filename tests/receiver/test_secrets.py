"""No configured credential, and no signature, ever reaches Kafka, a log line, a metric label
or an error body — whatever the requests looked like."""

from __future__ import annotations

import logging
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient

from contracts.topics import Topics
from parley.logs import JsonFormatter
from parley.settings import KafkaSettings

pytestmark = pytest.mark.kafka


async def test_no_secret_in_topics_logs_metrics_or_error_bodies(
        rx: ModuleType, receiver: TestClient, kafka_settings: KafkaSettings,  # type: ignore[type-arg]
        topics: Topics, credentials: object, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, aiokafka's debug lines included
    secrets: tuple[str, ...] = credentials.all()  # type: ignore[attr-defined]
    signatures: list[str] = []
    answers: list[bytes] = []

    async def post(source: str, body: bytes, headers: dict[str, str]) -> int:
        resp = await receiver.post(f"/webhooks/{source}", data=body, headers=headers)
        answers.append(await resp.read())
        return resp.status

    token = rx.NATTERLY_TOKENS[0]
    nat = rx.natterly_body()
    # Accepted, every provider, every configured credential.
    for t in rx.NATTERLY_TOKENS:
        assert await post("acme", rx.with_natterly_token(nat, t), rx.JSON) == 200
    for path in rx.golden_files("natterly"):
        assert await post("acme", path.read_bytes(), rx.JSON) == 200, path.name
    cs = rx.chatshipper_body()
    for secret in rx.CHATSHIPPER_SECRETS:
        signatures.append(rx.hub_signature(secret, cs))
        assert await post("shop", cs, rx.JSON | {"X-Hub-Signature": signatures[-1]}) == 200
    std = rx.standard_body()
    for secret in rx.STANDARD_SECRETS:
        headers = rx.standard_headers(secret, std)
        signatures.append(headers["webhook-signature"])
        assert await post("std", std, rx.JSON | headers) == 200
    # Rejected while carrying real credentials in every place they could be echoed.
    truncated = b'{"auth_token": "' + token.encode() + b'", "event": '
    assert await post("acme", truncated, rx.JSON) == 400
    wrong_type = b'{"auth_token": "' + token.encode() + b'", "event": 5}'
    assert await post("acme", wrong_type, rx.JSON) == 400
    assert await post("acme", b'{"auth_token": ["' + token.encode() + b'"]}', rx.JSON) == 401
    assert await post("acme", rx.with_natterly_token(nat, token + "x"), rx.JSON) == 401
    invalid = b'{"id": "' + rx.CHATSHIPPER_SECRETS[0].encode() + b'", "event": 3}'
    signatures.append(rx.hub_signature(rx.CHATSHIPPER_SECRETS[0], invalid))
    assert await post("shop", invalid, rx.JSON | {"X-Hub-Signature": signatures[-1]}) == 400
    assert await post("shop", cs, rx.JSON | {"X-Hub-Signature": "sha1=" + rx.CHATSHIPPER_SECRETS[1]}) == 401
    assert await post(rx.CHATSHIPPER_SECRETS[1].replace("/", "").replace("=", ""), cs, rx.JSON) == 404
    stale = rx.standard_headers(rx.STANDARD_SECRETS[0], std, timestamp=1)
    signatures.append(stale["webhook-signature"])
    assert await post("std", std, rx.JSON | stale) == 401
    assert await post("acme", rx.with_natterly_token(nat, token), {"Content-Type": "text/plain"}) == 415
    metrics = await (await receiver.get("/metrics")).read()

    records = await rx.read_all(kafka_settings, topics)
    assert records
    formatter = JsonFormatter()  # no redaction: the code itself must not log secrets
    log_text = "\n".join(formatter.format(r) for r in caplog.records) + caplog.text
    assert "accepted" in log_text and '"event_id"' in log_text  # the logs were captured
    places = {"topics": b"\n".join((r.key or b"") + b" " + (r.value or b"") for r in records),
              "logs": log_text.encode(), "metrics": metrics, "error bodies": b"\n".join(answers)}
    for place, data in places.items():
        for secret in secrets:
            assert secret.encode() not in data, f"a configured secret appears in {place}"
        for signature in signatures:
            assert signature.encode() not in data, f"a signature appears in {place}"
            digest = signature.removeprefix("sha1=").removeprefix("v1,")
            assert digest.encode() not in data, f"a signature's digest appears in {place}"

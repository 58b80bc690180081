"""Standard Webhooks as the real senders sign them: the ``standardwebhooks`` reference library
(``webhook-*`` headers), the ``svix`` library with Svix's own header names (``svix-*``), and
asymmetric ``v1a`` (Ed25519, ``whpk_`` keys) with several signatures per header and key
rotation — each through the running receiver on a real broker."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import ModuleType

import msgspec
import pytest
import standardwebhooks
import svix.webhooks
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.topics import Topics
from parley.settings import KafkaSettings, SourceSettings

pytestmark = pytest.mark.kafka

SECRET = "whsec_" + base64.b64encode(b"real-signers-test-key-of-32bytes").decode()
CURRENT, NEXT, STRANGER = (Ed25519PrivateKey.generate() for _ in range(3))


def _whpk(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "whpk_" + base64.b64encode(raw).decode()


def _v1a(key: Ed25519PrivateKey, msg_id: str, ts: int, body: bytes) -> str:
    return "v1a," + base64.b64encode(key.sign(f"{msg_id}.{ts}.".encode() + body)).decode()


Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def receiver(make_receiver: Callable[..., Awaitable[Client]], kafka_settings: KafkaSettings,
                   topics: Topics, credentials: object, rx: ModuleType) -> Client:
    settings = rx.receiver_settings(kafka_settings, credentials)
    # One source holding a symmetric secret and two public keys (rotating between them).
    std = SourceSettings(provider="standard", secrets=(SECRET, _whpk(CURRENT), _whpk(NEXT)))
    return await make_receiver(
        msgspec.structs.replace(settings, sources={**settings.sources, "std": std}))


def _body() -> bytes:
    return msgspec.json.encode({"type": "message.created", "timestamp": "2026-01-02T03:04:05Z",
                                "data": {"chat_id": f"chat-{uuid.uuid4().hex[:8]}", "text": "hi"}})


async def _post(client: Client, headers: dict[str, str], body: bytes) -> tuple[int, object]:
    resp = await client.post("/webhooks/std", data=body,
                             headers={"Content-Type": "application/json", **headers})
    return resp.status, await resp.json()


async def test_the_standardwebhooks_library_as_the_signer(receiver: Client) -> None:
    body, msg_id, now = _body(), f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    signature = standardwebhooks.Webhook(SECRET).sign(msg_id, now, body)
    status, answer = await _post(receiver, {
        "webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature}, body)
    assert status == 200 and answer["event_id"] == msg_id, answer  # type: ignore[index]


async def test_svix_with_its_own_header_names_as_the_signer(receiver: Client) -> None:
    body, msg_id, now = _body(), f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    signature = svix.webhooks.Webhook(SECRET).sign(msg_id, now, body.decode())
    headers = {"svix-id": msg_id, "svix-timestamp": str(int(now.timestamp())),
               "svix-signature": signature}
    svix.webhooks.Webhook(SECRET).verify(body, headers)  # what Svix's own receivers accept
    status, answer = await _post(receiver, headers, body)
    assert status == 200 and answer["event_id"] == msg_id, answer  # type: ignore[index]
    # The same names hold the same checks: a changed body or a stale time is still a 401.
    assert (await _post(receiver, headers, body + b" "))[0] == 401
    stale = headers | {"svix-timestamp": str(int(now.timestamp()) - 3600)}
    assert (await _post(receiver, stale, body))[0] == 401
    # Any webhook-* header means the webhook-* family, whole: the families never mix.
    assert (await _post(receiver, headers | {"webhook-id": msg_id}, body))[0] == 401


async def test_v1a_ed25519_with_several_signatures_and_key_rotation(receiver: Client) -> None:
    ts = int(time.time())
    for signer in (CURRENT, NEXT):  # either configured public key
        body, msg_id = _body(), f"msg_{uuid.uuid4().hex}"
        status, answer = await _post(receiver, {
            "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": _v1a(signer, msg_id, ts, body)}, body)
        assert status == 200, answer
    # A sender rotating lists one signature per key; a wrong v1 beside a good v1a passes,
    # and so does a stranger's v1a beside ours.
    body, msg_id = _body(), f"msg_{uuid.uuid4().hex}"
    wrong_v1 = "v1," + base64.b64encode(b"x" * 32).decode()
    several = f"{wrong_v1} {_v1a(STRANGER, msg_id, ts, body)} {_v1a(NEXT, msg_id, ts, body)}"
    status, answer = await _post(receiver, {"webhook-id": msg_id, "webhook-timestamp": str(ts),
                                            "webhook-signature": several}, body)
    assert status == 200, answer
    # Svix's names carry v1a too.
    body, msg_id = _body(), f"msg_{uuid.uuid4().hex}"
    status, answer = await _post(receiver, {"svix-id": msg_id, "svix-timestamp": str(ts),
                                            "svix-signature": _v1a(CURRENT, msg_id, ts, body)},
                                 body)
    assert status == 200, answer


async def test_v1a_signatures_that_must_fail(receiver: Client) -> None:
    ts = int(time.time())
    body, msg_id = _body(), f"msg_{uuid.uuid4().hex}"
    good = _v1a(CURRENT, msg_id, ts, body)
    for headers, what in (
            ({"webhook-signature": _v1a(STRANGER, msg_id, ts, body)}, "a key not configured"),
            ({"webhook-signature": good, "webhook-id": "msg_other"}, "another id"),
            ({"webhook-signature": good.replace("v1a,", "v1a,A")}, "a garbled signature"),
            ({"webhook-signature": " ".join([good] * 9)}, "more than 8 signatures")):
        status, _ = await _post(receiver, {"webhook-id": msg_id, "webhook-timestamp": str(ts),
                                           **headers}, body)
        assert status == 401, what

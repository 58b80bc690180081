"""Construction of aiokafka clients from settings: one place for bootstrap, client id and
security, so every role (receiver, projector, consumers, CLI) connects the same way."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from parley.errors import SettingsError
from parley.settings import KafkaSettings


def common_kwargs(k: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments every aiokafka client takes: bootstrap, client id, TLS and SASL."""
    if not k.bootstrap:
        raise SettingsError("kafka.bootstrap is not set (set it in the config file, or "
                            "PARLEY_KAFKA__BOOTSTRAP; `parley run` starts a local broker instead)")
    kw: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap,
        "client_id": k.client_id,
        "request_timeout_ms": k.request_timeout_ms,
        "security_protocol": k.security.protocol,
    }
    sec = k.security
    if sec.protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(cafile=sec.ssl_cafile)
        if sec.ssl_certfile:
            ctx.load_cert_chain(sec.ssl_certfile, sec.ssl_keyfile)
        kw["ssl_context"] = ctx
    if sec.protocol.startswith("SASL"):
        if not (sec.sasl_mechanism and sec.sasl_username and sec.sasl_password):
            raise SettingsError("kafka.security: SASL needs sasl_mechanism, sasl_username and "
                                "sasl_password")
        kw.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=sec.sasl_username,
                  sasl_plain_password=sec.sasl_password)
    return kw


def make_producer(k: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer with ``acks=all``: a send that returns is durable on every ISR."""
    kw = common_kwargs(k) | {"acks": "all", "enable_idempotence": True}
    kw.update(overrides)
    return AIOKafkaProducer(**kw)


def make_consumer(k: KafkaSettings, *topics: str, group_id: str | None,
                  **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits, starting at the earliest offset when the group is new."""
    kw = common_kwargs(k) | {"group_id": group_id, "enable_auto_commit": False,
                             "auto_offset_reset": "earliest", "isolation_level": "read_committed"}
    kw.update(overrides)
    return AIOKafkaConsumer(*topics, **kw)


def make_admin(k: KafkaSettings, **overrides: Any) -> AIOKafkaAdminClient:
    kw = common_kwargs(k)
    kw.update(overrides)
    return AIOKafkaAdminClient(**kw)

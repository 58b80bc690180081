"""Construction of aiokafka clients from settings: one place for bootstrap, client id and
security, so every role (receiver, projector, consumers, CLI) connects the same way.

A refused TLS handshake or SASL login is a configuration problem, not an outage: aiokafka
reports both as "Unable to bootstrap", so the clients built here re-check a failed start and
raise :class:`KafkaAuthFailed` with one line saying what was refused and which setting to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import AuthenticationFailedError, KafkaConnectionError, KafkaError

from parley.errors import ParleyError, SettingsError
from parley.settings import KafkaSecurity, KafkaSettings


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
        kw["ssl_context"] = ssl_context(sec)
    if sec.protocol.startswith("SASL"):
        password = sec.resolved_sasl_password()  # read now: a rotated Secret file counts
        if not (sec.sasl_mechanism and sec.sasl_username and password):
            raise SettingsError("kafka.security: SASL needs sasl_mechanism, sasl_username and "
                                "sasl_password (or sasl_password_file)")
        kw.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=sec.sasl_username,
                  sasl_plain_password=password)
    return kw


def ssl_context(sec: KafkaSecurity) -> ssl.SSLContext:
    """A client TLS context: verifies the broker against ``ssl_cafile`` (else the system's CAs),
    host names included; presents ``ssl_certfile`` when the broker wants client certificates."""
    try:
        ctx = ssl.create_default_context(cafile=sec.ssl_cafile)
        if sec.ssl_certfile:
            ctx.load_cert_chain(sec.ssl_certfile, sec.ssl_keyfile,
                                password=sec.resolved_ssl_key_password())
    except (OSError, ssl.SSLError) as exc:
        # Which file, never a password (ssl errors name neither the key nor its password).
        files = ", ".join(f"{name}={path}" for name, path in (
            ("ssl_cafile", sec.ssl_cafile), ("ssl_certfile", sec.ssl_certfile),
            ("ssl_keyfile", sec.ssl_keyfile)) if path)
        raise SettingsError(f"kafka.security: cannot load TLS files ({files}): "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
    return ctx


def static_membership(k: KafkaSettings, group_id: str | None) -> dict[str, Any]:
    """Consumer arguments for static group membership, when ``kafka.group_instance_id`` is set.

    The instance id is scoped by Kafka to one group, so one process may use the same id in
    each of its groups. Clients that only ``assign()`` (offset resets, lag peeks) never join a
    group, so the id has no effect on them.
    """
    if group_id is None or not k.group_instance_id:
        return {}
    return {"group_instance_id": k.group_instance_id,
            "session_timeout_ms": k.static_session_timeout_ms}


class KafkaAuthFailed(AuthenticationFailedError, ParleyError):  # type: ignore[misc]
    """A broker answered but refused our TLS handshake or SASL credentials.

    Not retriable: only a configuration change helps. It is a ``KafkaError`` too, so code
    that rides out Kafka errors keeps working, and a ``ParleyError``, so the CLI prints it as
    one line.
    """

    retriable = False

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Kafka authentication failed"


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


async def check_kafka(k: KafkaSettings, *, timeout_s: float = 10.0) -> bool:
    """Log in to the first bootstrap broker that answers, with the configured TLS and SASL.

    True once a broker accepted the connection (and login), False when none could be reached
    (an outage, which callers ride out). Raises :class:`KafkaAuthFailed` when a broker answered
    but refused the certificate exchange or the credentials.
    """
    kw = common_kwargs(k)
    sec = k.security
    for host, port in _addresses(kw["bootstrap_servers"]):
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(
                    host, port, client_id=kw["client_id"], request_timeout_ms=kw["request_timeout_ms"],
                    ssl_context=kw.get("ssl_context"), security_protocol=kw["security_protocol"],
                    sasl_mechanism=kw.get("sasl_mechanism", "PLAIN"),
                    sasl_plain_username=kw.get("sasl_plain_username"),
                    sasl_plain_password=kw.get("sasl_plain_password"))
        except KafkaError as exc:
            if isinstance(exc, AuthenticationFailedError) or getattr(exc, "errno", None) == 58:
                # errno 58: SASL_AUTHENTICATION_FAILED; the broker's text names no secret.
                raise KafkaAuthFailed(
                    f"Kafka authentication failed at {where}: user {sec.sasl_username!r} with "
                    f"{sec.sasl_mechanism} was refused ({getattr(exc, 'description', exc)}); check "
                    "kafka.security.sasl_username and sasl_password / sasl_password_file") from None
            if isinstance(exc.__cause__, ssl.SSLError):  # the broker closed on our certificate
                raise KafkaAuthFailed(
                    f"Kafka TLS handshake failed at {where}: the broker refused the client "
                    f"certificate ({exc.__cause__.reason or exc.__cause__}); check "
                    "kafka.security.ssl_certfile and ssl_keyfile") from None
            continue
        except ssl.SSLCertVerificationError as exc:
            raise KafkaAuthFailed(
                f"Kafka TLS handshake failed at {where}: the broker's certificate does not verify "
                f"({exc.verify_message}); check kafka.security.ssl_cafile") from None
        except ssl.SSLError as exc:
            raise KafkaAuthFailed(
                f"Kafka TLS handshake failed at {where} ({exc.reason or exc}); check "
                "kafka.security.protocol (is this a TLS listener?) and the ssl_* files") from None
        except (OSError, TimeoutError):
            continue  # not reachable: an outage, not a configuration problem
        conn.close()
        return True
    return False


class _ExplainsFailedStart:
    """Mixin: when ``start()`` cannot bootstrap, ask :func:`check_kafka` whether it is a
    refused login or handshake, and raise that instead of aiokafka's generic error."""

    _parley_kafka: KafkaSettings

    async def start(self) -> None:
        try:
            await super().start()  # type: ignore[misc]
        except KafkaConnectionError as exc:
            if self._parley_kafka.security.protocol != "PLAINTEXT":
                try:
                    await check_kafka(self._parley_kafka)
                except KafkaAuthFailed as auth:
                    raise auth from exc
            raise


class _Producer(_ExplainsFailedStart, AIOKafkaProducer):  # type: ignore[misc]
    pass


class _Consumer(_ExplainsFailedStart, AIOKafkaConsumer):  # type: ignore[misc]
    async def stop(self) -> None:
        """Stop, without aiokafka's stray CancelledError (aio-libs/aiokafka#647).

        With the broker gone, ``Fetcher.close()`` cancels a fetch task that is retrying and
        then awaits it, re-raising that task's CancelledError to the caller — whose shutdown
        then ends in a traceback. When the caller itself is not being cancelled, finish the
        close that was cut short (cancel the other fetch tasks, close the connections).
        """
        try:
            await super().stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # a real cancellation of the caller
            fetcher = self._fetcher
            if fetcher is not None:
                pending = list(fetcher._pending_tasks)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            await self._client.close()


class _Admin(_ExplainsFailedStart, AIOKafkaAdminClient):  # type: ignore[misc]
    pass


async def start_unless_stopped(consumer: AIOKafkaConsumer, stop: asyncio.Event) -> bool:
    """Start a group consumer, unless ``stop`` is set first: True once started; False when
    stopped first, after stopping the consumer. A failed start raises, the consumer stopped.

    A subscribed consumer's ``start()`` returns only once the group assigned it partitions,
    which never happens while the broker is away; a shutdown must not wait for that.
    """
    starting = asyncio.ensure_future(consumer.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the caller is cancelled: no start left running behind it
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.wait({starting})
    if starting.cancelled() or starting.exception() is not None:
        await consumer.stop()  # release what the interrupted or failed start opened
        if not starting.cancelled():
            starting.result()  # raises the start's error
        return False
    return True


def make_producer(k: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer with ``acks=all``: a send that returns is durable on every ISR."""
    kw = common_kwargs(k) | {"acks": "all", "enable_idempotence": True}
    kw.update(overrides)
    producer = _Producer(**kw)
    producer._parley_kafka = k
    return producer


def make_consumer(k: KafkaSettings, *topics: str, group_id: str | None,
                  **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits, starting at the earliest offset when the group is new;
    a static group member when ``kafka.group_instance_id`` is set (see :func:`static_membership`)."""
    kw = common_kwargs(k) | {"group_id": group_id, "enable_auto_commit": False,
                             "auto_offset_reset": "earliest", "isolation_level": "read_committed"}
    kw |= static_membership(k, group_id)
    kw.update(overrides)
    consumer = _Consumer(*topics, **kw)
    consumer._parley_kafka = k
    return consumer


@contextlib.asynccontextmanager
async def reading_consumer(k: KafkaSettings, **overrides: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started group-less consumer (for ``assign`` and reads to an end offset), stopped
    when the block ends, also when its start failed or was cancelled (Kafka down).

    Its fetches wait at most 10 ms for data: offsets requests queue behind a fetch on the
    same connection, and a long poll (500 ms by default) would hold each one up."""
    consumer = make_consumer(k, group_id=None, **({"fetch_max_wait_ms": 10} | overrides))
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


def make_admin(k: KafkaSettings, **overrides: Any) -> AIOKafkaAdminClient:
    kw = common_kwargs(k)
    kw.update(overrides)
    admin = _Admin(**kw)
    admin._parley_kafka = k
    return admin

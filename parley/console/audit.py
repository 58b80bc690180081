"""Console actions: each has an id, is done at most once, and is audited.

An action's id is made when the console offers it (a confirmation page): the time it was
issued and 64 random bits. Posting it runs :func:`run_once`:

1. the audit topic (``<prefix>.ops.audit``) is read from the id's issue time for a record of
   that id: found, the action was done already, and its record is the answer (a double
   click, a resubmitted form, a reload: one effect);
2. otherwise the action runs, and its outcome — who (:func:`actor_of`: a label of the API
   token, never the token), what, on what, when, and how it ended — is written to the audit
   topic (acks=all) and to the log (``console action``).

Two posts of one id that race each other both pass step 1; the actions themselves are
bounded by what the operator confirmed (dead letters up to an offset), so the second changes
nothing more, and readers keep the first record of an id. An id older than
:data:`MAX_ACTION_AGE` is refused (the page was left open too long: reload it).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition

from contracts.errors import ContractError
from contracts.ops import AuditOutcome, AuditRecord, decode_audit, encode_audit
from contracts.topics import Topics
from parley.kafka.clients import make_producer, reading_consumer
from parley.kafka.topics import ensure_topics
from parley.secrets import mask_secrets
from parley.settings import KafkaSettings

__all__ = [
    "MAX_ACTION_AGE",
    "ActionRefused",
    "actor_of",
    "find_action",
    "issued_at",
    "new_action_id",
    "run_once",
]

log = logging.getLogger("parley.console.audit")

#: How long an offered action may wait for its confirmation.
MAX_ACTION_AGE = timedelta(hours=24)
_ACTION_ID = re.compile(r"(\d{13})-([0-9a-f]{16})")
# How far before its issue time an action's record is looked for (clock skew between the
# process that offered it and the broker's timestamps).
_SKEW = timedelta(minutes=5)


class ActionRefused(Exception):
    """An action refused before anything changed (bad input): its text is for the operator."""


def actor_of(token: bytes | None) -> str:
    """Who acted: ``token sha256:<8 hex>`` (a label that tells the configured tokens apart
    and cannot be turned back into one), or ``open console`` without tokens."""
    if not token:
        return "open console"
    return f"token sha256:{hashlib.sha256(token).hexdigest()[:8]}"


def new_action_id(now: datetime | None = None) -> str:
    """A fresh action id: its issue time in milliseconds, then 16 random hex digits."""
    at = now or datetime.now(UTC)
    return f"{int(at.timestamp() * 1000):013d}-{secrets.token_hex(8)}"


def issued_at(action_id: str, now: datetime | None = None) -> datetime:
    """When ``action_id`` was issued; :class:`ActionRefused` when it is malformed, from the
    future or older than :data:`MAX_ACTION_AGE`."""
    found = _ACTION_ID.fullmatch(action_id)
    if found is None:
        raise ActionRefused("this form carries no valid action id: reload the page")
    at = datetime.fromtimestamp(int(found.group(1)) / 1000, UTC)
    now = now or datetime.now(UTC)
    if at > now + _SKEW or now - at > MAX_ACTION_AGE:
        raise ActionRefused("this confirmation has expired: reload the page and confirm again")
    return at


async def find_action(k: KafkaSettings, topics: Topics, action_id: str,
                      timeout_s: float = 10.0) -> AuditRecord | None:
    """The first audit record of ``action_id`` (read from its issue time on), or None."""
    since = issued_at(action_id) - _SKEW
    async with reading_consumer(k, isolation_level="read_uncommitted") as consumer:
        if topics.audit not in await consumer.topics():
            return None
        tp = TopicPartition(topics.audit, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        found = (await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)}))[tp]
        if found is None:
            return None
        consumer.seek(tp, found.offset)
        key = action_id.encode()
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"the audit topic gave nothing within {timeout_s:g} s")
            for rec in batch.get(tp, []):
                if rec.key == key:
                    try:
                        return decode_audit(rec.value or b"")
                    except ContractError:
                        continue
    return None


async def _write(k: KafkaSettings, topics: Topics, record: AuditRecord) -> None:
    await ensure_topics(k, [topics.ops_specs()[1]])
    producer = make_producer(k)
    try:
        await producer.start()
        await producer.send_and_wait(topics.audit, encode_audit(record),
                                     key=record.action_id.encode(),
                                     timestamp_ms=int(record.at.timestamp() * 1000))
    finally:
        await producer.stop()


Action = Callable[[], Awaitable[tuple[AuditOutcome, str]]]


async def run_once(k: KafkaSettings, topics: Topics, *, action_id: str, actor: str,
                   action: str, target: Mapping[str, str], do: Action,
                   secrets_: Iterable[str] = ()) -> tuple[AuditRecord, bool]:
    """Run ``do`` unless ``action_id`` is in the audit already (see the module docstring);
    the record of the action, and whether it ran now. ``do`` answers its outcome and one
    line; :class:`ActionRefused` is a refusal, any other exception a failure (its text,
    with ``secrets_`` masked, is the detail)."""
    done = await find_action(k, topics, action_id)
    if done is not None:
        return done, False
    outcome: AuditOutcome
    try:
        outcome, detail = await do()
    except ActionRefused as exc:
        outcome, detail = "refused", str(exc)
    except Exception as exc:  # noqa: BLE001 - the operator sees why; the audit keeps it
        outcome, detail = "failed", f"{type(exc).__name__}: {exc}"
    record = AuditRecord(action_id=action_id, actor=actor, action=action, target=dict(target),
                         at=datetime.now(UTC), outcome=outcome,
                         detail=mask_secrets(detail, secrets_)[:500])
    log.info("console action", extra={"action_id": record.action_id, "actor": record.actor,
                                      "action": record.action, "target": record.target,
                                      "outcome": record.outcome, "detail": record.detail})
    await _write(k, topics, record)
    return record, True

"""Operations records and their topics: rejected webhooks (a week, bounded) and the audit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.errors import ContractError
from contracts.ops import (
    AuditRecord,
    Rejection,
    decode_audit,
    decode_rejection,
    encode_audit,
    encode_rejection,
)
from contracts.topics import REJECTIONS_RETENTION_BYTES, Topics


def test_ops_topics_are_named_under_the_prefix_with_bounded_rejections_and_a_kept_audit() -> None:
    topics = Topics(prefix="p")
    rejections, audit = topics.ops_specs()
    assert (rejections.name, audit.name) == ("p.ops.rejections", "p.ops.audit")
    assert (topics.rejections, topics.audit) == (rejections.name, audit.name)
    assert rejections.partitions == audit.partitions == 1
    conf = rejections.configs(3)
    assert conf["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert conf["retention.bytes"] == str(REJECTIONS_RETENTION_BYTES)
    assert conf["cleanup.policy"] == "delete"
    assert audit.configs(3)["retention.ms"] == "-1" and "retention.bytes" not in audit.configs(3)
    # The log's topics are untouched: no retention.bytes config appears on them.
    assert all("retention.bytes" not in s.configs(3) for s in topics.specs(3))


def test_records_round_trip_and_garbage_is_a_contract_error() -> None:
    at = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
    r = Rejection(source="shop", status=401, error="unauthorized", reason="no_matching_secret",
                  at=at, field="X-Hub-Signature")
    assert decode_rejection(encode_rejection(r)) == r
    a = AuditRecord(action_id="a1", actor="token sha256:00000000", action="dlq.skip",
                    target={"group": "search", "key": "chat-1"}, at=at, outcome="done",
                    detail="skipped 1 entry")
    assert decode_audit(encode_audit(a)) == a
    for garbage in (b"", b"[1]", b'{"source": 3}'):
        with pytest.raises(ContractError):
            decode_rejection(garbage)
        with pytest.raises(ContractError):
            decode_audit(garbage)

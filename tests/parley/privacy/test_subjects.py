"""Which subject's key seals a record (parley/privacy/subjects.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from contracts.ingest import parse_webhook
from parley.privacy import parent_of, subject_of
from tests.kit.receiver_app import FIXTURES


@pytest.mark.parametrize(("provider", "aggregate", "key", "subject"), [
    ("natterly", "chat", "C1", "natterly:chat:C1"),
    ("natterly", "visitor", "V1", "natterly:visitor:V1"),
    ("natterly", "agent", "U1", "natterly:agent:U1"),
    ("natterly", "other", "natterly-e1", "natterly:event:natterly-e1"),
    ("chatshipper", "chat", "Y", "chatshipper:conversation:Y"),
    ("chatshipper", "visitor", "X", "chatshipper:contact:X"),
    ("chatshipper", "agent", "U", "chatshipper:user:U"),
    ("standard", "chat", "9", "standard:chat:9"),
])
def test_subject_of(provider: str, aggregate: str, key: str, subject: str) -> None:
    assert subject_of(provider, aggregate, key) == subject


@pytest.mark.parametrize(("fixture", "parent"), [
    ("natterly/chat_initiated_identified_visitor.json",
     "natterly:visitor:c4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"),
    ("chatshipper/message_create_contact_chat_seed.json",
     "chatshipper:contact:5c1a96f7abcdb128d0e90e8e"),
    ("natterly/edge_no_payload.json", None),
])
def test_a_chat_names_its_visitor(fixture: str, parent: str | None) -> None:
    provider = fixture.split("/")[0]
    body = (FIXTURES / fixture).read_bytes()
    env = parse_webhook(provider, "src", body, received_at=datetime.now(UTC))
    assert parent_of(provider, env.aggregate, msgspec.json.decode(bytes(env.body))) == parent
    # a visitor's own records need no link
    assert parent_of(provider, "visitor", msgspec.json.decode(bytes(env.body))) is None

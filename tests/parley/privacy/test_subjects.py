"""Which subject's key seals a record (parley/privacy/subjects.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from contracts.ingest import parse_webhook
from parley.privacy import parent_of, subject_of
from parley.privacy.subjects import parent_in
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


# --------------------------------------------------------------- parent_in (the fast path)
_GOLDENS = sorted(p for p in FIXTURES.rglob("*.json")
                  if p.parent.name in ("natterly", "chatshipper"))


@pytest.mark.parametrize("path", _GOLDENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_parent_in_agrees_with_parent_of_on_every_golden(path: Path) -> None:
    provider, body = path.parent.name, path.read_bytes()
    for aggregate in ("chat", "visitor"):
        assert parent_in(provider, aggregate, body) == parent_of(
            provider, aggregate, msgspec.json.decode(body))


_IDS = st.one_of(st.none(), st.sampled_from(["", "v1", "c-2"]), st.integers(0, 3),
                 st.lists(st.just("v1"), max_size=1))


def _shape(members: dict[str, st.SearchStrategy[object]]) -> st.SearchStrategy[object]:
    """An object with any subset of ``members`` (three times in four), or not an object."""
    objects = st.fixed_dictionaries({}, optional=members)
    return st.one_of(objects, objects, objects, _IDS)


_VISITOR = _shape({"uuid": _IDS, "name": st.just("Ann")})
_NATTERLY = _shape({"payload": _shape({
    "chat": _shape({"visitor": _VISITOR, "session": _shape({"visitor": _VISITOR}),
                    "uuid": st.just("c1")}),
    "visitor": _VISITOR})})
_CONTACT = st.one_of(_IDS, _shape({"id": _IDS, "name": st.just("Ann")}))
_CONVERSATION = _shape({"contact": _CONTACT, "id": st.just("conv")})
_CHATSHIPPER = _shape({"data": _shape({
    "conversation": _CONVERSATION, "message": _shape({"conversation": _CONVERSATION})})})


@settings(max_examples=300, deadline=None)
@given(natterly=_NATTERLY, chatshipper=_CHATSHIPPER)
@example(natterly={"payload": {"chat": {"visitor": {}}, "visitor": {"uuid": "v1"}}},
         chatshipper={"data": {"conversation": {}, "message": {"conversation": {
             "contact": "v1"}}}})
@example(natterly={"payload": {"chat": {"session": {"visitor": {"uuid": "v1"}}}}},
         chatshipper={"data": {"conversation": {"id": "conv"}, "message": {"conversation": {
             "contact": "v1"}}}})
def test_parent_in_agrees_with_parent_of_on_any_shape(natterly: object,
                                                       chatshipper: object) -> None:
    """Members of every type, missing, null, empty objects: the fast path either gives
    parent_of's answer or hands the body to it."""
    for provider, tree in (("natterly", natterly), ("chatshipper", chatshipper)):
        assert parent_in(provider, "chat", msgspec.json.encode(tree)) == parent_of(
            provider, "chat", tree), (provider, tree)


def test_parent_in_of_a_body_that_is_not_json_is_none() -> None:
    assert parent_in("natterly", "chat", b"{not json") is None

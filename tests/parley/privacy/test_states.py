"""Sealed state-topic values (parley/privacy/states.py): the personal parts of a chat, message
or visitor state are sealed under its subject's key; the facts stay readable; opening with the
key restores the value byte for byte, and without it (a forgotten subject) yields the facts."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from contracts.domain import AgentRef, Author, Location, PageView, VisitorRef
from contracts.state import AgentState, ChatState, Erasure, MessageState, VisitorState
from contracts.state_change import decode_state_change, encode_state_change
from parley.privacy import MasterKeys, MemoryKeyStore
from parley.privacy.master import new_master_key, parse_master_key
from parley.privacy.ring import KeyRing
from parley.privacy.seal import subject_in
from parley.privacy.states import StateSealer, open_state, seal_state, state_subject

AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
PERSONAL = ("Priya Patel", "priya@example.org", "Manchester", "where is my order",
            "Late parcel", "https://shop.example/orders/10442")
COVERS = [("parley.events.chat", 3, 41)]

CHAT = ChatState(id="C1", provider="natterly", source="acme", status="active",
                 subject="Late parcel", visitor=VisitorRef(id="V1", name="Priya Patel"),
                 agent=AgentRef(id="A1", name="Jenny"), location=Location(city="Manchester"),
                 initiated_at=AT, message_count=2)
MESSAGE = MessageState(id="M1", chat_id="C1", text="where is my order",
                       author=Author(role="visitor", name="Priya Patel", id="V1"), posted_at=AT)
VISITOR = VisitorState(id="V1", name="Priya Patel", email="priya@example.org",
                       first_seen=AT, chats=("C1",),
                       pages=(PageView(url="https://shop.example/orders/10442", at=AT),))
CASES = [("chat", "C1", CHAT), ("message", "C1/M1", MESSAGE), ("visitor", "V1", VISITOR)]


def _ring() -> KeyRing:
    return KeyRing(MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "test"))))


def _value(kind: str, id: str, state: object) -> bytes:
    return encode_state_change(kind, id, COVERS, msgspec.json.encode(state))


def _readable(data: bytes) -> list[str]:
    return [s for s in PERSONAL if s.encode() in data]


@pytest.mark.parametrize(("kind", "id", "state"), CASES, ids=[c[0] for c in CASES])
async def test_a_sealed_state_keeps_its_facts_and_opens_byte_for_byte(
        kind: str, id: str, state: object) -> None:
    ring = _ring()
    plain = _value(kind, id, state)
    assert _readable(plain)
    sealed = await seal_state(ring, plain, "natterly")
    assert _readable(sealed) == []
    subject = subject_in(sealed)
    assert subject == state_subject(kind, id, "natterly")
    facts = decode_state_change(sealed)  # an old reader, without keys: a valid state change
    assert (facts.kind, facts.id, facts.version) == (kind, id, 42)
    assert facts.state.id == id.rpartition("/")[2]
    reader = KeyRing(ring.store)  # another process: the same key store, its own cache
    await reader.load([subject])  # type: ignore[list-item]
    assert open_state(reader, sealed) == plain


async def test_the_facts_filters_read_stay_readable() -> None:
    sealed = await seal_state(_ring(), _value("chat", "C1", CHAT), "natterly")
    chat = decode_state_change(sealed).state
    assert isinstance(chat, ChatState)
    assert (chat.status, chat.source, chat.provider, chat.message_count, chat.initiated_at) == (
        "active", "acme", "natterly", 2, AT)
    assert chat.agent == AgentRef(id="A1", name="Jenny")  # staff: not the data subject
    assert chat.visitor == VisitorRef(id="V1")
    assert (chat.subject, chat.location) == (None, None)


@pytest.mark.parametrize(("kind", "id", "state"), CASES, ids=[c[0] for c in CASES])
async def test_with_its_key_destroyed_a_state_opens_to_its_facts(
        kind: str, id: str, state: object) -> None:
    ring = _ring()
    sealed = await seal_state(ring, _value(kind, id, state), "natterly")
    subject = subject_in(sealed)
    assert subject is not None and await ring.store.destroy(subject)
    ring.forget(subject)
    await ring.load([subject])
    opened = open_state(ring, sealed)
    assert _readable(opened) == []
    assert b'"sealed"' not in opened and b'"subject":"natterly' not in opened
    assert decode_state_change(opened).id == id


async def test_a_sealed_state_moved_to_another_record_does_not_open() -> None:
    ring = _ring()
    sealed = await seal_state(ring, _value("chat", "C1", CHAT), "natterly")
    await ring.load([subject_in(sealed)])  # type: ignore[list-item]
    moved = sealed.replace(b'"version":42', b'"version":43', 1)
    assert _readable(open_state(ring, moved)) == []


async def test_states_without_personal_parts_and_old_values_stay_as_they_are() -> None:
    ring = _ring()
    erased = msgspec.structs.replace(CHAT, subject=None, location=None,
                                     visitor=VisitorRef(id="V1"),
                                     erasure=Erasure(id="E1", at=AT))
    unchanged = [_value("agent", "A1", AgentState(id="A1", name="Jenny", status="online")),
                 _value("chat", "C1", erased),
                 _value("message", "C1/M2", MessageState(id="M2", chat_id="C1", deleted=True))]
    for value in unchanged:
        assert await seal_state(ring, value, "natterly") == value
    plain = _value("chat", "C1", CHAT)
    assert await seal_state(ring, plain, None) == plain  # no provider: no subject
    assert open_state(ring, plain) == plain  # written before sealing: read as it is
    assert await ring.store.get(state_subject("chat", "C1", "natterly")) is None  # type: ignore[arg-type]


def test_subjects_are_the_aggregates_the_forget_destroys() -> None:
    assert state_subject("chat", "C1", "natterly") == "natterly:chat:C1"
    assert state_subject("message", "C1/M1", "chatshipper") == "chatshipper:conversation:C1"
    assert state_subject("visitor", "session:S1", "natterly") == "natterly:visitor:session:S1"
    assert state_subject("agent", "A1", "natterly") is None


async def test_a_mangled_seal_leaves_the_facts_to_read() -> None:
    ring = _ring()
    sealed = await seal_state(ring, _value("chat", "C1", CHAT), "natterly")
    await ring.load([subject_in(sealed)])  # type: ignore[list-item]
    mangled = sealed.replace(b'"sealed":"', b'"sealed":"!', 1)  # not base64 any more
    assert open_state(ring, mangled) == mangled
    assert decode_state_change(mangled).state.id == "C1"  # its facts, no personal string
    assert _readable(mangled) == []


async def test_a_batch_creates_the_keys_its_subjects_lack_and_none_for_erased_states() -> None:
    ring = _ring()
    sealer = StateSealer(ring)
    erased = msgspec.structs.replace(CHAT, id="C9", subject=None, location=None,
                                     visitor=VisitorRef(id="V1"), erasure=Erasure(id="E1", at=AT))
    batch = [(_value(kind, id, state), "natterly") for kind, id, state in CASES]
    batch.append((_value("chat", "C9", erased), "natterly"))
    sealed = await sealer.seal(batch)
    assert [_readable(v) for v in sealed] == [[], [], [], []]
    assert sealed[3] == batch[3][0]  # erased: nothing to seal
    assert await ring.store.get("natterly:chat:C9") is None  # and no key made for it
    for subject in ("natterly:chat:C1", "natterly:visitor:V1"):
        assert await ring.store.get(subject) is not None
    reader = KeyRing(ring.store)
    await reader.load(s for v in sealed if (s := subject_in(v)) is not None)
    assert [open_state(reader, v) for v in sealed] == [v for v, _ in batch]
    assert await sealer.seal(batch[:1]) != sealed[:1]  # a fresh nonce each time, same key


async def test_a_forgotten_subject_gets_no_new_key_and_its_states_go_out_as_facts() -> None:
    """Between a forget destroying the keys and the projector folding its ``forgotten``
    record, the projection still holds the personal data; a state published then must not
    be sealed under a new key (readable until compaction) but carry its facts only."""
    ring = _ring()
    sealer = StateSealer(ring)
    value = _value("chat", "C1", CHAT)
    first = await sealer.seal([(value, "natterly")])
    assert _readable(first[0]) == [] and subject_in(first[0]) == "natterly:chat:C1"
    assert await ring.store.destroy("natterly:chat:C1")
    ring.forget("natterly:chat:C1")
    [after] = await sealer.seal([(value, "natterly")])
    assert await ring.store.get("natterly:chat:C1") is None  # no new generation
    assert subject_in(after) is None and _readable(after) == []
    assert decode_state_change(after).state.id == "C1"  # the facts, readable
    # Sealing anew once the receiver gave the subject a new key (a new webhook of it).
    await ring.store.get_or_create("natterly:chat:C1")
    [again] = await sealer.seal([(value, "natterly")])
    assert subject_in(again) == "natterly:chat:C1" and _readable(again) == []

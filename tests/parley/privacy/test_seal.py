"""Sealing and opening records (parley/privacy/seal.py, facts.py, ring.py) on every golden
webhook: opened with the key, the body is back byte for byte; with the key gone, the record
still normalises, to its facts, and no personal string is readable anywhere in it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from contracts.envelope import Envelope, decode_envelope, encode_envelope
from contracts.ingest import parse_webhook
from contracts.normalise import normalise
from parley.privacy import KeyStoreUnavailable, MasterKeys, MemoryKeyStore
from parley.privacy.keys_sqlite import SqliteKeyStore
from parley.privacy.master import new_master_key, parse_master_key
from parley.privacy.ring import KeyRing
from tests.kit.receiver_app import FIXTURES

GOLDENS = sorted(p for p in FIXTURES.rglob("*.json") if p.parent.name in ("natterly", "chatshipper"))
# Agents' names (ChatShipper users, Natterly users) are kept: staff, not the data subject.
PERSONAL = ("Priya Patel", "priya@example.org", "81.2.69.160", "Manchester", "ORD-10442",
            "Hi, where is my order", "Hi Jenny, how can I help",
            "Maarten de Vries", "m.devries@example.nl", "Question about delivery")


def _ring(clock: list[float] | None = None) -> KeyRing:
    store = MemoryKeyStore(MasterKeys(parse_master_key(new_master_key(), "test")))
    return KeyRing(store, ttl_s=10.0, clock=(lambda: clock[0]) if clock else __import__("time").monotonic)


def _envelope(path: Path) -> Envelope:
    return parse_webhook(path.parent.name, "src", path.read_bytes(),
                         received_at=datetime(2026, 12, 7, tzinfo=UTC))


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_every_golden_seals_opens_and_folds_without_its_key(path: Path) -> None:
    ring = _ring()
    plain = _envelope(path)
    record = encode_envelope(await ring.seal(plain))
    for text in PERSONAL:
        assert text.encode() not in record, text
    stored = decode_envelope(record)
    await ring.load([stored.subject])  # type: ignore[list-item]
    assert ring.open(stored) == msgspec.structs.replace(plain, subject=stored.subject)
    assert await ring.store.destroy(stored.subject)  # type: ignore[arg-type]
    ring.forget(stored.subject)  # type: ignore[arg-type]
    await ring.load([stored.subject])  # type: ignore[list-item]
    facts = ring.open(stored)
    assert isinstance(facts.sealed, msgspec.UnsetType)
    assert (facts.event_id, facts.key, facts.occurred_at, facts.event_type) == (
        plain.event_id, plain.key, plain.occurred_at, plain.event_type)
    normalise(facts)  # the facts still normalise: no error, no dead letter


async def test_the_chat_keeps_its_facts_when_its_key_is_gone() -> None:
    ring = _ring()
    plain = _envelope(FIXTURES / "natterly" / "chat_initiated_identified_visitor.json")
    stored = decode_envelope(encode_envelope(await ring.seal(plain)))
    assert stored.subject == "natterly:chat:5d2f8c1e-3a4b-4c6d-8e7f-9a0b1c2d3e4f"
    assert await ring.store.linked("natterly:visitor:c4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70") == [
        stored.subject]
    await ring.store.destroy(stored.subject)  # type: ignore[arg-type]
    facts = await _ring_after_destroy(ring, stored)
    full, redacted = normalise(plain), normalise(facts)
    assert [type(e) for e in full] == [type(e) for e in redacted]
    body = msgspec.json.decode(bytes(facts.body))
    chat = body["payload"]["chat"]
    assert chat["status"] == "Initiated" and chat["initiated_at"] == 1700000000
    assert chat["visitor"] == {"uuid": "c4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70", "anonymous": False}
    assert [m["uuid"] for m in body["payload"]["messages"]] == [
        "a1b2c3d4-0001-4e5f-8a9b-0c1d2e3f4a5b", "a1b2c3d4-0002-4e5f-8a9b-0c1d2e3f4a5b"]
    assert "text" not in body["payload"]["messages"][0] and "ip_address" not in chat


async def _ring_after_destroy(ring: KeyRing, stored: Envelope) -> Envelope:
    ring.forget(stored.subject)  # type: ignore[arg-type]
    return await ring.open_one(stored)


async def test_a_destroyed_key_stops_opening_within_the_ttl() -> None:
    clock = [0.0]
    ring = _ring(clock)
    other = KeyRing(ring.store, ttl_s=10.0, clock=lambda: clock[0])  # another process
    stored = decode_envelope(encode_envelope(await ring.seal(
        _envelope(FIXTURES / "natterly" / "chat_initiated_identified_visitor.json"))))
    assert b"Priya" in bytes((await other.open_one(stored)).body)
    await ring.store.destroy(stored.subject)  # type: ignore[arg-type]
    clock[0] = 9.0
    assert b"Priya" in bytes((await other.open_one(stored)).body)  # cached, within the TTL
    clock[0] = 10.5
    assert b"Priya" not in bytes((await other.open_one(stored)).body)


async def test_a_tampered_or_moved_seal_opens_to_facts() -> None:
    ring = _ring()
    stored = decode_envelope(encode_envelope(await ring.seal(
        _envelope(FIXTURES / "natterly" / "chat_initiated_identified_visitor.json"))))
    moved = msgspec.structs.replace(stored, event_id="another-event")
    assert b"Priya" not in bytes((await ring.open_one(moved)).body)


async def test_an_unreachable_key_store_seals_nothing() -> None:
    ring = _ring()
    assert isinstance(ring.store, MemoryKeyStore)
    ring.store.available = False
    with pytest.raises(KeyStoreUnavailable):
        await ring.seal(_envelope(FIXTURES / "natterly" / "chat_initiated_seed.json"))


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_fast_facts_equal_the_walked_facts(path: Path) -> None:
    """The Structs generated from a fact schema keep exactly what the Python walk keeps."""
    from parley.privacy import facts

    provider = path.parent.name
    body = bytes(_envelope(path).body)
    tree = msgspec.json.decode(body)
    walked = facts._keep(tree, facts._SCHEMAS[provider])
    fast = msgspec.json.decode(facts.facts_of(provider, body))
    assert fast == walked
    try:
        facts._FAST[provider].decode(body)
    except msgspec.ValidationError:
        pytest.skip("this body takes the slow path")  # counted below, not hidden


def test_an_unexpected_shape_takes_the_slow_path_and_keeps_nothing_personal() -> None:
    from parley.privacy.facts import facts_of

    body = (b'{"event":"ChatRated","payload":{"chat":{"uuid":"c1","rating":{"comment":"awful, '
            b'call me on 0700"},"city":"Leeds","visitor":[1,{"uuid":"v1","name":"Ann"}]},'
            b'"new_thing":{"text":"hi"}},"timestamp":99999999999999999999999}')
    assert msgspec.json.decode(facts_of("natterly", body)) == {
        "event": "ChatRated", "timestamp": 99999999999999999999999,
        "payload": {"chat": {"uuid": "c1", "visitor": [{"uuid": "v1"}]}}}
    assert facts_of("natterly", b"[1, 2]") == b"{}"


async def test_a_chat_without_a_visitor_id_is_linked_when_a_later_webhook_names_one() -> None:
    ring = _ring()
    seed = FIXTURES / "natterly" / "chat_initiated_seed.json"
    first = await ring.seal(_envelope(seed))  # an anonymous visitor: no uuid yet
    assert first.subject == "natterly:chat:287146e8-68fd-43c5-b79a-911058bc1c9c"
    later = msgspec.json.decode(seed.read_bytes())
    later["event"], later["timestamp"] = "ChatAccepted", later["timestamp"] + 60
    later["payload"]["chat"]["visitor"]["uuid"] = "v-known-later"
    second = await ring.seal(parse_webhook("natterly", "src", msgspec.json.encode(later),
                                           received_at=datetime(2026, 12, 7, tzinfo=UTC)))
    assert second.subject == first.subject  # one chat, one key, before and after
    assert await ring.store.linked("natterly:visitor:v-known-later") == [first.subject]


async def _sqlite_ring_counting_writes(tmp_path: Path, clock: list[float] | None = None
                                       ) -> tuple[SqliteKeyStore, KeyRing, list[str]]:
    """A ring on an open SQLite key store, and the list its write transactions go to: one
    entry per BEGIN, or per write statement outside a transaction (an autocommit)."""
    store = SqliteKeyStore(tmp_path / "keys.db", MasterKeys(parse_master_key(new_master_key(), "t")))
    await store.open()
    writes: list[str] = []
    db = store._db
    assert db is not None
    db.set_trace_callback(lambda sql: writes.append(sql) if not db.in_transaction and (
        sql.startswith(("BEGIN", "INSERT", "UPDATE", "DELETE"))) else None)
    ring = KeyRing(store, ttl_s=10.0, clock=lambda: clock[0]) if clock else KeyRing(store)
    return store, ring, writes


async def test_first_webhooks_naming_their_visitors_share_durable_commits(tmp_path: Path) -> None:
    """Twenty chats' first webhooks at once, each naming its visitor: their keys and their
    links are written in a couple of group-committed transactions, not one per link."""
    store, ring, writes = await _sqlite_ring_counting_writes(tmp_path)
    template = msgspec.json.decode(
        (FIXTURES / "natterly" / "chat_initiated_identified_visitor.json").read_bytes())
    envelopes = []
    for n in range(20):
        template["payload"]["chat"]["uuid"] = f"chat-{n}"
        template["payload"]["chat"]["visitor"]["uuid"] = f"visitor-{n}"
        envelopes.append(parse_webhook("natterly", "src", msgspec.json.encode(template),
                                       received_at=datetime(2026, 12, 7, tzinfo=UTC)))
    await asyncio.gather(*(ring.seal(env) for env in envelopes))
    for n in range(20):
        assert await store.linked(f"natterly:visitor:visitor-{n}") == [f"natterly:chat:chat-{n}"]
    assert 1 <= len(writes) <= 3, writes  # creations, then the links with any later ones
    await ring.close()


async def test_a_chats_first_webhook_writes_its_key_and_its_link_in_one_commit(
        tmp_path: Path) -> None:
    """One chat alone (nothing to share a group commit with): its key and its link to the
    visitor it names are one durable write, not a key's commit and then a link's."""
    store, ring, writes = await _sqlite_ring_counting_writes(tmp_path)
    env = _envelope(FIXTURES / "natterly" / "chat_initiated_identified_visitor.json")
    sealed = await ring.seal(env)
    assert len(writes) == 1, writes
    visitor = "natterly:visitor:c4e5f6a7-b8c9-4d0e-9f1a-2b3c4d5e6f70"
    assert await store.linked(visitor) == [sealed.subject]
    key = await store.get(str(sealed.subject))
    assert key is not None and ring.open(sealed).body == env.body
    await ring.seal(env)  # a later webhook of the chat: key and link known, no write at all
    assert len(writes) == 1, writes
    await ring.close()


async def test_a_live_key_whose_cache_ran_out_is_read_again_without_a_write(tmp_path: Path) -> None:
    """Every live subject's entry runs out every ``ttl_s``: the ring reads the key again (no
    write transaction); a key destroyed meanwhile gets its next generation (one write)."""
    clock = [0.0]
    store, ring, writes = await _sqlite_ring_counting_writes(tmp_path, clock)
    env = _envelope(FIXTURES / "natterly" / "chat_initiated_identified_visitor.json")
    first = await ring.seal(env)
    assert len(writes) == 1, writes
    clock[0] = 10.5  # past the TTL
    again = await ring.seal(env)
    assert len(writes) == 1, writes
    key = await store.get(str(first.subject))
    assert key is not None and key.generation == 1
    assert ring.open(again).body == ring.open(first).body == env.body
    await store.destroy(str(first.subject))
    clock[0] = 21.0
    renewed = await ring.seal(env)
    assert len(writes) == 3, writes  # the destroy, then the next generation
    key = await store.get(str(first.subject))
    assert key is not None and key.generation == 2 and ring.open(renewed).body == env.body
    await ring.close()

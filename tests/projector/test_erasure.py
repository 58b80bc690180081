"""A forgotten record erases the personal fields of its chat, messages and visitor, in log
order, live and on every replay (projector.erasure through the Folder; no Kafka here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from contracts.envelope import Envelope, encode_envelope
from contracts.forgotten import Forgotten, forgotten_envelope
from projector.folder import Folder
from projector.store import Store
from projector.stores import open_store
from tests.kit.live_projector import T0, conversation

PERSONAL = ("Visitor vis-c1", "message 0", "message 1", "message 2", "Help", "United Kingdom")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await s.open()
    for copy in ("live", "rebuilt"):
        await s.create_projection(copy)
    try:
        yield s
    finally:
        await s.close()


def records(envs: Sequence[Envelope], first_offset: int = 0) -> list[ConsumerRecord]:
    out = []
    for i, env in enumerate(envs):
        value = encode_envelope(env)
        out.append(ConsumerRecord("t.events.chat", 0, first_offset + i, 0, 0, env.record_key,
                                  value, None, len(env.record_key), len(value), []))
    return out


def forgotten(kind: str = "chat", id: str = "c1", source: str = "acme") -> Envelope:
    return forgotten_envelope(Forgotten(
        erasure_id="e1", subject="acme:visitor:vis-c1", kind=kind, id=id,  # type: ignore[arg-type]
        source=source, requested_at=T0 + timedelta(hours=1),
        messages=("c1-m0", "c1-m1", "c1-m2")))


async def fold_into(store: Store, copy: str, batches: Sequence[Sequence[ConsumerRecord]]
                    ) -> list[str]:
    folder = Folder(store, fresh=copy == "rebuilt")
    erased = []
    for batch in batches:
        result = await folder.fold(copy, batch)
        await store.commit(copy, result.rows, result.offsets)
        folder.remember(result.states, result.covers)
        erased += [f"{kind}:{id}" for _, kind, id in result.erased]
    return erased


async def views(store: Store, copy: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, id in (("chat", "c1"), ("visitor", "vis-c1"), *(
            ("message", f"c1/c1-m{i}") for i in range(3))):
        raw = await store.get_view(copy, kind, id)
        out[f"{kind}:{id}"] = None if raw is None else msgspec.json.decode(raw)
    return out


async def test_a_forgotten_chat_keeps_its_facts_and_loses_its_personal_fields(store: Store) -> None:
    chat = conversation("c1", n_messages=3)
    erased = await fold_into(store, "live", [records(chat), records(
        [forgotten(), forgotten("visitor", "vis-c1")], first_offset=len(chat))])
    assert erased == ["chat:c1", "visitor:vis-c1"]
    got = await views(store, "live")
    text = msgspec.json.encode(got).decode()
    assert [s for s in PERSONAL if s in text] == []
    c = got["chat:c1"]
    assert c["erasure"] == {"id": "e1", "at": "2026-03-01T10:00:00Z"}
    assert (c["status"], c["message_count"], c["agent"]["id"]) == ("closed", 3, "ag-1")
    assert c["visitor"] == {"id": "vis-c1", "name": None, "anonymous": False}
    assert c["initiated_at"] is not None and c["closed_at"] is not None
    for i in range(3):
        m = got[f"message:c1/c1-m{i}"]
        assert (m["text"], m["erasure"]["id"], m["posted_at"] is not None) == (None, "e1", True)
    v = got["visitor:vis-c1"]
    assert (v["name"], v["email"], v["pages"], v["chats"]) == (None, None, [], ["c1"])


async def test_a_replay_erases_at_the_same_place_and_later_events_fold_on_top(store: Store) -> None:
    chat = conversation("c1", n_messages=3, close=False)
    later = conversation("c1", n_messages=3, start=T0 + timedelta(hours=2))[-1:]  # closes it
    log = [*chat, forgotten(), *later]
    # Live: in three batches; the rebuild: the whole log in one.
    await fold_into(store, "live", [records(chat), records([forgotten()], len(chat)),
                                    records(later, len(chat) + 1)])
    await fold_into(store, "rebuilt", [records(log)])
    live, rebuilt = await views(store, "live"), await views(store, "rebuilt")
    assert live == rebuilt
    assert live["chat:c1"]["status"] == "closed"
    assert live["chat:c1"]["erasure"]["id"] == "e1"


async def test_another_sources_forget_changes_nothing(store: Store) -> None:
    chat = conversation("c1", n_messages=1)
    await fold_into(store, "live", [records(chat), records([forgotten(source="other")], len(chat))])
    got = await views(store, "live")
    assert got["chat:c1"]["erasure"] is None
    assert got["message:c1/c1-m0"]["text"] == "message 0"


@pytest.mark.parametrize("provider", ["natterly", "chatshipper"])
async def test_erasing_keeps_exactly_the_facts_a_sealed_record_keeps(
        store: Store, provider: str) -> None:
    """Folding the log and then its forgotten records gives the same states as folding the
    records opened without their keys (their facts only) and then the forgotten records: so
    a rebuild after a forget verifies equal to the erased live copy."""
    from parley.privacy.facts import facts_of
    from tests.kit.live_projector import shipper_conversation

    log = (conversation("c1", n_messages=3) if provider == "natterly"
           else shipper_conversation("c1", n_messages=3))
    facts = [msgspec.structs.replace(e, body=msgspec.Raw(facts_of(e.provider, bytes(e.body))))
             for e in log]
    ids = {m for e in log for m in _message_ids(e)}
    visitors = sorted({v for e in log for v in _visitor_ids(e)})
    asked = T0 + timedelta(hours=1)
    erase_all = [forgotten_envelope(Forgotten(
        erasure_id="e1", subject=f"{provider}:x", kind="chat", id="c1", source=log[0].source,
        requested_at=asked, messages=tuple(sorted(ids))))] + [forgotten_envelope(Forgotten(
            erasure_id="e1", subject=f"{provider}:x", kind="visitor", id=v,
            source=log[0].source, requested_at=asked)) for v in visitors]
    await fold_into(store, "live", [records([*log, *erase_all])])
    await fold_into(store, "rebuilt", [records([*facts, *erase_all])])
    live = {f.id: f for f in await store.fingerprints("live")}
    rebuilt = {f.id: f for f in await store.fingerprints("rebuilt")}
    assert live.keys() == rebuilt.keys()
    differ = [id for id in live if live[id].digest != rebuilt[id].digest]
    assert differ == [], [(id, await store.get_view("live", *_kind_id(live[id])),
                           await store.get_view("rebuilt", *_kind_id(rebuilt[id])))
                          for id in differ[:2]]
    assert len(live) > 3  # a chat, its messages (and a natterly visitor) were compared


def _visitor_ids(env: Envelope) -> list[str]:
    from contracts.domain import VisitorSeen
    from contracts.normalise import normalise

    return [e.visitor_id for e in normalise(env) if isinstance(e, VisitorSeen)]


def _message_ids(env: Envelope) -> list[str]:
    from contracts.domain import MessagePosted
    from contracts.normalise import normalise

    return [e.message_id for e in normalise(env) if isinstance(e, MessagePosted)]


def _kind_id(f: Any) -> tuple[str, str]:
    return f.kind, f.id

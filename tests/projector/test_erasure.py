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

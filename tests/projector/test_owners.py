"""Source ownership (docs/security.md, hole 10): an aggregate belongs to the source that wrote
it first in log order; another source's events for it change nothing, and are counted and
logged. Through the real Folder (as the live runner and rebuilds use it) on every store.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from contracts.envelope import Envelope, encode_envelope
from contracts.timestamps import MAX_UNIX_S
from projector.folder import Folder
from projector.log_index import LOG_KINDS
from projector.metrics import ProjectorMetrics
from projector.store import Store
from projector.stores import open_store
from tests.kit.live_projector import (
    T0,
    chatshipper_body,
    conversation,
    envelope,
    natterly_body,
    natterly_user_status,
)
from tests.kit.postgres import fresh_schema

RIVAL = "rival"  # a second, authenticated Natterly source


async def _opened(request: pytest.FixtureRequest, kind: str, tmp_path: Path
                  ) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        if kind == "memory":
            url = "memory://"
        elif kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'state.db'}"
        else:
            url = await stack.enter_async_context(
                fresh_schema(request.getfixturevalue("postgres_dsn")))
        s = open_store(url)
        await s.open()
        stack.push_async_callback(s.close)
        await s.create_projection("p")
        yield s


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in _opened(request, request.param, tmp_path):
        yield s


@pytest.fixture
async def pg_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in _opened(request, "postgres", tmp_path):
        yield s


def records(envs: Sequence[Envelope], first_offset: int = 0) -> list[ConsumerRecord]:
    """Records of one partition, in order (what a chat's records are: one key, one partition)."""
    out = []
    for i, env in enumerate(envs):
        value = encode_envelope(env)
        out.append(ConsumerRecord("t.events.chat", 0, first_offset + i, 0, 0, env.record_key,
                                  value, None, len(env.record_key), len(value), []))
    return out


def foreign(metrics: ProjectorMetrics) -> dict[tuple[str, str], float]:
    [family] = metrics.foreign_source.collect()
    return {(s.labels["kind"], s.labels["source"]): s.value
            for s in family.samples if s.name.endswith("_total")}


def hijack(chat: str, at_s: int = 3600) -> list[Envelope]:
    """What a rival sends for someone else's chat: a later snapshot renaming it, a new
    message, a close, its visitor renamed and an agent's status."""
    later = T0 + timedelta(seconds=at_s)
    return [
        envelope("natterly", RIVAL, natterly_body(
            "ChatAccepted", chat, later, agent="ag-evil", visitor=f"vis-{chat}", subject="pwned",
            messages=[(f"{chat}-evil", "click here", later)])),
        envelope("natterly", RIVAL, natterly_body("ChatClosed", chat, later, agent="ag-evil")),
        envelope("natterly", RIVAL, natterly_user_status("ag-1", "Offline", later)),
    ]


async def fold_committed(store: Store, folder: Folder, batches: Sequence[list[ConsumerRecord]]
                         ) -> dict[tuple[str, str], Any]:
    """Fold and commit ``batches`` in turn; every view the store then holds for them."""
    seen: set[tuple[str, str]] = set()
    for batch in batches:
        result = await folder.fold("p", batch)
        assert result.dead == []
        await store.commit("p", result.rows, result.offsets)
        folder.remember(result.states, result.covers)
        # State rows: the log index (projector.log_index) lists a refused webhook under the
        # chat it named too, as received for it, changing no state.
        seen.update((r.kind, r.id) for r in result.rows if r.kind not in LOG_KINDS)
    out = {}
    for kind, id_ in sorted(seen):
        raw = await store.get_view("p", kind, id_)
        assert raw is not None
        out[(kind, id_)] = orjson.loads(raw)
    return out


async def test_another_source_cannot_change_a_chat_its_messages_visitor_or_agent(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    owner = conversation("c1", n_messages=2, close=False)
    owner.append(envelope("natterly", "acme", natterly_user_status("ag-1", "Online", T0)))
    metrics = ProjectorMetrics.create(CollectorRegistry())
    folder = Folder(store, metrics=metrics)
    before = await fold_committed(store, folder, [records(owner)])
    attack = hijack("c1")
    with caplog.at_level(logging.WARNING, "parley.projector.owners"):
        # A fresh folder too: the owner must come from the stored state, not only the cache.
        after = await fold_committed(store, Folder(store, metrics=metrics),
                                     [records(attack, first_offset=len(owner))])
    # Nothing of the owner's changed: the only row written is the agent the rival's chat
    # webhooks named and nobody had described before (a chat webhook that names an agent
    # writes its row); it is the rival's own, new aggregate.
    assert set(after) == {("agent", "ag-evil")} and not set(after) & set(before)
    for key, was in before.items():
        raw = await store.get_view("p", *key)
        assert raw is not None and orjson.loads(raw) == was, key
    assert await store.get_view("p", "message", "c1/c1-evil") is None
    chat = before[("chat", "c1")]
    assert (chat["subject"], chat["status"], chat["source"]) == ("Help", "active", "acme")
    # Counted per aggregate kind and source; logged once per event, naming both sources.
    counts = foreign(metrics)
    assert set(counts) == {("chat", RIVAL), ("message", RIVAL), ("visitor", RIVAL),
                           ("agent", RIVAL)}
    assert counts[("message", RIVAL)] == 1 and counts[("agent", RIVAL)] == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "parley.projector.owners"]
    assert len(lines) == len(attack)  # one line per webhook
    for env in attack:
        [line] = [x for x in lines if x.startswith(f"event {env.event_id} ")]
        assert "source 'rival'" in line and "source 'acme'" in line
    assert "chat 'c1', message 'c1/c1-evil', visitor 'vis-c1' belong" in lines[0]
    assert not any("natterly-test-token" in x for x in lines)


async def test_the_first_source_in_log_order_owns_the_chat(store: Store) -> None:
    """The rival's record comes first: it owns c2, and the real source's events are the
    foreign ones — the same however the log is cut into batches."""
    attack = hijack("c2", at_s=0)[:1]
    real = conversation("c2", n_messages=2)
    log = records(attack + real)
    whole = await fold_committed(store, Folder(store), [log])
    assert whole[("chat", "c2")]["source"] == RIVAL
    assert whole[("chat", "c2")]["subject"] == "pwned"
    assert ("message", "c2/c2-m1") not in whole

    for cut in (1, 2, 3):  # a fresh projection per cut, read from the stored states
        await store.drop_projection("p")
        await store.create_projection("p")
        split = await fold_committed(store, Folder(store), [log[:cut], log[cut:]])
        assert split == whole, cut


async def test_natterly_and_chatshipper_sources_sharing_an_id(store: Store) -> None:
    nat = conversation("5c138790ec944f05ff5f6d78", n_messages=1, close=False)
    shop = [envelope("chatshipper", "shop", chatshipper_body(
        "e-1", "5c138790ec944f05ff5f6d78", T0 + timedelta(hours=1), message="m-shop",
        text="overwrite"))]
    metrics = ProjectorMetrics.create(CollectorRegistry())
    got = await fold_committed(store, Folder(store, metrics=metrics),
                               [records(nat), records(shop, first_offset=len(nat))])
    chat = got[("chat", "5c138790ec944f05ff5f6d78")]
    assert (chat["provider"], chat["source"], chat["message_count"]) == ("natterly", "acme", 1)
    assert ("message", "5c138790ec944f05ff5f6d78/m-shop") not in got
    assert foreign(metrics)[("chat", "shop")] >= 1


async def test_one_source_keeps_working_beside_a_foreign_record_in_the_same_batch(
        store: Store) -> None:
    """A batch mixing the owner's and the rival's records: the owner's all apply."""
    owner = conversation("c3", n_messages=3)
    attack = hijack("c3")
    mixed = [owner[0], attack[0], *owner[1:3], attack[1], *owner[3:]]
    got = await fold_committed(store, Folder(store), [records(mixed)])
    alone = conversation("c3", n_messages=3)
    await store.drop_projection("p")
    await store.create_projection("p")
    expected = await fold_committed(store, Folder(store), [records(alone)])
    chat, want = got[("chat", "c3")], expected[("chat", "c3")]
    assert chat == want
    assert {k for k in got if k[0] == "message"} == {k for k in expected if k[0] == "message"}


async def test_a_foreign_state_does_not_win_through_the_postgres_merge(pg_store: Store) -> None:
    """Two projector instances (two partitions) each fold a VisitorSeen of one visitor id
    before either commits, so each folder sees no owner: the acme instance commits first;
    the rival's state, committed second, is not merged in (PostgreSQL joins such rows)."""
    store = pg_store
    acme = conversation("c4", n_messages=1, close=False, visitor="vis-shared")[:1]
    rival = [envelope("natterly", RIVAL, natterly_body(
        "ChatInitiated", "c5", T0 + timedelta(hours=1), visitor="vis-shared"))]
    first = await Folder(store).fold("p", records(acme))
    second = await Folder(store).fold("p", records(rival))
    await store.commit("p", first.rows, first.offsets)
    stored = await store.get_view("p", "visitor", "vis-shared")
    await store.commit("p", second.rows, {("t.events.chat", 1): 1})
    assert await store.get_view("p", "visitor", "vis-shared") == stored
    raw = await store.get_view("p", "chat", "c5")  # the rival's own chat is its own
    assert raw is not None and orjson.loads(raw)["source"] == RIVAL


def _future(body: bytes, *, chat: bool = True) -> bytes:
    """``body`` (a Natterly chat webhook) with every time inside it set to the year 9999."""
    doc = orjson.loads(body)
    for message in doc["payload"]["messages"]:
        message["created_at"] = message["updated_at"] = MAX_UNIX_S
    if chat:
        for name in ("initiated_at", "last_message_at", "closed_at"):
            doc["payload"]["chat"][name] = MAX_UNIX_S
    return orjson.dumps(doc)


async def test_a_time_from_the_year_9999_inside_a_body_does_not_win(store: Store) -> None:
    start = conversation("c6", n_messages=1, close=False)
    at = T0 + timedelta(minutes=1)
    future = envelope("natterly", "acme", _future(natterly_body(
        "ChatAccepted", "c6", at, agent="ag-1", visitor="vis-c6",
        messages=[("c6-future", "from the future", at)])))
    later = T0 + timedelta(minutes=2)
    normal = envelope("natterly", "acme", natterly_body(
        "ChatAccepted", "c6", later, agent="ag-1", visitor="vis-c6",
        messages=[("c6-later", "a real message", later)]))
    metrics = ProjectorMetrics.create(CollectorRegistry())
    got = await fold_committed(store, Folder(store, metrics=metrics),
                               [records([*start, future, normal])])
    chat = got[("chat", "c6")]
    assert "9999" not in orjson.dumps(chat).decode()
    assert chat["last_message_at"] == later.isoformat().replace("+00:00", "Z")
    assert chat["initiated_at"] == T0.isoformat().replace("+00:00", "Z")
    assert chat["status"] == "active"  # a closed_at from the future closed nothing
    posted = got[("message", "c6/c6-future")]["posted_at"]
    assert posted == at.isoformat().replace("+00:00", "Z")  # clamped to the webhook's time
    [family] = metrics.future_times.collect()
    counted = {s.labels["field"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert counted == {"MessagePosted.posted_at": 1, "ChatUpdated.last_message_at": 1,
                       "ChatUpdated.initiated_at": 1, "ChatUpdated.closed_at": 1}


async def test_a_chatshipper_creation_time_from_the_future_does_not_win(store: Store) -> None:
    body = orjson.loads(chatshipper_body("e-9", "conv-9", T0, message="m-9"))
    for doc in (body["data"]["conversation"], body["data"]["message"]):
        doc["createdAt"] = doc["updatedAt"] = "9999-12-31T23:59:59Z"
    env = envelope("chatshipper", "shop", orjson.dumps(body))
    got = await fold_committed(store, Folder(store), [records([env])])
    assert "9999" not in orjson.dumps(list(got.values())).decode()

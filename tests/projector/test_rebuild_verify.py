"""The verified switch: a rebuild compares its copy with the live one before reads move."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts.topics import Topics
from parley.settings import KafkaSettings, Settings, StoreSettings
from projector.cli import projection_status
from projector.memory_store import MemoryStore
from projector.outbox import wrap_state
from projector.rebuild import VerificationFailed, rebuild
from projector.store import Store
from projector.stores import open_store
from projector.verify import Verification, verify
from projector.views import Row
from tests.kit.live_projector import (
    T0,
    applied,
    conversation,
    envelope,
    eventually,
    natterly_body,
    produce,
    running_projector,
    shipper_conversation,
    snapshot,
)
from tests.kit.postgres import fresh_schema

_CHATS = 12


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        async with fresh_schema(request.getfixturevalue("postgres_dsn")) as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _log(kafka: KafkaSettings, topics: Topics) -> int:
    envs = []
    for i in range(_CHATS):
        envs += conversation(f"chat-{i}", n_messages=1 + i % 3, agent=f"ag-{i % 2}",
                             start=T0 + timedelta(minutes=i))
    envs += shipper_conversation("conv-1")
    return len(await produce(kafka, topics, envs))


def _corrupting(store: Store, copy: str, chat: str) -> None:
    """Make ``store`` write a different state and view of one chat into ``copy``: a fold
    that changed (the store under it is the real one)."""
    commit = store.commit

    async def changed(projection: str, rows: Sequence[Row], *args: Any, **kw: Any) -> Any:
        if projection == copy:
            rows = [Row(kind=r.kind, id=r.id, state=r.state + b"!", view=r.view.replace(
                b'"status":"closed"', b'"status":"changed"'), chat_id=r.chat_id, status=r.status,
                source=r.source, agent_id=r.agent_id, sort_key=r.sort_key)
                if (r.kind, r.id) == ("chat", chat) else r for r in rows]
        return await commit(projection, rows, *args, **kw)

    store.commit = changed  # type: ignore[method-assign]


@pytest.mark.kafka
async def test_an_identical_fold_switches_with_0_differ_and_status_shows_it(
        store: Store, store_url: str, kafka_settings: KafkaSettings, topics: Topics) -> None:
    await _log(kafka_settings, topics)
    first = await rebuild(store, kafka_settings, topics, out=io.StringIO())
    assert first.verification is None  # nothing to compare with
    out = io.StringIO()
    report = await rebuild(store, kafka_settings, topics, out=out)
    v = report.verification
    assert v is not None and (v.live, v.new) == ("v1", "v2")
    total = sum(v.counts_new.values())
    assert (v.compared, v.same, v.differ, v.newer_in_live, v.newer_in_new) == (total, total, 0, 0, 0)
    assert v.counts_live == v.counts_new and v.counts_new["chat"] == _CHATS + 1
    assert f"verified v2 against v1: {total} aggregates compared, 0 differ" in out.getvalue()
    assert await store.live_projection() == "v2" and await store.list_projections() == ["v2"]
    assert Verification.from_json((await store.verifications())["v2"]) == v
    if store_url != "memory://":  # status opens the store from its URL
        settings = Settings(kafka=kafka_settings, store=StoreSettings(url=store_url))
        text = await projection_status(settings)
        assert "projection v2 (live)" in text
        assert f"  verified v2 against v1: {total} aggregates compared, 0 differ" in text


@pytest.mark.kafka
async def test_a_changed_fold_is_refused_and_explained_until_accepted(
        store: Store, kafka_settings: KafkaSettings, topics: Topics) -> None:
    await _log(kafka_settings, topics)
    await rebuild(store, kafka_settings, topics, out=io.StringIO())
    before = (await snapshot(store, "v1"), await store.offsets("v1"))
    _corrupting(store, "v2", "chat-4")
    out = io.StringIO()
    with pytest.raises(VerificationFailed) as refused:
        await rebuild(store, kafka_settings, topics, out=out)
    total = sum((await store.counts("v2")).values())
    assert str(refused.value) == (
        f"v2 differs from the live copy v1 in 1 of {total} aggregates compared (summary above); "
        "reads stay on v1 and v2 is kept, not live: inspect it, then `parley projections "
        "rebuild v2 --accept-changes` if the fold changed on purpose, or "
        "`parley projections drop v2`")
    text = out.getvalue()
    assert f"{total} aggregates compared, 1 differ (chat 1), 0 newer in v1" in text
    assert "differs: chat 'chat-4'" in text
    [live_line] = [line for line in text.splitlines() if line.startswith("rebuild v2:     v1: ")]
    [new_line] = [line for line in text.splitlines() if line.startswith("rebuild v2:     v2: ")]
    assert '"status":"closed"' in live_line and '"status":"changed"' in new_line
    # The live copy serves, untouched; the new one is kept, not live, with its summary.
    assert await store.live_projection() == "v1"
    assert await store.list_projections() == ["v1", "v2"]
    assert (await snapshot(store, "v1"), await store.offsets("v1")) == before
    kept = Verification.from_json((await store.verifications())["v2"])
    assert (kept.differ, kept.accepted, [e.id for e in kept.examples]) == (1, False, ["chat-4"])

    out = io.StringIO()
    report = await rebuild(store, kafka_settings, topics, name="v2", out=out, accept_changes=True)
    assert report.verification is not None and report.verification.accepted
    assert "1 differ (chat 1)" in out.getvalue() and "switched with --accept-changes" in out.getvalue()
    assert await store.live_projection() == "v2" and await store.list_projections() == ["v2"]
    assert Verification.from_json((await store.verifications())["v2"]).accepted


@pytest.mark.kafka
async def test_a_live_copy_that_moved_on_is_not_reported_as_differing(
        kafka_settings: KafkaSettings, topics: Topics, unique: str) -> None:
    """The live runner folds new records into v1 while the rebuild verifies v2: the chats
    they touched are newer in v1, not differences, and the switch goes ahead."""
    store = MemoryStore()
    async with running_projector(kafka_settings, topics, "memory://", store=store,
                                 group_id=f"{unique}-projector"):
        positions = await produce(kafka_settings, topics,
                                  [e for i in range(4) for e in conversation(f"chat-{i}", close=False)])
        await eventually(lambda: applied(store, positions), "live v1 caught up")
        fingerprints = store.fingerprints
        moved = asyncio.Event()

        async def moving_on(*args: Any, **kw: Any) -> Any:
            if not moved.is_set():  # the rebuild has read both copies' offsets: move v1 on
                moved.set()
                more = await produce(kafka_settings, topics, [
                    envelope("natterly", "acme", natterly_body(
                        "ChatClosed", "chat-1", T0 + timedelta(hours=1), agent="ag-1")),
                    *conversation("chat-late", start=T0 + timedelta(hours=2))])
                await eventually(lambda: applied(store, more), "live v1 moved on")
            return await fingerprints(*args, **kw)

        store.fingerprints = moving_on  # type: ignore[method-assign]
        report = await rebuild(store, kafka_settings, topics, out=io.StringIO())
    v = report.verification
    assert v is not None and moved.is_set()
    assert v.differ == 0 and v.newer_in_live >= 2 and v.newer_in_new == 0  # chat-1, chat-late…
    assert await store.live_projection() == "v2"


async def test_the_rule_compares_only_what_both_copies_folded() -> None:
    """Per partition the horizon is the lower next offset of the two copies; a state that
    covers a position at or past it is newer on its side; below it, any change differs."""
    store = MemoryStore()
    t = "parley.events.natterly"

    def row(id: str, offset: int, body: bytes) -> Row:
        return Row(kind="chat", id=id, state=wrap_state(body, ((t, 0, offset),)), view=body,
                   chat_id=id, sort_key="1")

    for name in ("live", "new"):
        await store.create_projection(name)
    await store.commit("live", [row("same", 1, b"a"), row("changed", 2, b"b"),
                                row("moved", 9, b"c2"), row("only-live-old", 3, b"d"),
                                row("only-live-new", 8, b"e")], {(t, 0): 10})
    await store.commit("new", [row("same", 1, b"a"), row("changed", 2, b"B"),
                               row("moved", 4, b"c1"), row("only-new", 5, b"f")], {(t, 0): 6})
    v = await verify(store, "live", "new", page=2)
    assert (v.compared, v.same, v.differ, v.newer_in_live, v.newer_in_new) == (4, 1, 3, 2, 0)
    assert [e.id for e in v.examples] == ["changed", "only-live-old", "only-new"]
    assert [(e.live, e.new) for e in v.examples] == [("b", "B"), ("d", None), (None, "f")]
    # Seen from the other side, the live copy is the one behind.
    w = await verify(store, "new", "live")
    assert (w.differ, w.newer_in_live, w.newer_in_new) == (3, 0, 2)


@pytest.mark.kafka
@pytest.mark.parametrize("where", ["fold", "verify", "keep"])
async def test_an_interrupted_rebuild_leaves_the_live_copy_serving(
        where: str, kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    """Interrupted while folding (cancelled), while verifying or while keeping the summary
    (a store error): v1 keeps serving, unchanged, and v2 stays, not live."""
    await _log(kafka_settings, topics)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    try:
        await rebuild(store, kafka_settings, topics, out=io.StringIO())
        before = (await snapshot(store, "v1"), await store.offsets("v1"))
        writing, released = asyncio.Event(), asyncio.Event()
        commit = store.commit
        calls = 0

        async def held_second_commit(*args: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:  # one batch is in v2; the second waits until the interrupt
                writing.set()
                await released.wait()
            return await commit(*args, **kw)

        async def failing(*args: Any, **kw: Any) -> Any:
            raise OSError("disk gone (injected)")

        if where == "fold":
            store.commit = held_second_commit  # type: ignore[method-assign]
        elif where == "verify":
            store.fingerprints = failing  # type: ignore[method-assign]
        else:
            store.set_verification = failing  # type: ignore[method-assign]
        task = asyncio.create_task(rebuild(store, kafka_settings, topics, out=io.StringIO(),
                                           max_records=10))
        if where == "fold":
            await asyncio.wait_for(writing.wait(), 30)
            task.cancel()
            released.set()  # a write in flight when interrupted may finish (into v2)
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with pytest.raises(OSError, match="injected"):
                await task
        assert await store.live_projection() == "v1"
        assert await store.list_projections() == ["v1", "v2"]
        assert (await snapshot(store, "v1"), await store.offsets("v1")) == before
    finally:
        await store.close()

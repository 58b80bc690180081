"""Rebuilds: a fresh copy beside the live one, equal to it, switched in without downtime."""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts.topics import Topics
from parley.http import build_app
from parley.runtime import Runtime
from parley.settings import KafkaSettings, Settings, StoreSettings
from projector.memory_store import MemoryStore
from projector.rebuild import RebuildError, next_version, rebuild
from projector.rebuild_batches import BatchWriter, Progress
from projector.role import ProjectorRole, ProjectorRoleOptions
from projector.runner import ProjectorRunnerOptions
from projector.states import AggregateRef
from projector.stores import open_store
from projector.views import Row
from tests.kit.live_projector import (
    T0,
    applied,
    conversation,
    delete_dlq,
    envelope,
    eventually,
    natterly_body,
    natterly_user_status,
    produce,
    shipper_conversation,
    snapshot,
    write_config,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
async def live(kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path, unique: str
               ) -> AsyncIterator[tuple[TestClient[Any, Any], ProjectorRole, str]]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    rt = Runtime.from_settings(Settings(kafka=kafka_settings, store=StoreSettings(url=url)))
    role = ProjectorRole(rt, ProjectorRoleOptions(
        runner=ProjectorRunnerOptions(group_id=f"{unique}-projector", poll_timeout_ms=100)))
    client: TestClient[Any, Any] = TestClient(TestServer(build_app(rt, [role])))
    await client.start_server()
    try:
        yield client, role, url
    finally:
        await client.close()
        await delete_dlq(kafka_settings, topics)


def test_next_version() -> None:
    assert next_version([]) == "v1"
    assert next_version(["v1", "v9", "v10", "custom"]) == "v11"


async def test_rebuild_equals_live_switches_without_downtime_and_drops_old(
        live: tuple[TestClient[Any, Any], ProjectorRole, str], kafka_settings: KafkaSettings,
        topics: Topics) -> None:
    client, role, url = live
    envs = []
    for i in range(60):
        envs += conversation(f"chat-{i}", n_messages=1 + i % 4, agent=f"ag-{i % 3}",
                             start=T0 + timedelta(minutes=i), close=i % 2 == 0)
    for i in range(10):
        envs += shipper_conversation(f"conv-{i}", n_messages=i % 3, start=T0 + timedelta(hours=i))
    envs += [envelope("natterly", "acme", natterly_user_status(f"ag-{i}", "Online", T0))
             for i in range(3)]
    positions = await produce(kafka_settings, topics, envs)
    await eventually(lambda: applied(role.store, positions), "live projection caught up")
    before = await snapshot(role.store, "v1")
    assert len(before["chats"]) == 70 and before["counts"]["agent"] == 3

    # Reads keep answering while the rebuild runs (a separate store connection, as the CLI).
    statuses: list[tuple[int, str]] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            resp = await client.get("/api/chats/chat-7")
            await resp.read()
            statuses.append((resp.status, resp.headers.get("X-Parley-Projection", "")))
            await asyncio.sleep(0.01)

    reading = asyncio.create_task(reader())
    out = io.StringIO()
    other = open_store(url)
    await other.open()
    try:
        report = await rebuild(other, kafka_settings, topics, out=out, progress_every_s=0.0,
                               max_records=40)
        with pytest.raises(RebuildError, match="live projection"):
            await rebuild(other, kafka_settings, topics, name="v2", out=io.StringIO())
    finally:
        await other.close()
    await eventually(lambda: _reads_on(statuses, "v2"), "a read served by v2")
    done.set()
    await reading

    assert (report.name, report.previous, report.records) == ("v2", "v1", len(positions))
    assert await role.store.live_projection() == "v2"
    assert await role.store.list_projections() == ["v2"]  # old copy removed
    assert await snapshot(role.store, "v2") == before  # every view equal
    # Reads never failed and moved from v1 to v2 exactly once.
    assert all(status == 200 for status, _ in statuses)
    served = [proj for _, proj in statuses]
    assert served[0] == "v1" and served[-1] == "v2"
    assert served == sorted(served)  # v1… then v2…, never back
    # Progress: records done, rate, ETA; then the switch and the drop.
    text = out.getvalue()
    assert f"replaying {len(positions)} records" in text
    progress = [line for line in text.splitlines() if "records/s" in line]
    assert len(progress) >= 2 and all("ETA" in line for line in progress)
    assert f"{len(positions)}/{len(positions)} records (100.0%)" in progress[-1]
    assert "switched v1 -> v2" in text and "dropped v1" in text

    # The live runner follows the switch: new events land in v2.
    more = await produce(kafka_settings, topics, [envelope("natterly", "acme", natterly_body(
        "ChatClosed", "chat-late", T0 + timedelta(days=1), agent="ag-1"))])
    await eventually(lambda: applied(role.store, more), "runner applies to v2")
    resp = await client.get("/api/chats/chat-late")
    assert resp.status == 200 and resp.headers["X-Parley-Projection"] == "v2"
    assert (await resp.json())["status"] == "closed"


async def test_rebuild_into_the_live_name_in_another_case_is_refused(
        store_url: str, kafka_settings: KafkaSettings, topics: Topics) -> None:
    """``rebuild V1`` while ``v1`` is live is refused before anything is written, and the live
    copy keeps every row and offset. (SQLite ignores case in table names: such a rebuild
    used to fold into v1's own tables, switch reads to "V1", then drop v1's tables.)"""
    positions = await produce(kafka_settings, topics,
                              conversation("chat-1") + shipper_conversation("conv-1"))
    store = open_store(store_url)
    await store.open()
    try:
        first = await rebuild(store, kafka_settings, topics, out=io.StringIO())
        assert (first.name, first.records) == ("v1", len(positions))
        before = (await store.counts("v1"), await store.offsets("v1"), await snapshot(store, "v1"))
        assert before[0]["chat"] == 2 and before[1]
        with pytest.raises(RebuildError, match=r"^'V1' names v1 \(projection names ignore case\), "
                                               r"which is the live projection; rebuild into another "
                                               r"name \(default: v2\)$"):
            await rebuild(store, kafka_settings, topics, name="V1", out=io.StringIO())
        with pytest.raises(RebuildError, match=r"^v1 is the live projection"):
            await rebuild(store, kafka_settings, topics, name="v1", out=io.StringIO())
        assert await store.live_projection() == "v1"
        assert await store.list_projections() == ["v1"]
        after = (await store.counts("v1"), await store.offsets("v1"), await snapshot(store, "v1"))
        assert after == before
    finally:
        await store.close()


async def _reads_on(statuses: list[tuple[int, str]], projection: str) -> bool:
    return any(proj == projection for _, proj in statuses)


@pytest.mark.slow
async def test_cli_status_and_rebuild(kafka_settings: KafkaSettings, topics: Topics,
                                      tmp_path: Path, unique: str) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    config = write_config(tmp_path / "parley.toml", kafka_settings, url)
    positions = await produce(kafka_settings, topics,
                              conversation("chat-1") + shipper_conversation("conv-1"))
    # A first run of `parley projections rebuild` on an empty store builds v1 and makes it live.
    code, out, err = await _parley(config, "projections", "rebuild")
    assert code == 0, err
    assert "rebuilt v1" in out and "records/s" in err and "ETA" in err
    code, out, err = await _parley(config, "projections", "status")
    assert code == 0, err
    assert "projection v1 (live)" in out and "lag 0" in out
    assert "chat=2" in out
    for topic, partition in {(p.topic, p.partition) for p in positions}:
        assert f"{topic}[{partition}]" in out
    more = await produce(kafka_settings, topics, conversation("chat-2"))
    code, out, _ = await _parley(config, "projections", "status")
    assert f"lag {len(more)}" in out  # nothing applies in between: the projector is not running
    code, out, err = await _parley(config, "projections", "rebuild", "blue")
    assert code == 0, err
    assert "rebuilt blue" in out
    code, out, _ = await _parley(config, "projections", "status")
    assert "projection blue (live)" in out and "projection v1" not in out and "chat=3" in out
    # Kept with blue: chat-2 came after v1's offsets (no projector ran), so it is not compared.
    assert ("  verified blue against v1: 8 aggregates compared, 0 differ, 0 newer in v1, "
            "6 newer in blue (not comparable)") in out
    # Names ignore case: BLUE is the live copy, refused as such; a bad name is one line.
    code, out, err = await _parley(config, "projections", "rebuild", "BLUE")
    assert code == 1 and "Traceback" not in err
    assert err.strip() == ("parley: error: 'BLUE' names blue (projection names ignore case), "
                           "which is the live projection; rebuild into another name (default: v1)")
    code, out, err = await _parley(config, "projections", "rebuild", "blue-2")
    assert code == 1 and err.strip() == (
        "parley: error: projection name 'blue-2' is invalid: use 1-64 characters of a-z, A-Z, "
        "0-9 and _ (case is ignored: V1 is v1)")

    # `projections drop`: a leftover copy goes; the live one and unknown names are refused.
    store = open_store(url)
    await store.open()
    try:
        await store.create_projection("leftover")  # as an interrupted rebuild leaves it
    finally:
        await store.close()
    code, out, err = await _parley(config, "projections", "drop", "leftover")
    assert code == 0, err
    assert "dropped leftover; copies left: blue" in out
    for name in ("blue", "Blue"):
        code, out, err = await _parley(config, "projections", "drop", name)
        assert code == 1 and "'blue' serves reads" in err and "Traceback" not in err
    code, out, err = await _parley(config, "projections", "drop", "nosuch")
    assert code == 1 and "no projection copy named 'nosuch' (copies: blue)" in err
    code, out, _ = await _parley(config, "projections", "status")
    assert "projection blue (live)" in out and "chat=3" in out and "leftover" not in out

    # A live copy that differs from the log's fold (here: a row changed behind the
    # projector's back) refuses the switch: one error line after the summary, exit 1.
    store = open_store(url)
    await store.open()
    try:
        [state] = (await store.load("blue", [AggregateRef("chat", "chat-1")])).values()
        raw = await store.get_view("blue", "chat", "chat-1")
        assert raw is not None
        await store.commit("blue", [Row(kind="chat", id="chat-1", state=state + b"!", chat_id="chat-1",
                                        view=raw.replace(b'"closed"', b'"tampered"'), sort_key="0")], {})
    finally:
        await store.close()
    code, out, err = await _parley(config, "projections", "rebuild", "green")
    assert code == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1] == (
        "parley: error: green differs from the live copy blue in 1 of 14 aggregates compared "
        "(summary above); reads stay on blue and green is kept, not live: inspect it, then "
        "`parley projections rebuild green --accept-changes` if the fold changed on purpose, "
        "or `parley projections drop green`")
    assert "rebuild green: verified green against blue: 14 aggregates compared, 1 differ (chat 1)" in err
    assert "rebuild green:   differs: chat 'chat-1'" in err and '"tampered"' in err
    code, out, _ = await _parley(config, "projections", "status")
    assert "projection blue (live)" in out and "projection green  rows" in out
    assert "  verified green against blue: 14 aggregates compared, 1 differ (chat 1)" in out
    code, out, err = await _parley(config, "projections", "rebuild", "green", "--accept-changes")
    assert code == 0, err
    assert "switched with --accept-changes" in err and "switched blue -> green" in err
    code, out, _ = await _parley(config, "projections", "status")
    assert "projection green (live)" in out and "projection blue" not in out
    assert ("1 differ (chat 1), 0 newer in blue, 0 newer in green (not comparable); "
            "switched with --accept-changes") in out


async def _parley(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_failed_batch_write_fails_the_rebuild_and_the_next_one_starts_clean(
        kafka_settings: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    """A failed batch write fails the rebuild (nothing goes live, no later batch is written),
    and a new rebuild into that name then yields the complete projection."""
    envs = []
    for i in range(30):
        envs += conversation(f"chat-{i}", n_messages=2, start=T0 + timedelta(minutes=i))
    positions = await produce(kafka_settings, topics, envs)
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    try:
        commit = store.commit
        calls = 0

        async def failing_commit(*args: Any, **kw: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise OSError("disk full (injected)")
            await commit(*args, **kw)

        store.commit = failing_commit  # type: ignore[method-assign]
        with pytest.raises(OSError, match="injected"):
            await rebuild(store, kafka_settings, topics, out=io.StringIO(), max_records=20)
        assert await store.live_projection() is None  # nothing switched
        assert calls == 2  # stopped at the failed write, no later batch was written

        assert await store.list_projections() == ["v1"]  # the failed copy, not live

        store.commit = commit  # type: ignore[method-assign]
        # Rebuilding into the failed copy's name drops it first (docs/projector.md).
        report = await rebuild(store, kafka_settings, topics, name="v1", out=io.StringIO(),
                               max_records=20)
        assert report.name == "v1" and report.records == len(positions)
        assert await store.live_projection() == "v1"
        assert len((await snapshot(store, "v1"))["chats"]) == 30
    finally:
        await store.close()


async def test_writer_overlaps_a_commit_and_loads_do_not_wait_for_it() -> None:
    """The rebuild writes batch N while it folds batch N+1: ``commit`` returns before the
    write, and a load (the fold reading stored states it no longer caches, from the store, not
    through the writer) does not wait for it either: every state batch N writes is still in the folder's cache
    (test_runner_folder.py::test_the_cache_keeps_a_whole_batch_however_small_it_is), so a
    load only asks for states of transactions that committed. The progress waits for the
    write, and a failed write surfaces at the next step."""
    store = MemoryStore()
    await store.open()
    await store.create_projection("v1")
    gate = asyncio.Event()
    committed: list[int] = []
    commit = store.commit

    async def slow_commit(*args: Any, **kw: Any) -> None:
        await gate.wait()
        await commit(*args, **kw)
        committed.append(len(args[1]))

    old = Row(kind="chat", id="c0", state=b"S0", view=b"{}", sort_key="0")
    await store.commit("v1", [old], {("t", 0): 1})  # an earlier batch, committed
    store.commit = slow_commit  # type: ignore[method-assign]
    progress = Progress("v1", 3, io.StringIO(), every_s=0)
    writer = BatchWriter(store, "v1", progress.add)
    row = Row(kind="chat", id="c1", state=b"S", view=b"{}", sort_key="1")
    await writer.commit([row], {("t", 0): 3}, 3)
    assert committed == [] and progress.done == 0  # handed over, not written yet

    # The rebuild's folder reads the store itself, not through the writer: answered while the
    # transaction is still in flight (the gate is closed).
    assert not hasattr(writer, "load")
    assert await asyncio.wait_for(store.load("v1", [AggregateRef("chat", "c0")]), 5) == {
        AggregateRef("chat", "c0"): b"S0"}
    assert committed == []
    gate.set()
    await writer.drain()
    assert committed == [1] and progress.done == 3
    assert await store.offsets("v1") == {("t", 0): 3}

    async def failing_commit(*args: Any, **kw: Any) -> None:
        raise OSError("disk full (injected)")

    store.commit = failing_commit  # type: ignore[method-assign]
    await writer.commit([row], {("t", 0): 4}, 1)
    with pytest.raises(OSError, match="injected"):
        await writer.drain()
    assert progress.done == 3
    await writer.abandon()  # nothing left in flight: a no-op

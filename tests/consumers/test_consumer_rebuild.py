"""``parley consumers rebuild search`` (issue 18 point 3), on both search backends and a real
broker: the index is rebuilt into a shadow copy while the live group keeps consuming and
queries keep being answered from the live copy (never an empty or half-built one); the switch
hands over at the shadow's offsets, so every record reaches the new copy exactly once (by the
shadow or, after the switch, by the live group); the result is what a fresh index holds; an
interrupted rebuild changes nothing and the next one starts clean."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from consumers.api import ConsumedEvent, Consumer
from consumers.metrics import ConsumerMetrics
from consumers.rebuild import rebuild_consumer
from consumers.runner import ConsumerRunner, ConsumerRunnerOptions
from consumers.search.backends import search_index_for
from consumers.search.copies import SwitchingSearchIndex
from consumers.search.queries import SearchHit, SearchQuery
from contracts.topics import Topics
from parley.settings import KafkaSettings, Settings, StoreSettings
from tests.kit.consumers.chat_states import chat_states, produce_states
from tests.kit.consumers.cli import parley
from tests.kit.live_projector import eventually
from tests.kit.postgres import fresh_schema

pytestmark = pytest.mark.kafka


@pytest.fixture(params=["sqlite", "postgresql"])
async def both(request: pytest.FixtureRequest, tmp_path: Path, kafka_settings: KafkaSettings
               ) -> AsyncIterator[tuple[Settings, Settings]]:
    """Settings on one backend, and settings of a fresh index elsewhere on it (to compare)."""
    def on(url: str, data_dir: Path) -> Settings:
        return Settings(kafka=kafka_settings, data_dir=str(data_dir), store=StoreSettings(url=url))

    if request.param == "sqlite":
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        yield (on(f"sqlite:///{tmp_path / 'state.db'}", tmp_path),
               on(f"sqlite:///{fresh / 'state.db'}", fresh))
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        async with fresh_schema(dsn) as url, fresh_schema(dsn) as fresh_url:
            yield on(url, tmp_path), on(fresh_url, tmp_path)
            for each in (url, fresh_url):  # the copies' schemas are not the test's schema
                await _drop_copies(each)


async def _drop_copies(url: str) -> None:
    from consumers.search.pg_copies import PgCopies

    copies = PgCopies(url)
    await copies.open()
    try:
        for name in await copies.names():
            await copies.drop(name)
    finally:
        await copies.close()


@pytest.fixture
def settings(both: tuple[Settings, Settings]) -> Settings:
    return both[0]


def _index(settings: Settings) -> SwitchingSearchIndex:
    index = search_index_for(settings)
    assert isinstance(index, SwitchingSearchIndex)
    return index


class _Recorded:
    """Which records reached which copy: the live group's writes and the shadow's."""

    def __init__(self) -> None:
        self.live: dict[str, list[tuple[str, int, int]]] = {}
        self.shadow: list[tuple[str, int, int]] = []


def _live_consumer(index: SwitchingSearchIndex, seen: _Recorded) -> Consumer:
    """The search consumer, recording each record with the copy it was written to."""

    async def handle_batch(events: Sequence[ConsumedEvent]) -> None:
        await index.apply_states([ev.state for ev in events])
        seen.live.setdefault(index.live_name, []).extend(ev.fetched for ev in events)

    return Consumer(name="search", handle_batch=handle_batch, topics=(), states=("chat",),
                    concurrency=1, rebuildable=index)


class _RecordingIndex(SwitchingSearchIndex):
    def __init__(self, settings: Settings, seen: _Recorded) -> None:
        super().__init__(_index(settings).copies)
        self.seen = seen
        self.applied = asyncio.Event()

    async def apply_shadow(self, events: Sequence[ConsumedEvent]) -> None:
        await super().apply_shadow(events)
        self.seen.shadow.extend(ev.fetched for ev in events)
        self.applied.set()


def _rebuilder(settings: Settings, seen: _Recorded) -> tuple[Consumer, _RecordingIndex]:
    """The consumer as ``parley consumers rebuild search`` loads it, in a process of its own
    (its own index object)."""
    index = _RecordingIndex(settings, seen)

    async def unused(events: Sequence[ConsumedEvent]) -> None:
        raise AssertionError("the rebuild only writes the shadow")

    return Consumer(name="search", handle_batch=unused, topics=(), states=("chat",),
                    rebuildable=index, start=index.open, stop=index.close), index


async def _all_hits(index: SwitchingSearchIndex, q: str) -> list[SearchHit]:
    hits: list[SearchHit] = []
    offset = 0
    while True:
        page = await index.search(SearchQuery(q=q, limit=100, offset=offset))
        hits += page.hits
        if page.next_cursor is None:
            return hits
        offset += 100


async def _fresh_hits(settings: Settings, kafka: KafkaSettings, topics: Topics,
                      queries: Sequence[str]) -> dict[str, list[SearchHit]]:
    """What an index built from scratch out of the whole topic answers (a fresh data dir or
    schema, filled by a rebuild with nothing live)."""
    seen = _Recorded()
    consumer, index = _rebuilder(settings, seen)
    await index.open()
    try:
        await rebuild_consumer(consumer, kafka, topics, out=io.StringIO(), handover_timeout_s=0)
        await index.resume_offsets(())  # follow the new copy
        return {q: await _all_hits(index, q) for q in queries}
    finally:
        await index.close()


@contextlib.asynccontextmanager
async def _running(settings: Settings, topics: Topics, seen: _Recorded
                   ) -> AsyncIterator[tuple[SwitchingSearchIndex, ConsumerRunner]]:
    index = _index(settings)
    await index.open()
    runner = ConsumerRunner(_live_consumer(index, seen), settings.kafka, topics,
                            ConsumerMetrics(CollectorRegistry()),
                            options=ConsumerRunnerOptions(max_records=50))
    task = asyncio.create_task(runner.run())
    try:
        yield index, runner
    finally:
        runner.stop()
        await task
        await index.close()


async def _count(index: SwitchingSearchIndex, q: str) -> int:
    return len(await _all_hits(index, q))


async def test_rebuild_beside_live_traffic_and_queries_switches_without_loss_or_repeat(
        both: tuple[Settings, Settings], kafka_settings: KafkaSettings, topics: Topics) -> None:
    settings, fresh = both
    first = [r for i in range(120) for r in chat_states(f"a{i}", f"alpha order {i}", [f"parcel {i}"])]
    await produce_states(kafka_settings, topics, first)
    seen = _Recorded()
    async with _running(settings, topics, seen) as (index, _):
        await eventually(lambda: _at_least(index, "alpha", 120), what="the live index has v1")
        assert index.live_name == "v1"

        # Queries all along, answered from a whole copy: never an empty or half-built one.
        counts: list[tuple[int, int]] = []
        querying = asyncio.Event()

        async def query() -> None:
            while not querying.is_set():
                counts.append((await _count(index, "alpha"), await _count(index, "beta")))
                await asyncio.sleep(0)

        # Live traffic all along: new chats while the shadow fills and after the switch.
        sending = asyncio.Event()

        async def traffic() -> None:
            i = 0
            while not sending.is_set():
                await produce_states(kafka_settings, topics,
                                     chat_states(f"b{i}", f"beta order {i}", [f"refund {i}"]))
                i += 1

        async def between_end_and_switch() -> None:
            # Records the shadow has not read, taken by the live group into the old copy
            # before the switch: after it they must reach the new copy, once.
            await produce_states(kafka_settings, topics, [
                r for i in range(10) for r in chat_states(f"g{i}", f"gamma {i}", ["late"])])
            await eventually(lambda: _at_least(index, "gamma", 10), what="gammas in the old copy")

        seen_shadow = _Recorded()
        rebuild_consumer_, rebuild_index = _rebuilder(settings, seen_shadow)
        tasks = [asyncio.create_task(query()), asyncio.create_task(traffic())]
        out = io.StringIO()
        await rebuild_index.open()
        try:
            report = await rebuild_consumer(rebuild_consumer_, kafka_settings, topics, out=out,
                                            progress_every_s=0.0, max_records=40,
                                            before_switch=between_end_and_switch)
        finally:
            await rebuild_index.close()
        assert (report.copy, report.previous, report.handed_over) == ("v2", "v1", True)
        assert index.live_name == "v2"  # the live group and its queries moved over
        top = max(b for _, b in counts)
        await eventually(lambda: _more_than(index, "beta", top), what="traffic after the switch")
        sending.set()
        await tasks[1]
        everything = await _topic_positions(kafka_settings, topics)

        async def all_in() -> bool:
            return set(seen.live.get("v2", [])) | set(seen_shadow.shadow) >= everything

        await eventually(all_in, what="every record in the new copy")
        querying.set()
        await tasks[0]
        text = out.getvalue()
        assert "records/s, ETA" in text and "live copy switched v1 -> v2" in text
        assert "dropped v1" in text

    assert counts and {a for a, _ in counts} == {120}, counts
    assert min(b for _, b in counts) >= counts[0][1], counts
    # Every record of the topic reached v2 exactly once: from the shadow up to its end
    # offsets, then from the live group, which resumed there.
    after = seen.live.get("v2", [])
    assert len(after) == len(set(after)), "a record was applied to the new copy twice"
    assert not set(after) & set(seen_shadow.shadow), "the live group repeated the shadow's work"
    assert set(after) | set(seen_shadow.shadow) == everything
    # The new copy answers what a fresh index does.
    queries = ("alpha", "beta", "gamma", "parcel", "refund")
    index = _index(settings)
    await index.open()
    try:
        live = {q: await _all_hits(index, q) for q in queries}
    finally:
        await index.close()
    assert live == await _fresh_hits(fresh, kafka_settings, topics, queries)


async def test_an_interrupted_rebuild_leaves_the_live_copy_serving_and_a_rerun_starts_clean(
        settings: Settings, kafka_settings: KafkaSettings, topics: Topics) -> None:
    await produce_states(kafka_settings, topics, [
        r for i in range(60) for r in chat_states(f"a{i}", f"alpha {i}", ["hello"])])
    seen = _Recorded()
    async with _running(settings, topics, seen) as (index, _):
        await eventually(lambda: _at_least(index, "alpha", 60), what="the live index")
        # Interrupted while filling the shadow (Ctrl-C: the task is cancelled).
        consumer, shadow_index = _rebuilder(settings, _Recorded())
        await shadow_index.open()
        task = asyncio.create_task(rebuild_consumer(consumer, kafka_settings, topics,
                                                    out=io.StringIO(), max_records=10))
        await shadow_index.applied.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Interrupted at the switch (an error just before it).
        consumer2, index2 = _rebuilder(settings, _Recorded())
        await index2.open()

        async def fail() -> None:
            raise RuntimeError("interrupted")

        with pytest.raises(RuntimeError, match="interrupted"):
            await rebuild_consumer(consumer2, kafka_settings, topics, out=io.StringIO(),
                                   before_switch=fail)
        # A leftover a killed rebuild would leave: a copy that is not live, half filled.
        copies = index2.copies
        await copies.create("v7")
        assert await copies.live() == "v1"
        await index2.close()
        await shadow_index.close()
        await index.resume_offsets(())
        assert index.live_name == "v1" and await _count(index, "alpha") == 60

        out = io.StringIO()
        consumer3, index3 = _rebuilder(settings, _Recorded())
        await index3.open()
        try:
            report = await rebuild_consumer(consumer3, kafka_settings, topics, out=out)
            assert await index3.copies.names() == [report.copy]  # leftovers and v1 dropped
        finally:
            await index3.close()
        assert report.copy == "v8" and report.records == 120  # 60 chats, 60 messages
        await eventually(lambda: _following(index, "v8"), what="the live group on the new copy")
        assert await _count(index, "alpha") == 60


async def _following(index: SwitchingSearchIndex, name: str) -> bool:
    return index.live_name == name


async def _at_least(index: SwitchingSearchIndex, q: str, n: int) -> bool:
    return await _count(index, q) >= n


async def _more_than(index: SwitchingSearchIndex, q: str, n: int) -> bool:
    return await _count(index, q) > n


async def _topic_positions(k: KafkaSettings, topics: Topics) -> set[tuple[str, int, int]]:
    from consumers.groups import partitions
    from parley.kafka.clients import make_consumer

    c = make_consumer(k, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        tps = await partitions(k, [topics.state("chat")])
        end = await c.end_offsets(tps)
        return {(tp.topic, tp.partition, o) for tp in tps for o in range(end[tp])}
    finally:
        await c.stop()


async def test_the_cli_rebuilds_search_and_refuses_what_it_cannot_in_one_line(
        tmp_path: Path, kafka_settings: KafkaSettings, topics: Topics) -> None:
    await produce_states(kafka_settings, topics, [
        r for i in range(30) for r in chat_states(f"a{i}", f"alpha {i}", ["hello"])])
    for name, why in (("nosuch", "no consumer named 'nosuch'"),
                      ("examples.message_counts:message_counts", "keeps no state")):
        code, out = await parley(tmp_path, kafka_settings, "consumers", "rebuild", name)
        assert code == 1 and why in out and len(out.strip().splitlines()) == 1, out
    assert os.listdir(tmp_path) == ["cli.toml"]  # nothing changed

    code, out = await parley(tmp_path, kafka_settings, "consumers", "rebuild", "search")
    assert code == 0, out
    assert "replaying 60 records" in out and "records/s, ETA" in out
    assert "rebuilt search v2: 60 records" in out and "live copy v1 -> v2" in out
    assert (tmp_path / "search.db.live").read_text() == "v2\n"
    assert not (tmp_path / "search.db").exists()
    index = search_index_for(Settings(kafka=kafka_settings, data_dir=str(tmp_path)))
    await index.open()
    try:
        assert await _count(index, "alpha") == 30  # type: ignore[arg-type]
    finally:
        await index.close()


async def test_after_a_switch_store_migrate_migrates_the_live_search_copy(pg_url: str) -> None:
    from consumers.search.pg_copies import PgCopies
    from parley.pg.url import parse_postgres_url
    from parley.store_cli import migrate_postgres

    copies = PgCopies(pg_url)
    await copies.open()
    try:
        await copies.create("v2")
        await copies.set_live("v2", {})
        lines, _ = await migrate_postgres(pg_url, apply=False)  # the store is pending: empty
    finally:
        await copies.drop("v2")
        await copies.close()
    schema = parse_postgres_url(pg_url).schema
    assert any(line.startswith("search") and f"schema {schema}_search_v2)" in line
                               and "up to date" in line for line in lines), lines


def test_the_search_consumer_is_rebuildable_with_the_index_of_its_settings(tmp_path: Path) -> None:
    from consumers.registry import ConsumerContext
    from consumers.search.consumer import build

    built = build(ConsumerContext(settings=Settings(data_dir=str(tmp_path)), name="search",
                                  config={}))
    assert isinstance(built.rebuildable, SwitchingSearchIndex)

"""``parley projections rebuild analytics`` (projector/analytics_rebuild.py), on both stores:
a changed definition reaches the reports at the switch and not before; the reports answer
from the old roll-ups throughout the walk; commits made during the walk (by another
connection, as the running projector makes them) are neither lost nor counted twice — the
rebuilt roll-ups equal those of a store that committed every final row once; an interrupted
rebuild leaves the live roll-ups as they were; and, generated, any interleaving of walk steps
and commits gives the roll-ups made afresh."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import asyncpg
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import domain as d
from contracts.state import AgentMetrics, ChatMetrics
from parley.pg.migrate import quote_ident
from projector import analytics, views
from projector.analytics_rebuild import HasShadow, rebuild_analytics
from projector.analytics_shadow import WALKED, StaleRebuild
from projector.sqlite_store import SqliteStore
from projector.store import Store
from projector.views import Row
from tests.kit.analytics_world import (
    Folded,
    Opener,
    afresh,
    chat_events,
    online,
    tallies,
    wait_mean,
    world,
)
from tests.kit.fold_events import at, common
from tests.kit.live_projector import eventually


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url = request.getfixturevalue("pg_url")
    assert isinstance(url, str)
    return url


@pytest.fixture
async def opener(store_url: str) -> AsyncIterator[Opener]:
    """Opens stores on one database (the first creates the live copy ``p1``): one plays the
    running projector, another the rebuild's command."""
    url = store_url
    opened: list[Store] = []

    async def open_() -> Store:
        from projector.stores import open_store

        store = open_store(url)
        await store.open()
        if not opened:
            await store.create_projection("p1")
            await store.set_live("p1")
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


async def test_a_changed_definition_reaches_the_reports_at_the_switch(
        opener: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 chats folded with wait_s as defined; then wait_s is redefined as twice that, and
    an agent's status_changes as 100 more. Through every step of the walk the reports keep
    the old mean and the chats and agents their old views; after it, the new ones, and a
    chat the projector committed during the walk (after its step) keeps the view it wrote."""
    runner, command = await opener(), await opener()
    folded = Folded()
    await runner.commit("p1", folded.rows(world(range(40))), {})
    before = await wait_mean(runner)
    assert before > 10
    old_views = {(kind, id): await runner.get_view("p1", kind, id)
                 for kind, id in (("chat", "c000"), ("chat", "c039"), ("agent", "a1"))}

    real, real_agent = analytics.chat_metrics, analytics.agent_metrics

    def doubled(s: Any, closed_at: Any) -> ChatMetrics:
        m = real(s, closed_at)
        return msgspec.structs.replace(m, wait_s=None if m.wait_s is None else 2 * m.wait_s)

    def more(s: Any) -> AgentMetrics:
        return msgspec.structs.replace(real_agent(s), status_changes=100)

    monkeypatch.setattr(views, "chat_metrics", doubled)
    monkeypatch.setattr(views, "agent_metrics", more)
    seen: list[float] = []
    late = d.MessagePosted(**common(900), chat_id="c000", message_id="m9", text="thanks",
                           author=d.Author(role="visitor"), posted_at=at(900))

    async def read(done: int) -> None:
        seen.append(await wait_mean(runner))
        for (kind, id), view in old_views.items():
            if (kind, id) != ("chat", "c000") or done <= 9:
                assert await runner.get_view("p1", kind, id) == view
        if done == 9:  # c000 walked; the projector (new code) commits a late message
            await runner.commit("p1", folded.rows([late]), {})

    report = await rebuild_analytics(command, chunk=7, out=io.StringIO(), after_step=read)
    assert report.name == "p1" and report.walked == 42  # 2 agents, 40 chats
    # The old figures after every step, but for c000's own (its wait of 10 s counted as 20 s
    # once the projector committed it with the new code).
    assert seen == [before] * 2 + [pytest.approx(before + 10 / 40)] * 5
    assert await wait_mean(runner) == pytest.approx(2 * before)
    assert await tallies(runner) == await afresh(folded.final())
    for row in folded.final():
        if row.kind in ("chat", "agent"):
            assert await runner.get_view("p1", row.kind, row.id) == row.view, row.id
    chat = orjson.loads(await runner.get_view("p1", "chat", "c000") or b"")
    assert chat["metrics"]["visitor_messages"] == 2  # the late message is in
    agent = orjson.loads(await runner.get_view("p1", "agent", "a1") or b"")
    assert agent["metrics"]["status_changes"] == 100


async def test_commits_during_the_walk_count_once(opener: Opener) -> None:
    """Chats and agents' online spells committed before the rebuild, then, between its steps,
    new chats, more events of chats walked and not yet walked, and more online spells: the
    rebuilt roll-ups equal those of every final row committed once."""
    runner, command = await opener(), await opener()
    folded = Folded()
    events = {n: chat_events(n) for n in range(30)}
    # Before: chats 0-19 up to their acceptance, and two agents' spells.
    await runner.commit("p1", folded.rows([e for n in range(20) for e in events[n][:3]]), {})
    agents = [online("a1", 0, 3600, 1), online("a2", 600, 7200, 1)]
    await runner.commit("p1", agents, {})
    late = [*(e for n in range(20) for e in events[n][3:]), *(e for n in range(20, 30) for e in events[n])]

    moves: list[Row] = []

    async def commit_more(done: int) -> None:
        batch, late[:] = late[:9], late[9:]
        rows = folded.rows(batch)
        if done <= 12:
            moves.append(online("a1", 7200 + done * 60, 7200 + done * 60 + 30, 2 + done))
            rows.append(moves[-1])
        await runner.commit("p1", rows, {})

    await rebuild_analytics(command, chunk=5, out=io.StringIO(), after_step=commit_more)
    if late:
        await runner.commit("p1", folded.rows(late), {})
    assert len(moves) == 3  # after the agents' step and two chats' steps
    assert await tallies(runner) == await afresh([*folded.final(), *agents, *moves])


async def test_a_projector_committing_throughout_loses_nothing(
        opener: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    """The projector (another connection) commits batch after batch — events of chats walked,
    being walked and not yet walked, new chats — concurrently with the whole rebuild (steps
    of 3 chats), after a definition changed: every roll-up and view ends as if each final row
    had been committed once."""
    runner, command = await opener(), await opener()
    folded = Folded()
    events = world(range(60))
    first = [e for e in events if not isinstance(e, d.ChatClosed)]  # then the closes
    await runner.commit("p1", folded.rows(first[:150]), {})
    rest = first[150:] + [e for e in events if isinstance(e, d.ChatClosed)]
    real = analytics.chat_metrics
    monkeypatch.setattr(views, "chat_metrics", lambda s, closed_at: msgspec.structs.replace(
        real(s, closed_at), agent_messages=3))
    walked = [0]
    seen: set[int] = set()  # how far the walk was at each commit
    step, committed, over = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def projector() -> None:
        # One batch after each walk step (handed over by events, so the interleaving is the
        # same whatever the scheduler does), then the rest once the rebuild has switched.
        while rest:
            if not over.is_set():
                await step.wait()
                step.clear()
            batch, rest[:] = rest[:2], rest[2:]
            await runner.commit("p1", folded.rows(batch), {})
            seen.add(walked[-1])
            committed.set()

    async def stepped(done: int) -> None:
        walked.append(done)
        if rest:
            committed.clear()
            step.set()
            await committed.wait()

    writer = asyncio.create_task(projector())
    await rebuild_analytics(command, chunk=3, out=io.StringIO(), after_step=stepped)
    over.set()
    step.set()
    await writer
    # A commit after each step of the walk, and more after the switch.
    assert set(walked[1:]) <= seen and len(seen) >= 3
    final = folded.final()
    assert await tallies(runner) == await afresh(final)
    for row in final:
        if row.kind in ("chat", "agent"):
            assert await runner.get_view("p1", row.kind, row.id) == row.view


async def test_an_interrupted_rebuild_leaves_the_live_roll_ups(
        opener: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped after its second step (as by Ctrl-C), a rebuild after a changed definition
    changes no live roll-up nor view and drops its shadow; one killed outright (begun, never
    ended) leaves its shadow marked, moved by later commits, and the next rebuild starts
    afresh and ends right."""
    runner, command = await opener(), await opener()
    folded = Folded()
    await runner.commit("p1", folded.rows(world(range(12))), {})
    live = await tallies(runner)
    stored = {(row.kind, row.id): await runner.get_view("p1", row.kind, row.id)
              for row in folded.final()}
    real = analytics.chat_metrics
    monkeypatch.setattr(views, "chat_metrics", lambda s, closed_at: msgspec.structs.replace(
        real(s, closed_at), transfers=7))

    async def interrupt(done: int) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rebuild_analytics(command, chunk=3, out=io.StringIO(), after_step=interrupt)
    assert await tallies(runner) == live
    assert {key: await runner.get_view("p1", *key) for key in stored} == stored
    assert isinstance(command, HasShadow)
    assert await command.analytics_shadow().shadowed() == []

    shadow = command.analytics_shadow()
    await shadow.begin("p1")  # then killed: nothing drops the shadow
    await shadow.walk("p1", "chat", "", 4)
    assert await shadow.shadowed() == ["p1"]
    await runner.commit("p1", folded.rows([e for n in range(12, 15) for e in chat_events(n)]), {})
    assert await tallies(runner) != live  # the live roll-ups still move
    report = await rebuild_analytics(command, chunk=4, out=io.StringIO())
    assert report.walked == 17  # 2 agents, 15 chats
    assert await shadow.shadowed() == []
    assert await tallies(runner) == await afresh(folded.final())
    for row in folded.final():
        assert await runner.get_view("p1", row.kind, row.id) == row.view


async def test_progress_then_another_rebuild(opener: Opener) -> None:
    command = await opener()
    folded = Folded()
    await command.commit("p1", folded.rows(world(range(5))), {})
    out = io.StringIO()
    await rebuild_analytics(command, chunk=2, out=out, progress_every_s=0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("rebuild analytics of p1: 2/7 chats and agents (28.6%), ")
    assert "/s, ETA " in lines[0]
    assert lines[-1].startswith("rebuild analytics of p1: 7/7 chats and agents (100.0%)")
    # Switched in, the shadow's tables are the live ones: commits and a second rebuild (its
    # shadow made anew under the same names) carry on.
    await command.commit("p1", folded.rows([e for n in range(5, 8) for e in chat_events(n)]), {})
    await rebuild_analytics(command, chunk=3, out=io.StringIO())
    await command.commit("p1", folded.rows(chat_events(8)), {})
    assert await tallies(command) == await afresh(folded.final())
    assert (await command.report_live("p1"))[0] == 0  # the open chats' index is back


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[list[list[d.DomainEvent]], list[list[d.DomainEvent]], int]:
    """Events of up to 8 chats, in any order and some twice, split into batches committed
    before the rebuild and batches committed between its steps, and a step size."""
    events = [e for n in draw(st.sets(st.integers(0, 20), min_size=1, max_size=8))
              for e in chat_events(n)]
    events += draw(st.lists(st.sampled_from(events), max_size=5))
    order = draw(st.permutations(events))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=6)))
    batches = [order[i:j] for i, j in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    split = draw(st.integers(0, len(batches)))
    return batches[:split], batches[split:], draw(st.integers(1, 4))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(interleavings())
async def test_any_interleaving_of_steps_and_commits_gives_the_roll_ups_afresh(
        case: tuple[list[list[d.DomainEvent]], list[list[d.DomainEvent]], int]) -> None:
    """Folded before with the old definitions, then with the new ones (every handle time
    counted 1 s longer) during and after the walk: the roll-ups are those of every final row
    committed once, and every chat's view is its final state's, by the new definitions."""
    before, during, chunk = case
    store = SqliteStore(":memory:")
    await store.open()
    real = analytics.chat_metrics

    def longer(s: Any, closed_at: Any) -> ChatMetrics:
        m = real(s, closed_at)
        return msgspec.structs.replace(m, handle_s=None if m.handle_s is None else m.handle_s + 1)

    try:
        await store.create_projection("p1")
        await store.set_live("p1")
        folded = Folded()
        for batch in before:
            await store.commit("p1", folded.rows(batch), {})
        pending = list(during)

        async def commit_one(done: int) -> None:
            if pending:
                await store.commit("p1", folded.rows(pending.pop(0)), {})

        with mock.patch.object(views, "chat_metrics", longer):
            await rebuild_analytics(store, chunk=chunk, out=io.StringIO(), after_step=commit_one)
            for batch in pending:
                await store.commit("p1", folded.rows(batch), {})
            final = folded.final()
            assert await tallies(store) == await afresh(final)
        for row in final:
            if row.kind == "chat":
                assert await store.get_view("p1", "chat", row.id) == row.view
    finally:
        await store.close()


async def test_postgres_a_step_waits_for_a_commit_moving_the_same_chat(pg_url: str) -> None:
    """PostgreSQL, several writers: a commit of chat c000 has moved the shadow (holding its
    fact row) but not yet committed, when a step of the walk reaches c000. The step waits for
    it and reads the state it commits (reading first would put the older state's fact over
    the commit's): the shadow ends with the latest fact, counted once."""
    from parley.pg.url import parse_postgres_url
    from projector import pg_rollups
    from projector.pg_schema import CopyTables
    from projector.postgres_store import PostgresStore

    options = parse_postgres_url(pg_url)
    store = PostgresStore(options)
    await store.open()
    conn, watch = await asyncpg.connect(options.dsn), await asyncpg.connect(options.dsn)
    try:
        await store.create_projection("p1")
        await store.set_live("p1")
        folded = Folded()
        await store.commit("p1", folded.rows(world(range(3))[:-1]), {})  # c002 not closed
        shadow = store.analytics_shadow()
        await shadow.begin("p1")
        await shadow.walk("p1", "agent", "", 10)
        tables = CopyTables(quote_ident(options.schema), "p1")
        late = d.MessagePosted(**common(600), chat_id="c000", message_id="m7", text="one more",
                               author=d.Author(role="agent"), posted_at=at(600))
        [row] = [r for r in folded.rows([late]) if r.kind == "chat"]
        async with conn.transaction():  # the projector's commit, held open half way
            await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", tables.analytics_key)
            await conn.execute(f"UPDATE {tables.rows} SET state = $1, view = $2 "  # noqa: S608
                               "WHERE kind = 'chat' AND id = 'c000'", row.state, row.view)
            await pg_rollups.apply(conn, tables, [row])
            step = asyncio.create_task(shadow.walk("p1", "chat", "", 10))

            async def waiting() -> bool:
                return bool(await watch.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%facts_next%'"))

            await eventually(waiting, "the step to wait for the commit's row lock", 10)
            assert not step.done()
        assert await step == ("c002", 3)
        await shadow.switch("p1")
        assert await tallies(store) == await afresh(folded.final())
    finally:
        await conn.close()
        await watch.close()
        await store.close()


async def test_a_second_rebuild_takes_over_from_the_first(opener: Opener) -> None:
    """Two rebuilds of one copy's analytics (two operators): once the second began, the
    first stops at its next step without touching the second's shadow, and the second ends
    with the right roll-ups."""
    runner, first, second = await opener(), await opener(), await opener()
    folded = Folded()
    await runner.commit("p1", folded.rows(world(range(10))), {})

    async def start_another(done: int) -> None:
        if done == 2:  # the agents walked: the other operator starts
            report = await rebuild_analytics(second, chunk=3, out=io.StringIO())
            assert report.walked == 12

    with pytest.raises(StaleRebuild, match=r"^another `parley projections rebuild analytics` "
                                           r"of 'p1' began since this one"):
        await rebuild_analytics(first, chunk=3, out=io.StringIO(), after_step=start_another)
    assert isinstance(first, HasShadow)
    assert await first.analytics_shadow().shadowed() == []
    assert await tallies(runner) == await afresh(folded.final())

    # Begun by the first, taken over by the second (still walking), then the first gives up:
    # the second's shadow stays and its switch is right.
    assert isinstance(second, HasShadow)
    one, two = first.analytics_shadow(), second.analytics_shadow()
    await one.begin("p1")
    await two.begin("p1")
    await one.abandon("p1")
    assert await two.shadowed() == ["p1"]
    for kind in WALKED:
        assert (await two.walk("p1", kind, "", 100))[1] > 0
    await two.switch("p1")
    assert await tallies(runner) == await afresh(folded.final())

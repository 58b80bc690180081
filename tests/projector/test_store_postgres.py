"""The store contract against PostgreSQL, plus PostgreSQL's own promises: URL options and
secrecy, versioned migrations, several writers (merged visitor rows, offsets that never move
back, lock waits that fail retriably), long projection names, atomicity under SIGKILL.

The server is real (tests/kit/postgres.py); every test gets a schema of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from contracts.domain import VisitorSeen
from parley.errors import StoreError, StoreUnavailable, UnsupportedStore
from parley.pg.migrate import Migration, migrate
from parley.pg.url import PostgresOptions, parse_postgres_url
from projector.errors import LiveProjectionDrop, Overloaded
from projector.fold import apply
from projector.pg_schema import STORE_MIGRATIONS, CopyTables, copy_ddl
from projector.postgres_store import PostgresStore, StoreConflict
from projector.states import AggregateRef, VisitorFold, decode_state
from projector.store import Store
from projector.stores import open_store
from projector.views import row_for
from tests.kit.live_projector import eventually
from tests.kit.postgres import with_options
from tests.kit.rollup_contract import concurrent_writers_add_up
from tests.kit.store_contract import StoreContract, chat, visitor
from tests.kit.store_crash import kill_mid_commits


async def _opened(url: str) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    await store.open()
    return store


class PgHarness:
    """A schema of its own; failures are injected as a trigger, from a second connection."""

    def __init__(self, url: str, store: PostgresStore) -> None:
        self.url = url
        self.store: Store = store
        self.options = parse_postgres_url(url)

    async def reopen(self) -> Store:
        await self.store.close()
        self.store = await _opened(self.url)
        return self.store

    async def second_store(self) -> Store:
        return await _opened(self.url)

    @contextlib.asynccontextmanager
    async def break_offset_writes(self, projection: str) -> AsyncIterator[None]:
        # A real failure inside PostgreSQL, mid-transaction: the rows' upsert has run when
        # the offsets' insert aborts.
        schema = f'"{self.options.schema}"'
        conn = await asyncpg.connect(self.options.dsn)
        try:
            await conn.execute(
                f"CREATE FUNCTION {schema}.break_offsets() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN RAISE EXCEPTION 'injected failure while writing offsets'; END$$")
            await conn.execute(
                f'CREATE TRIGGER break_offsets BEFORE INSERT ON {schema}."p_{projection}_offsets" '
                f"FOR EACH ROW EXECUTE FUNCTION {schema}.break_offsets()")
            yield
        finally:
            await conn.execute(f'DROP TRIGGER IF EXISTS break_offsets ON {schema}."p_{projection}_offsets"')
            await conn.execute(f"DROP FUNCTION IF EXISTS {schema}.break_offsets()")
            await conn.close()


class TestPostgresStore(StoreContract):
    @pytest.fixture
    async def harness(self, pg_url: str) -> AsyncIterator[PgHarness]:
        harness = PgHarness(pg_url, await _opened(pg_url))
        yield harness
        await harness.store.close()

    async def test_concurrent_writers_add_up_their_tallies(self, store: Store, harness: PgHarness
                                                           ) -> None:
        second = await harness.second_store()
        try:
            await concurrent_writers_add_up(store, second)
        finally:
            await second.close()


# ---------------------------------------------------------------------------- URLs


def test_url_options_are_split_from_the_dsn() -> None:
    options = parse_postgres_url(
        "postgres://parley:s3cr%40t@db.example:6543/parley?schema=tenant_1&pool_size=9"
        "&sslmode=require&migrate=off&lock_timeout_ms=250")
    assert options.dsn == "postgresql://parley:s3cr%40t@db.example:6543/parley?sslmode=require"
    assert options.where == "db.example:6543/parley"
    assert (options.schema, options.pool_size, options.migrate, options.lock_timeout_ms) == (
        "tenant_1", 9, "off", 250)
    default = parse_postgres_url("postgresql://db/x")
    assert (default.schema, default.pool_size, default.migrate) == ("public", 5, "auto")
    assert default.read_pool_size == 3
    assert parse_postgres_url("postgresql://db/x?read_pool=7").read_pool_size == 7
    assert (default.read_queue, parse_postgres_url("postgresql://db/x?read_queue=0").read_queue) == (64, 0)


@pytest.mark.parametrize(("query", "says"), [
    ("schema=1abc", "schema"),
    ('schema=a"b', "schema"),
    ("pool_size=0", "pool_size"),
    ("pool_size=many", "integers"),
    ("read_pool=0", "read_pool"),
    ("read_pool=101", "read_pool"),
    ("read_queue=-1", "read_queue"),
    ("read_queue=lots", "integers"),
    ("migrate=later", "migrate"),
    ("lock_timeout_ms=-1", "lock_timeout_ms"),
])
def test_bad_options_are_explained_without_the_password(query: str, says: str) -> None:
    with pytest.raises(UnsupportedStore, match=says) as failure:
        open_store(f"postgresql://parley:hunter2@db/parley?{query}")
    assert "hunter2" not in str(failure.value)


async def test_unreachable_server_is_retriable_and_never_shows_the_password() -> None:
    store = open_store("postgresql://parley:hunter2@127.0.0.1:1/parley")
    with pytest.raises(StoreUnavailable) as failure:
        await store.open()
    assert failure.value.retriable
    assert "hunter2" not in str(failure.value) and "127.0.0.1:1/parley" in str(failure.value)
    await store.close()


async def test_a_saturated_read_pool_never_delays_a_commit(pg_url: str) -> None:
    """The query API's reads have connections of their own: with every one of them taken,
    the runner's path (commit, offsets, the live projection) goes on at once."""
    store = await _opened(with_options(pg_url, pool_size="1", read_pool="2"))
    try:
        await store.create_projection("p1")
        await store.set_live("p1")
        read_pool = store._read_pool  # the only way to hold every read connection
        assert read_pool is not None
        held = [await read_pool.acquire() for _ in range(2)]
        try:
            queued = asyncio.create_task(store.get_view("p1", "chat", "c1"))
            # The API's other lookup, the live copy's name per request, reads there too.
            api_live = asyncio.create_task(store.live_projection(query=True))
            await asyncio.wait_for(store.commit("p1", [chat("c1")], {("t", 0): 1}), 5)
            assert await asyncio.wait_for(store.offsets("p1"), 5) == {("t", 0): 1}
            assert await asyncio.wait_for(store.live_projection(), 5) == "p1"
            assert not queued.done()  # the read waits for its own pool, not the commit's
            assert not api_live.done()
        finally:
            for conn in held:
                await read_pool.release(conn)
        assert await asyncio.wait_for(queued, 5) is not None
        assert await asyncio.wait_for(api_live, 5) == "p1"
    finally:
        await store.close()


async def test_a_flood_of_slow_reads_is_bounded_and_never_blocks_a_commit(pg_url: str) -> None:
    """Reads stuck in PostgreSQL (behind a lock another session holds on the copy they read)
    fill the read pool; ``read_queue`` more wait, one more is refused at once with Overloaded,
    and the runner's path goes on throughout."""
    store = await _opened(with_options(pg_url, pool_size="1", read_pool="2", read_queue="1"))
    options = parse_postgres_url(pg_url)
    locker = await asyncpg.connect(options.dsn)
    try:
        for name in ("p1", "p2"):
            await store.create_projection(name)
        await store.set_live("p1")
        await store.commit("p1", [chat("c1")], {("t", 0): 1})
        lock = locker.transaction()
        await lock.start()
        await locker.execute(f'LOCK TABLE "{options.schema}"."p_p1_rows" IN ACCESS EXCLUSIVE MODE')
        try:
            flood = [asyncio.create_task(store.get_view("p1", "chat", "c1")) for _ in range(3)]

            async def stuck() -> bool:  # two reads wait on the lock, one for a connection
                await locker.execute("SELECT pg_stat_clear_snapshot()")  # else one per transaction
                waiting = await locker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'parley' "
                    "AND wait_event_type = 'Lock'")
                return bool(waiting == 2 and store._read_queue.waiting == 1)

            await eventually(stuck, "the read pool to fill and one read to queue", timeout_s=10)
            with pytest.raises(Overloaded, match="1 reads are waiting"):
                await store.get_view("p1", "chat", "c1")
            with pytest.raises(Overloaded):
                await store.live_projection(query=True)
            await asyncio.wait_for(store.commit("p2", [chat("c2")], {("t", 0): 2}), 5)
            assert await asyncio.wait_for(store.offsets("p1"), 5) == {("t", 0): 1}
            assert await asyncio.wait_for(store.live_projection(), 5) == "p1"
            assert not any(task.done() for task in flood)
        finally:
            await lock.rollback()
        assert await asyncio.wait_for(asyncio.gather(*flood), 10) == [chat("c1").view] * 3
        assert await store.get_view("p2", "chat", "c2") == chat("c2").view
    finally:
        await locker.close()
        await store.close()


# ---------------------------------------------------------------------------- migrations


async def test_migrations_are_recorded_once_and_a_newer_schema_is_refused(pg_url: str) -> None:
    options = parse_postgres_url(pg_url)
    store = await _opened(pg_url)
    assert store.last_migration is not None
    assert [m.version for m in store.last_migration.applied] == [m.version for m in STORE_MIGRATIONS]
    await store.close()
    again = await _opened(pg_url)  # a second start applies nothing
    assert again.last_migration is not None and again.last_migration.applied == ()
    await again.close()
    conn = await asyncpg.connect(options.dsn)
    try:
        rows = await conn.fetch(
            f'SELECT component, version FROM "{options.schema}".parley_migrations')  # noqa: S608
        assert sorted((r[0], r[1]) for r in rows) == [("store", m.version) for m in STORE_MIGRATIONS]
        await conn.execute(f'INSERT INTO "{options.schema}".parley_migrations VALUES '  # noqa: S608
                           "('store', 999, 'from the future', now())")
    finally:
        await conn.close()
    newer = open_store(pg_url)
    with pytest.raises(StoreError, match="newer than this Parley"):
        await newer.open()
    await newer.close()


async def test_migrate_off_refuses_an_unmigrated_schema(pg_url: str) -> None:
    store = open_store(with_options(pg_url, migrate="off"))
    with pytest.raises(StoreError, match="parley store migrate"):
        await store.open()
    await store.close()
    await (await _opened(pg_url)).close()  # migrate=auto (the default) applies them
    ready = await _opened(with_options(pg_url, migrate="off"))
    await ready.close()


async def test_concurrent_starts_migrate_once(pg_url: str) -> None:
    options = parse_postgres_url(pg_url)
    steps = (*STORE_MIGRATIONS, Migration(version=len(STORE_MIGRATIONS) + 1, description="slow",
                                          statements=lambda s: ["SELECT pg_sleep(0.2)"]))
    conns = [await asyncpg.connect(options.dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c, options.schema, "store", steps) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(len(r.applied) for r in results) == [0, 0, 0, len(steps)]


async def _schema_1_with_copies(options: PostgresOptions, live: str, names: dict[str, str]) -> None:
    """A schema as version 1 left it: copies named in any case (name -> id of one chat row)."""
    quoted = f'"{options.schema}"'
    conn = await asyncpg.connect(options.dsn)
    try:
        await migrate(conn, options.schema, "store", STORE_MIGRATIONS[:1])
        for name, chat_id in names.items():
            tables = CopyTables(quoted, name)
            for statement in copy_ddl(tables):
                if "agent_chats" not in statement:  # version 6's index: not yet
                    await conn.execute(statement)
            row = chat(chat_id)
            await conn.execute(f"INSERT INTO {tables.rows} (kind, id, state, view, sort_key) "  # noqa: S608
                               "VALUES ('chat', $1, $2, $3, '5')", chat_id, row.state, row.view)
            await conn.execute(f"INSERT INTO {tables.offsets} VALUES ('t', 0, $1)", len(chat_id))  # noqa: S608
            await conn.execute(f"INSERT INTO {quoted}.parley_projections (name) VALUES ($1)", name)  # noqa: S608
        await conn.execute(f"INSERT INTO {quoted}.parley_live VALUES (1, $1)", live)  # noqa: S608
    finally:
        await conn.close()


async def test_version_2_renames_copies_to_lower_case(pg_url: str) -> None:
    options = parse_postgres_url(pg_url)
    long = "Long_" + "x" * 59  # hashed into its table names, from a name that changes now
    await _schema_1_with_copies(options, "Blue", {"Blue": "c1", "v1": "c22", long: "c333"})
    store = await _opened(pg_url)
    try:
        assert store.last_migration is not None
        assert [m.version for m in store.last_migration.applied] == [2, 3, 4, 5, 6, 7]
        assert await store.list_projections() == ["blue", long.lower(), "v1"]
        assert await store.live_projection() == "blue"
        for name, chat_id in (("blue", "c1"), ("v1", "c22"), (long.lower(), "c333")):
            assert await store.get_view(name, "chat", chat_id) == chat(chat_id).view
            assert await store.offsets(name) == {("t", 0): len(chat_id)}
        with pytest.raises(LiveProjectionDrop):
            await store.drop_projection("BLUE")
        await store.drop_projection(long)  # the renamed tables are the ones dropped
        conn = await asyncpg.connect(options.dsn)
        try:
            tables = {r[0] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1", options.schema)}
        finally:
            await conn.close()
        assert {t for t in tables if t.startswith("p_")} == {  # version 5 added the roll-ups
            f"p_{name}_{suffix}" for name in ("blue", "v1")
            for suffix in ("rows", "offsets", "facts", "rollups")}
    finally:
        await store.close()


async def test_version_2_stops_at_copies_differing_only_in_case(pg_url: str) -> None:
    options = parse_postgres_url(pg_url)
    await _schema_1_with_copies(options, "v1", {"v1": "c1", "V1": "c2"})
    store = open_store(pg_url)
    with pytest.raises(StoreError, match=r"copies 'V1', 'v1', whose names differ only in case.*"
                                         r"drop 'V1' with the Parley that made them"):
        await store.open()
    await store.close()
    conn = await asyncpg.connect(options.dsn)  # nothing changed: still version 1, both copies
    try:
        quoted = f'"{options.schema}"'
        assert await conn.fetchval(f"SELECT max(version) FROM {quoted}.parley_migrations") == 1  # noqa: S608
        assert sorted(r[0] for r in await conn.fetch(
            f"SELECT name FROM {quoted}.parley_projections")) == ["V1", "v1"]  # noqa: S608
    finally:
        await conn.close()


async def test_version_6_indexes_the_chats_of_existing_copies_by_agent(pg_url: str) -> None:
    """A copy made before version 6 gets the agent index, built from the rows it has, and
    the chat listing by agent can be a range of it (not a walk of every chat)."""
    options = parse_postgres_url(pg_url)
    quoted = f'"{options.schema}"'
    conn = await asyncpg.connect(options.dsn)
    try:
        await migrate(conn, options.schema, "store", STORE_MIGRATIONS[:5])
        tables = CopyTables(quoted, "v1")
        for statement in copy_ddl(tables):
            if "agent_chats" not in statement:
                await conn.execute(statement)
        for row in (chat("c1", agent="a1", sort_key="2"), chat("c2", agent="a2", sort_key="1"),
                    chat("c3", agent="a1", sort_key="0")):
            await conn.execute(f"INSERT INTO {tables.rows} (kind, id, state, view, agent_id, "  # noqa: S608
                               "sort_key) VALUES ('chat', $1, $2, $3, $4, $5)",
                               row.id, row.state, row.view, row.agent_id, row.sort_key)
        await conn.execute(f"INSERT INTO {quoted}.parley_projections (name) VALUES ('v1')")  # noqa: S608
    finally:
        await conn.close()
    store = await _opened(pg_url)
    try:
        assert store.last_migration is not None
        assert [m.version for m in store.last_migration.applied] == [6, 7]
        assert (await store.list_chats("v1", agent="a1"))[0] == [chat("c3").view, chat("c1").view]
    finally:
        await store.close()
    conn = await asyncpg.connect(options.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = $1 "
                                   "AND indexname = 'p_v1_agent_chats'", options.schema) == 1
        await conn.execute("SET enable_seqscan = off")  # three rows: make the planner show its index
        plan = "\n".join(r[0] for r in await conn.fetch(
            f"EXPLAIN SELECT id FROM {tables.rows} WHERE kind = 'chat' AND agent_id = 'a1' "  # noqa: S608
            "ORDER BY sort_key, id LIMIT 21"))
        assert "p_v1_agent_chats" in plan and "Sort" not in plan, plan
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- several writers

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _seen(visitor_id: str, chat_id: str, minute: int, name: str | None = None) -> VisitorSeen:
    return VisitorSeen(event_id=f"e-{chat_id}-{minute}", occurred_at=T0 + timedelta(minutes=minute),
                       provider="natterly", source="acme", visitor_id=visitor_id, chat_id=chat_id,
                       name=name)


async def test_concurrent_writers_of_one_visitor_lose_nothing(pg_url: str) -> None:
    """Two instances fold the same visitor from stale states (each only its own events) and
    commit at once, many times: the stored visitor is the fold of every event."""
    stores = [await _opened(pg_url), await _opened(pg_url)]
    await stores[0].create_projection("p1")
    ref = AggregateRef("visitor", "v1")
    events = [_seen("v1", f"chat-{i}", i, name=f"name {i}") for i in range(40)]
    try:
        async def writer(n: int) -> None:
            state = None  # this instance's cache: never refreshed from the store
            for event in events[n::2]:
                state = apply(ref, state, event)
                await stores[n].commit("p1", [row_for(ref, state)], {("t", n): events.index(event) + 1})

        await asyncio.gather(writer(0), writer(1))
        stored = await stores[0].load("p1", [ref])
        expected = None
        for event in reversed(events):  # any order: the fold commutes
            expected = apply(ref, expected, event)
        assert expected is not None
        assert stored[ref] == row_for(ref, expected).state
        merged = decode_state("visitor", stored[ref])
        assert isinstance(merged, VisitorFold) and len(merged.chats) == 40
        assert merged.name is not None and merged.name.value == "name 39"
        assert await stores[0].get_view("p1", "visitor", "v1") == row_for(ref, expected).view
    finally:
        for store in stores:
            await store.close()


async def test_offsets_never_move_back(pg_url: str) -> None:
    store = await _opened(pg_url)
    try:
        await store.create_projection("p1")
        await store.commit("p1", [chat("c1", version=1)], {("t", 0): 10, ("t", 1): 3})
        with pytest.raises(StoreConflict) as failure:  # a zombie's late batch
            await store.commit("p1", [chat("c1", version=2), chat("c2")], {("t", 0): 7, ("t", 1): 5})
        assert failure.value.retriable
        assert await store.offsets("p1") == {("t", 0): 10, ("t", 1): 3}
        assert await store.get_view("p1", "chat", "c1") == chat("c1", version=1).view
        assert await store.get_view("p1", "chat", "c2") is None
        await store.commit("p1", [], {("t", 0): 10})  # equal is fine (an empty batch)
    finally:
        await store.close()


async def test_a_lock_held_too_long_fails_retriably_and_writes_nothing(pg_url: str) -> None:
    store = await _opened(with_options(pg_url, lock_timeout_ms="200"))
    options = parse_postgres_url(pg_url)
    other = await asyncpg.connect(options.dsn)
    try:
        await store.create_projection("p1")
        async with other.transaction():  # e.g. an operator's long-running maintenance
            await other.execute(f'LOCK TABLE "{options.schema}"."p_p1_rows" IN EXCLUSIVE MODE')
            with pytest.raises(StoreUnavailable) as failure:
                await store.commit("p1", [visitor("v1"), chat("c1")], {("t", 0): 1})
            assert failure.value.retriable
        assert await store.offsets("p1") == {}
        assert await store.get_view("p1", "chat", "c1") is None
    finally:
        await other.close()
        await store.close()


async def test_long_projection_names_do_not_collide(pg_url: str) -> None:
    store = await _opened(pg_url)
    a, b = "a" * 63 + "1", "a" * 63 + "2"
    try:
        for name in (a, b):
            await store.create_projection(name)
        await store.commit(a, [chat("c1", version=1)], {("t", 0): 1})
        await store.commit(b, [chat("c1", version=2)], {("t", 0): 2})
        assert await store.get_view(a, "chat", "c1") == chat("c1", version=1).view
        assert await store.offsets(b) == {("t", 0): 2}
        await store.drop_projection(a)
        assert await store.list_projections() == [b]
    finally:
        await store.close()


# ---------------------------------------------------------------------------- SIGKILL


async def test_sigkill_mid_commit_never_splits_rows_from_offsets(pg_url: str) -> None:
    await kill_mid_commits(pg_url, rounds=3, max_step=6)


"""The store contract against SQLite (a file, and ``:memory:``), plus SQLite's own promises:
WAL and its pragmas, URL handling, busy handling, parallel bounded reads, and atomicity under
SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from parley.errors import StoreUnavailable, UnsupportedStore
from projector.errors import LiveProjectionDrop, Overloaded
from projector.outbox import unwrap_state, wrap_state
from projector.sqlite_schema import Sql, copy_schema, rows_per_statement
from projector.sqlite_store import SqliteStore
from projector.states import AggregateRef, VisitorFold, decode_state
from projector.store import Store
from projector.stores import open_store
from projector.views import Row, row_for
from tests.kit.live_projector import eventually
from tests.kit.store_contract import StoreContract, chat
from tests.kit.store_crash import kill_mid_commits


class FileHarness:
    """A database file; failures are injected from a second connection, as a trigger."""

    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self.store = store

    async def reopen(self) -> Store:
        await self.store.close()
        self.store = SqliteStore(self.path)
        await self.store.open()
        return self.store

    @contextlib.asynccontextmanager
    async def break_offset_writes(self, projection: str) -> AsyncIterator[None]:
        # A real failure inside SQLite, mid-transaction: the rows' upsert has run
        # when the offsets' insert aborts.
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            conn.execute(
                f'CREATE TRIGGER break_offsets BEFORE INSERT ON "p_{projection}_offsets" '
                "BEGIN SELECT RAISE(ABORT, 'injected failure while writing offsets'); END"
            )
            conn.commit()
        try:
            yield
        finally:
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                conn.execute("DROP TRIGGER break_offsets")
                conn.commit()


class MemoryDbHarness:
    def __init__(self, store: SqliteStore) -> None:
        self.store: Store = store
        self._sqlite = store

    async def reopen(self) -> Store:
        return self.store  # an in-memory database lives as long as its connection

    @contextlib.asynccontextmanager
    async def break_offset_writes(self, projection: str) -> AsyncIterator[None]:
        worker = self._sqlite._w()
        await worker.run(
            lambda conn: conn.execute(
                f'CREATE TEMP TRIGGER break_offsets BEFORE INSERT ON "p_{projection}_offsets" '
                "BEGIN SELECT RAISE(ABORT, 'injected failure while writing offsets'); END"
            )
        )
        try:
            yield
        finally:
            await worker.run(lambda conn: conn.execute("DROP TRIGGER temp.break_offsets"))


class TestSqliteFileStore(StoreContract):
    @pytest.fixture
    async def harness(self, sqlite_url: str) -> AsyncIterator[FileHarness]:
        store = open_store(sqlite_url)
        assert isinstance(store, SqliteStore)
        await store.open()
        harness = FileHarness(Path(store.path), store)
        yield harness
        await harness.store.close()


class TestSqliteMemoryStore(StoreContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[MemoryDbHarness]:
        store = open_store("sqlite:///:memory:")
        assert isinstance(store, SqliteStore)
        await store.open()
        yield MemoryDbHarness(store)
        await store.close()

    async def test_data_survives_reopen(self) -> None:  # type: ignore[override]
        pytest.skip("an in-memory database does not outlive its connection")


# ---------------------------------------------------------------------------- SQLite's own


async def test_wal_and_pragmas(sqlite_url: str) -> None:
    store = open_store(sqlite_url + "?synchronous=full&busy_timeout_ms=1234")
    assert isinstance(store, SqliteStore)
    await store.open()
    try:
        pragmas = await store._w().run(
            lambda conn: [
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout")
            ]
        )
        assert pragmas == ["wal", 2, 1234]  # synchronous: 1 = NORMAL, 2 = FULL
    finally:
        await store.close()
    default = open_store(sqlite_url)
    assert isinstance(default, SqliteStore)
    await default.open()
    try:
        assert await default._w().run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0]) == 1
    finally:
        await default.close()


async def test_relative_url_is_relative_to_cwd_and_parents_are_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///.parley/deep/state.db")
    assert isinstance(store, SqliteStore)
    monkeypatch.chdir("/")  # the path was fixed when the URL was read
    await store.open()
    try:
        await store.create_projection("p1")
    finally:
        await store.close()
    assert (tmp_path / ".parley" / "deep" / "state.db").is_file()
    assert store.path == str(tmp_path / ".parley" / "deep" / "state.db")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://db/x", "unknown store URL scheme"),
        ("state.db", "no scheme"),
        ("sqlite://host/state.db", "three slashes"),
        ("sqlite:///", "names no file"),
        ("sqlite:///x.db?synchronous=off", "synchronous"),
        ("sqlite:///x.db?busy_timeout_ms=soon", "busy_timeout_ms"),
        ("sqlite:///x.db?journal=delete", "unknown store URL options"),
        ("sqlite:///x.db?readers=0", "readers must be an integer between 1 and 64"),
        ("sqlite:///x.db?readers=many", "readers"),
        ("sqlite:///x.db?read_queue=-1", "read_queue must be an integer between 0"),
    ],
)
def test_bad_urls_are_explained(url: str, says: str) -> None:
    with pytest.raises(UnsupportedStore, match=says) as failure:
        open_store(url)
    assert "hunter2" not in str(failure.value)


async def test_busy_database_fails_retriably_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}?busy_timeout_ms=50")
    await store.open()
    try:
        await store.create_projection("p1")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
            with pytest.raises(StoreUnavailable) as failure:
                await store.commit("p1", [chat("c1")], {("t", 0): 1})
            assert failure.value.retriable
            other.execute("ROLLBACK")
        assert await store.offsets("p1") == {}
        await store.commit("p1", [chat("c1")], {("t", 0): 1})
        assert await store.offsets("p1") == {("t", 0): 1}
    finally:
        await store.close()


async def test_reader_sees_last_commit_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        await store.create_projection("p1")
        await store.commit("p1", [chat("c1", version=1)], {})
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE \"p_p1_rows\" SET view = x'00'")
            # WAL: queries answer from the last committed snapshot, without waiting.
            assert await store.get_view("p1", "chat", "c1") == chat("c1", version=1).view
            other.execute("ROLLBACK")
    finally:
        await store.close()


class _SlowViews:
    """Every ``get_view`` of ``store`` stops inside SQLite (in its statement's trace callback,
    on the reader's thread) until released, after ``parties`` of them arrived together."""

    def __init__(self, store: SqliteStore, parties: int) -> None:
        self.arrived = threading.Barrier(parties + 1)  # and the test's thread
        self.release = threading.Event()
        connect = store._connect

        def traced() -> sqlite3.Connection:
            conn = connect()
            conn.set_trace_callback(self._trace)
            return conn

        store._connect = traced  # type: ignore[method-assign]

    def _trace(self, sql: str) -> None:
        if sql.startswith("SELECT view FROM") and not self.release.is_set():
            with contextlib.suppress(threading.BrokenBarrierError):
                self.arrived.wait(timeout=10)
            self.release.wait(timeout=10)


async def test_slow_reads_run_side_by_side_and_a_flood_is_refused_not_queued(tmp_path: Path) -> None:
    """Three readers serve three slow reads at once (each blocked inside SQLite, none
    finishing before all have started); two more wait, one more is refused at once with
    Overloaded (also while a read whose caller gave up still runs); and all the while the
    projector commits and reads its offsets."""
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}?readers=3&read_queue=2")
    assert isinstance(store, SqliteStore)
    slow = _SlowViews(store, 3)
    await store.open()
    try:
        await store.create_projection("p1")
        await store.set_live("p1")
        await store.commit("p1", [chat("c1")], {("t", 0): 1})
        running = [asyncio.create_task(store.get_view("p1", "chat", "c1")) for _ in range(3)]
        # One reader would run them one by one: the barrier would break after 10 s.
        await asyncio.to_thread(slow.arrived.wait, 10)
        queued = [asyncio.create_task(store.get_view("p1", "chat", "c1")) for _ in range(2)]

        async def two_waiting() -> bool:
            return store._api().queue.waiting == 2

        await eventually(two_waiting, "two reads to queue")
        with pytest.raises(Overloaded, match="2 reads are waiting"):
            await store.get_view("p1", "chat", "c1")
        with pytest.raises(Overloaded):
            await store.live_projection(query=True)
        running[0].cancel()  # a client gone: its statement still holds a reader in SQLite
        with pytest.raises(asyncio.CancelledError):
            await running[0]
        with pytest.raises(Overloaded):
            await store.get_view("p1", "chat", "c1")
        # The projector's path has connections of its own.
        await asyncio.wait_for(store.commit("p1", [chat("c2")], {("t", 0): 2}), 5)
        assert await asyncio.wait_for(store.offsets("p1"), 5) == {("t", 0): 2}
        assert await asyncio.wait_for(store.live_projection(), 5) == "p1"
        assert not any(task.done() for task in running[1:] + queued)
        slow.release.set()
        views = await asyncio.wait_for(asyncio.gather(*running[1:], *queued), 10)
        assert views == [chat("c1").view] * 4
        assert await store.get_view("p1", "chat", "c2") == chat("c2").view  # the slots are free
    finally:
        slow.release.set()
        await store.close()


@pytest.mark.slow
async def test_sigkill_mid_commit_never_splits_rows_from_offsets(sqlite_url: str) -> None:
    """SIGKILL a process that commits in a loop, at a random commit each time, five times:
    the rows in the file are always exactly those of the commit the stored offset names."""
    await kill_mid_commits(sqlite_url, rounds=5, max_step=8)


@pytest.mark.parametrize(("limit", "rows"), [(250_000, 2048), (32_766, 2048), (999, 64),
                                             (100, 8), (9, 1), (5, 1)])
def test_rows_per_statement_fits_the_variable_limit(limit: int, rows: int) -> None:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
        assert rows_per_statement(conn) == rows


async def test_a_sqlite_that_binds_few_variables_still_commits_whole_batches(tmp_path: Path) -> None:
    """An SQLite built with a low SQLITE_MAX_VARIABLE_NUMBER (999 before 3.32): batches are
    cut into smaller statements instead of failing with "too many SQL variables"."""
    store = SqliteStore(tmp_path / "state.db")
    connect = store._connect

    def low_limit() -> sqlite3.Connection:
        conn = connect()
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        return conn

    store._connect = low_limit  # type: ignore[method-assign]
    await store.open()
    try:
        await store.create_projection("p1")
        rows = [chat(f"c{i:04d}", version=i % 5) for i in range(1000)]
        await store.commit("p1", rows, {("t", 0): 1000})
        assert (await store.counts("p1"))["chat"] == 1000
        assert await store.get_view("p1", "chat", "c0999") == chat("c0999", version=4).view
        assert await store.offsets("p1") == {("t", 0): 1000}
    finally:
        await store.close()


async def test_schema_1_names_are_brought_to_lower_case(tmp_path: Path) -> None:
    """A file of schema 1 could register ``V1`` beside ``v1`` (one set of tables, since
    SQLite ignores case in table names) and a live ``Blue``: opening it keeps every row,
    one registry entry per copy, all in lower case, and the live copy cannot be dropped."""
    path = tmp_path / "state.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "CREATE TABLE parley_projections (name TEXT PRIMARY KEY, created_at TEXT NOT NULL "
            "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
            "CREATE TABLE parley_live (one INTEGER PRIMARY KEY CHECK (one = 1), name TEXT NOT NULL);"
            "INSERT INTO parley_projections (name) VALUES ('v1'), ('V1'), ('Blue'), ('OLD'), ('Old');"
            "INSERT INTO parley_live VALUES (1, 'Blue');"
            "PRAGMA user_version = 1;")
        for name in ("v1", "Blue", "OLD"):
            for statement in copy_schema(name):
                conn.execute(statement)
        for table, id in (("p_V1_rows", "c1"), ("p_Blue_rows", "c2")):
            conn.execute(f'INSERT INTO "{table}" (kind, id, state, view, sort_key) '  # noqa: S608
                         "VALUES ('chat', ?, ?, ?, '5')", (id, chat(id).state, chat(id).view))
        conn.execute('INSERT INTO "p_Blue_offsets" VALUES (\'t\', 0, 9)')
        conn.commit()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.list_projections() == ["blue", "old", "v1"]
        assert await store.live_projection() == "blue"
        assert await store.get_view("blue", "chat", "c2") == chat("c2").view
        assert await store.offsets("blue") == {("t", 0): 9}
        assert await store.get_view("V1", "chat", "c1") == chat("c1").view
        with pytest.raises(LiveProjectionDrop):
            await store.drop_projection("BLUE")
        assert await store.counts("blue") == {"chat": 1, "message": 0, "visitor": 0, "agent": 0}
        assert await store._w().run(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == 2
    finally:
        await store.close()


async def test_a_copy_made_before_the_agent_index_gets_it_and_its_agent_listing_uses_it(
        tmp_path: Path) -> None:
    """The chat listing by agent is a range of an index (not a walk of every chat): a copy
    made before that index gets it when the file is opened, with the rows it already has."""
    path = tmp_path / "state.db"
    store = SqliteStore(path)
    await store.open()
    await store.create_projection("v1")
    await store.commit("v1", [chat("c1", agent="a1", sort_key="2"),
                              chat("c2", agent="a2", sort_key="1"),
                              chat("c3", agent="a1", sort_key="0")], {})
    await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as a copy made before it
        conn.execute('DROP INDEX "p_v1_agent_chats"')
        conn.commit()
    store = SqliteStore(path)
    await store.open()
    try:
        assert [v for v in (await store.list_chats("v1", agent="a1"))[0]] == [
            chat("c3").view, chat("c1").view]
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(
            "EXPLAIN QUERY PLAN " + Sql("v1").agent_chats + " ORDER BY sort_key, id", ("a1",)))
    assert "USING INDEX p_v1_agent_chats (agent_id=?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # in the index's order: no sort


def _visitor_row(state: VisitorFold, offset: int) -> Row:
    """A visitor's row as a folder builds it: covers wrapped into the state bytes."""
    row = row_for(AggregateRef("visitor", state.id), state)
    covers = (("t", offset % 2, offset),)
    return msgspec.structs.replace(row, state=wrap_state(row.state, covers), covers=covers)


async def test_a_shared_commit_joins_visitors_with_the_stored_rows_and_keeps_the_rest(
        tmp_path: Path) -> None:
    # A parallel rebuild's one writer: two workers each folded part of visitor v1's chats
    # (and a chat each); the second commit joins its partial v1 with the stored one. Rows
    # of other kinds go as they are, and the batch's rows come back in their order.
    store = SqliteStore(tmp_path / "state.db", shared=True)
    await store.open()
    try:
        await store.create_projection("v1")
        one = VisitorFold(id="v1", source="acme", chats=frozenset({"c1"}))
        two = VisitorFold(id="v1", source="acme", chats=frozenset({"c2"}))
        foreign = VisitorFold(id="v2", source="other", chats=frozenset({"c3"}))
        await store.commit("v1", [chat("c1"), _visitor_row(one, 0),
                                  _visitor_row(VisitorFold(id="v2", source="acme"), 2)],
                           {("t", 0): 1})
        batch = [_visitor_row(two, 1), chat("c2"), _visitor_row(foreign, 3)]
        entries = await store.commit("v1", batch, {("t", 1): 2}, publish=True)
        assert [(e.kind, e.key) for e in entries] == [("visitor", "v1"), ("chat", "c2")]
        stored = await store.load("v1", [AggregateRef("visitor", "v1"),
                                         AggregateRef("visitor", "v2")])
        joined = decode_state("visitor", unwrap_state(stored[AggregateRef("visitor", "v1")])[1])
        assert isinstance(joined, VisitorFold) and joined.chats == {"c1", "c2"}
        assert unwrap_state(stored[AggregateRef("visitor", "v1")])[0] == (("t", 0, 0),
                                                                          ("t", 1, 1))
        kept = decode_state("visitor", unwrap_state(stored[AggregateRef("visitor", "v2")])[1])
        assert isinstance(kept, VisitorFold) and kept.source == "acme"  # first owner keeps it
        assert await store.get_view("v1", "chat", "c2") == chat("c2").view
        assert await store.offsets("v1") == {("t", 0): 1, ("t", 1): 2}
    finally:
        await store.close()

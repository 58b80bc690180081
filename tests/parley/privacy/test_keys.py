"""The key store's guarantees (parley/privacy/keys.py), on every implementation: memory,
SQLite (two processes' worth of connections on one file) and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from parley.privacy import KeyStore, MasterKeyError, MasterKeys, open_key_store
from parley.privacy.master import MasterKey, new_master_key, parse_master_key
from tests.kit.postgres import fresh_schema

MASTER = parse_master_key(new_master_key(), "test")
Factory = Callable[[MasterKeys], Awaitable[KeyStore]]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """Opens stores on one shared database (for memory: one store, shared)."""
    if request.param == "postgres":
        async with fresh_schema(request.getfixturevalue("postgres_dsn")) as url:
            async for make in _stores(url, shared=False):
                yield make
        return
    url = f"sqlite:///{tmp_path / 'keys.db'}" if request.param == "sqlite" else "memory://"
    async for make in _stores(url, shared=request.param == "memory"):
        yield make


async def _stores(url: str, *, shared: bool) -> AsyncIterator[Factory]:
    opened: list[KeyStore] = []

    async def make(masters: MasterKeys) -> KeyStore:
        if shared and opened:
            return opened[0]
        store = open_key_store(url, masters)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


async def test_a_key_is_created_once_and_read_back(make_store: Factory) -> None:
    store = await make_store(MasterKeys(MASTER))
    assert await store.get("natterly:visitor:V1") is None
    key = await store.get_or_create("natterly:visitor:V1")
    assert len(key.secret) == 32 and key.generation == 1
    assert await store.get_or_create("natterly:visitor:V1") == key
    assert await store.get("natterly:visitor:V1") == key
    assert "secret" not in repr(key) and key.secret.hex() not in repr(key)
    other = await store.get_or_create("natterly:chat:C1")
    assert other.secret != key.secret
    assert await store.get_many(["natterly:chat:C1", "nobody", "natterly:chat:C1"]) == {
        "natterly:chat:C1": other, "nobody": None}


async def test_a_first_key_and_its_link_are_written_together(make_store: Factory) -> None:
    store = await make_store(MasterKeys(MASTER))
    key = await store.get_or_create("natterly:chat:C1", "natterly:visitor:V1")
    assert await store.linked("natterly:visitor:V1") == ["natterly:chat:C1"]
    assert await store.get_or_create("natterly:chat:C1", "natterly:visitor:V2") == key
    assert await store.linked("natterly:visitor:V2") == ["natterly:chat:C1"]  # a live key too
    assert await store.destroy("natterly:chat:C1") is True
    assert await store.linked("natterly:visitor:V1") == []
    again = await store.get_or_create("natterly:chat:C1", "natterly:visitor:V1")
    assert again.generation == key.generation + 1
    assert await store.linked("natterly:visitor:V1") == ["natterly:chat:C1"]


async def test_concurrent_first_keys_for_one_subject_agree(make_store: Factory) -> None:
    """Two receivers (two store instances on one database) creating the same subject's
    first key at once: exactly one key wins and both get it."""
    a, b = await make_store(MasterKeys(MASTER)), await make_store(MasterKeys(MASTER))
    for n in range(10):
        subject = f"chatshipper:contact:X{n}"
        keys = await asyncio.gather(*(store.get_or_create(subject) for store in (a, b, a, b)))
        assert len({k.secret for k in keys}) == 1, subject
        assert await b.get(subject) == keys[0]


async def test_destroy_removes_the_key_and_a_new_generation_follows(make_store: Factory) -> None:
    store = await make_store(MasterKeys(MASTER))
    old = await store.get_or_create("natterly:visitor:V1")
    await store.link("natterly:chat:C1", "natterly:visitor:V1")
    await store.link("natterly:chat:C2", "natterly:visitor:V1")
    await store.get_or_create("natterly:chat:C1")
    assert await store.linked("natterly:visitor:V1") == ["natterly:chat:C1", "natterly:chat:C2"]
    assert await store.destroy("natterly:visitor:V1") is True
    assert await store.destroy("natterly:visitor:V1") is False
    assert await store.destroy("natterly:visitor:unknown") is False
    assert await store.get("natterly:visitor:V1") is None
    assert await store.destroy("natterly:chat:C1") is True
    assert await store.linked("natterly:visitor:V1") == ["natterly:chat:C2"]
    assert await store.destroyed(["natterly:visitor:V1", "natterly:chat:C1", "natterly:chat:C2",
                                  "natterly:visitor:unknown"]) == {"natterly:visitor:V1",
                                                                   "natterly:chat:C1"}
    new = await store.get_or_create("natterly:visitor:V1")
    assert new.generation == old.generation + 1 and new.secret != old.secret
    assert await store.destroyed(["natterly:visitor:V1"]) == set()  # live again


async def test_rewrap_moves_keys_to_a_new_master_without_changing_them(make_store: Factory) -> None:
    store = await make_store(MasterKeys(MASTER))
    before = {s: await store.get_or_create(s) for s in ("a:chat:1", "a:chat:2", "a:visitor:3")}
    await store.destroy("a:chat:2")
    del before["a:chat:2"]
    new = MasterKey(bytes(range(32)))
    rotated = await make_store(MasterKeys(new, [MASTER]))
    if rotated is store:
        pytest.skip("the memory twin has one master per store")
    assert await rotated.rewrap() == 2
    assert await rotated.rewrap() == 0
    only_new = await make_store(MasterKeys(new))
    for subject, key in before.items():
        assert await only_new.get(subject) == key


async def test_a_key_wrapped_by_an_unknown_master_is_refused_with_one_line(make_store: Factory) -> None:
    store = await make_store(MasterKeys(MASTER))
    await store.get_or_create("a:chat:1")
    stranger = await make_store(MasterKeys(MasterKey(bytes(32))))
    if stranger is store:
        pytest.skip("the memory twin has one master per store")
    with pytest.raises(MasterKeyError, match=r"not configured: add it to privacy\.previous_master_keys"):
        await stranger.get("a:chat:1")


def test_master_keys_parse_and_never_show() -> None:
    text = new_master_key()
    key = parse_master_key(text, "privacy.master_key")
    assert text not in repr(key) and len(key.id) == 16
    assert parse_master_key(text.replace("+", "-").replace("/", "_").rstrip("="), "x").id == key.id
    for bad, said in (("not base64!", "is not base64"), ("AAAA", "decodes to 3 bytes, not 32")):
        with pytest.raises(MasterKeyError, match=said) as err:
            parse_master_key(bad, "privacy.master_key")
        assert bad not in str(err.value) and "privacy.master_key" in str(err.value)



class _SwitchingElsewhere(sqlite3.Connection):
    """A connection whose first switches to WAL meet another process's switch of the same
    file: SQLite answers those with SQLITE_BUSY at once, without calling its busy handler."""

    busy_left = 3

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if "journal_mode" in sql and _SwitchingElsewhere.busy_left > 0:
            _SwitchingElsewhere.busy_left -= 1
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise exc
        return super().execute(sql, *args)


async def test_a_key_store_opened_while_another_process_switches_it_to_wal_opens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two receivers sealing their first webhooks opened ``keys.db`` at the same moment and
    one answered 503 ``key_store_unavailable`` (seen in CI): the instant "database is locked"
    of a concurrent switch to WAL is retried within the busy timeout."""
    connect = sqlite3.connect
    monkeypatch.setattr(_SwitchingElsewhere, "busy_left", 3)
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: connect(
        *a, **kw, factory=_SwitchingElsewhere))
    store = open_key_store(f"sqlite:///{tmp_path / 'keys.db'}", MasterKeys(MASTER))
    try:
        await store.open()
        assert _SwitchingElsewhere.busy_left == 0
        key = await store.get_or_create("natterly:chat:C1")
        assert await store.get("natterly:chat:C1") == key
    finally:
        await store.close()


async def test_processes_opening_a_new_sqlite_key_store_at_once_all_open(tmp_path: Path) -> None:
    """The same race for real: several stores open fresh files at once (it hit about one
    round in thirty before the retry)."""
    for n in range(40):
        url = f"sqlite:///{tmp_path / f'keys{n}.db'}"
        stores = [open_key_store(url, MasterKeys(MASTER)) for _ in range(4)]
        try:
            outcomes = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
            assert [o for o in outcomes if o is not None] == [], f"file {n}"
            keys = await asyncio.gather(*(s.get_or_create("natterly:chat:C1") for s in stores))
            assert len({k.secret for k in keys}) == 1
        finally:
            for s in stores:
                await s.close()

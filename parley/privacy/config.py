"""A process's key ring from its settings: the master key(s) and the key store's URL.

The master key is ``privacy.master_key`` (from the environment, ideally), else the file
``privacy.master_key_file``, else, for a SQLite key store, ``master.key`` beside its file
(``<data_dir>/master.key`` unless ``privacy.key_store`` names another file), created
(random, owner-only) when missing: the one-machine setup of ``make run``, where the data
keys, the master key and the data share one owner-only directory anyway. An in-memory key
store (tests) gets a key of the process. A PostgreSQL key store (several machines) never
gets a generated master key: every process must be given the same one, so a missing key
refuses to start with one line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from parley.pg.url import is_postgres_url
from parley.privacy.errors import MasterKeyError
from parley.privacy.keys import open_key_store
from parley.privacy.master import MasterKey, MasterKeys, new_master_key, parse_master_key
from parley.privacy.ring import KeyRing
from parley.private_files import private_dir, write_private
from parley.settings import Settings

__all__ = ["DEV_MASTER_KEY_FILE", "build_key_ring", "key_store_url", "master_keys"]

log = logging.getLogger("parley.privacy")

#: The master key file of ``data_dir`` when none is configured.
DEV_MASTER_KEY_FILE = "master.key"
#: The SQLite key store's file in ``data_dir`` when ``privacy.key_store`` is unset.
KEY_STORE_FILE = "keys.db"
_NO_KEY = ("no master key: set privacy.master_key_file or PARLEY_PRIVACY__MASTER_KEY "
           "(generate one with `parley keys new-master`; docs/privacy.md)")


def key_store_url(settings: Settings) -> str:
    """``privacy.key_store``, else: with a PostgreSQL ``store.url`` the same database; with a
    SQLite one ``<data_dir>/keys.db`` (every process of the machine shares it, whatever its
    own store file); ``memory://`` for an in-memory store."""
    if settings.privacy.key_store:
        return settings.privacy.key_store
    url = settings.store.url
    if is_postgres_url(url):
        return url
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "sqlite" and rest.partition("?")[0].removeprefix("/") != ":memory:":
        return "sqlite:///" + str(Path(settings.data_dir) / KEY_STORE_FILE)
    return "memory://"


def master_keys(settings: Settings) -> MasterKeys:
    """The current and previous master keys (module docstring). Raises MasterKeyError."""
    privacy = settings.privacy
    previous = [parse_master_key(k, f"privacy.previous_master_keys #{n}")
                for n, k in enumerate(privacy.previous_master_keys, 1)]
    if privacy.master_key is not None:
        if privacy.master_key_file is not None:
            raise MasterKeyError("privacy.master_key and privacy.master_key_file are both "
                                 "set; set only one")
        return MasterKeys(parse_master_key(privacy.master_key, "privacy.master_key"), previous)
    named = privacy.master_key_file
    local = _sqlite_dir(key_store_url(settings))
    if named is None and key_store_url(settings).startswith("memory://"):
        # Nothing outlives the process: a key of its own will do.
        return MasterKeys(parse_master_key(new_master_key(), "a process key"), previous)
    if named:
        path = Path(named)
    elif local is not None:
        path = local / DEV_MASTER_KEY_FILE
    else:
        raise MasterKeyError(_NO_KEY)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if named:
            raise MasterKeyError(f"{_NO_KEY}; {path} does not exist") from None
        return MasterKeys(_create(path), previous)
    except OSError as exc:
        raise MasterKeyError(f"privacy.master_key_file {path} cannot be read: "
                             f"{exc.strerror or exc}") from None
    return MasterKeys(parse_master_key(text, f"the master key file {path}"), previous)


def _sqlite_dir(url: str) -> Path | None:
    """The directory of a SQLite key store's file (None: not a SQLite file)."""
    scheme, _, rest = url.partition("://")
    path = rest.partition("?")[0].removeprefix("/")
    if scheme.lower() != "sqlite" or not path or path == ":memory:":
        return None
    return (Path.cwd() / path).parent


def _create(path: Path) -> MasterKey:
    """A new master key in ``path``; if another process created it first, that one."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    write_private(tmp, (new_master_key() + "\n").encode())
    try:
        os.link(tmp, path)  # never replaces: of two processes starting at once, one key wins
    except FileExistsError:
        pass
    else:
        log.warning("generated a master key for this data directory",
                    extra={"file": str(path), "hint": "production: see docs/privacy.md"})
    finally:
        tmp.unlink()
    return parse_master_key(path.read_text(encoding="utf-8"), f"the master key file {path}")


def build_key_ring(settings: Settings) -> KeyRing:
    """The key ring of a process (its store opens on first use)."""
    privacy = settings.privacy
    masters = master_keys(settings)
    store = open_key_store(key_store_url(settings), masters)
    return KeyRing(store, ttl_s=privacy.cache_ttl_s, size=privacy.cache_size,
                   master_id=masters.current.id)

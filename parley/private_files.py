"""Data only its owner can read: directories 0700, files 0600.

What Parley keeps on disk — chat text and visitor details in SQLite files, the local broker's
log segments, logs and records — is for the user who runs it, not for every account on the
machine. Directories and files Parley creates grant group and other nothing, whatever the
process's umask; the broker it starts runs with umask 077 (:data:`PRIVATE_UMASK`). A data
directory an older version left group- or world-readable is tightened when it is used
(:func:`private_dir` with ``tighten=True``), and so is a SQLite file (:func:`private_sqlite`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_UMASK", "private_dir", "private_sqlite", "write_private"]

#: The umask of processes Parley starts to write its data (the local broker).
PRIVATE_UMASK = 0o077
_DIR_MODE = 0o700
_FILE_MODE = 0o600
# Beside a SQLite database: its write-ahead log, shared-memory index and rollback journal.
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` and its missing parents, each 0700; return it.

    An existing directory is left as it is, unless ``tighten``: then group and other lose
    their permissions on it (only a directory that is Parley's own, such as ``data_dir`` —
    never the parent of a file an operator placed, which may be a home directory).
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=_DIR_MODE)
        except FileExistsError:  # created meanwhile by another process
            continue
        os.chmod(directory, _DIR_MODE)  # mkdir's mode is masked by the umask; chmod is not
    if tighten:
        _tighten(path)
    return path


def private_sqlite(path: Path) -> None:
    """Make the SQLite database ``path`` owner-only before SQLite opens it.

    SQLite creates a database with mode 0644 (less the umask), and its ``-wal`` and ``-shm``
    files with the mode of the database, so an empty 0600 file created here first (an empty
    file is a valid empty database) keeps all three private. An existing database and its
    side files are tightened.
    """
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):  # an existing one is only tightened, below
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE))
    for file in (path, *(path.with_name(path.name + s) for s in _SQLITE_SIDECARS)):
        _tighten(file)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` in an owner-only file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE), "wb") as f:
        os.fchmod(f.fileno(), _FILE_MODE)  # a leftover tmp file keeps its mode through O_CREAT
        f.write(data)
    tmp.replace(path)


def _tighten(path: Path) -> None:
    """Take group and other permissions off ``path`` if it exists and this user owns it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)

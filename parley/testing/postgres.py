"""A throwaway local PostgreSQL server, for tests and benchmarks (never for production).

:class:`LocalPostgres` runs ``initdb`` and ``postgres`` from PostgreSQL binaries found by
:func:`find_bindir`, in a directory of its own, listening on 127.0.0.1 only, with trust
authentication for the one role it creates. PostgreSQL refuses to run as root, so when the
current user is root the server runs as an unprivileged user (``nobody`` unless
``$PARLEY_PG_RUN_AS`` names another) and its directory is handed to that user. When that user
cannot reach the binaries (a clone in a private directory such as ``mktemp -d`` or ``/root``,
whose ``.venv`` holds pgserver's), their installation is copied into the server's directory
first, so the server starts wherever the checkout lives.

Binaries, first found wins:

1. ``$PARLEY_PG_BINDIR``;
2. the ``pgserver`` package from PyPI (it ships PostgreSQL's binaries in its wheel; only its
   binaries are used, not its server management);
3. ``initdb`` on ``PATH``, or the newest ``/usr/lib/postgresql/<version>/bin`` (Debian's
   ``postgresql`` package).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from parley.errors import LauncherError

__all__ = ["LocalPostgres", "copy_installation", "find_bindir"]

HOST = "127.0.0.1"


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (see the module docstring)."""
    configured = os.environ.get("PARLEY_PG_BINDIR")
    if configured:
        return _checked(Path(configured))
    # Found, not imported: importing pgserver starts its own machinery (lock files, users).
    spec = importlib.util.find_spec("pgserver")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        bindir = Path(location) / "pginstall" / "bin"
        if (bindir / "postgres").exists():
            return _checked(bindir)
    on_path = shutil.which("initdb")
    if on_path:
        return _checked(Path(on_path).resolve().parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                    key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if debian:
        return _checked(debian[-1].parent)
    raise LauncherError(
        "no PostgreSQL binaries found: `pip install pgserver` (ships them), install Debian's "
        "postgresql package, set PARLEY_PG_BINDIR, or point PARLEY_TEST_POSTGRES at a server")


def _checked(bindir: Path) -> Path:
    for tool in ("initdb", "postgres"):
        if not os.access(bindir / tool, os.X_OK):
            raise LauncherError(f"{bindir / tool} is missing or not executable")
    return bindir


def _check_traversable(root: Path) -> None:
    """The unprivileged server user must be able to reach ``root`` (e.g. not under ~root)."""
    for parent in root.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise LauncherError(
                f"{parent} is not traversable by other users, so PostgreSQL (which cannot run "
                f"as root) cannot reach {root}: put it elsewhere, e.g. under /tmp")


def _reachable_by_others(bindir: Path) -> bool:
    """Whether any user can execute ``initdb`` and ``postgres`` in ``bindir`` (o+x on the
    tools and on every directory above them)."""
    resolved = bindir.resolve()
    return all(parent.stat().st_mode & 0o001 for parent in (resolved, *resolved.parents)) and all(
        (resolved / tool).stat().st_mode & 0o001 for tool in ("initdb", "postgres"))


def copy_installation(bindir: Path, target: Path) -> Path:
    """Copy the installation around ``bindir`` under ``target``; return the copy's bindir.

    PostgreSQL finds ``lib`` and ``share`` relative to its binaries, so the directory above
    ``bindir`` is copied whole (less ``include``). A wheel's binaries (pgserver's) also load
    the libraries auditwheel bundled beside the package (``<package>.libs``, by an RPATH of
    ``$ORIGIN/../../../<package>.libs``): that layout is kept.
    """
    installation = bindir.resolve().parent
    package = installation.parent
    bundled = package.parent / f"{package.name}.libs"
    copy = target / package.name / installation.name
    if not (copy / bindir.name / "postgres").exists():
        shutil.copytree(installation, copy, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("include"))
        if bundled.is_dir():
            shutil.copytree(bundled, target / bundled.name, symlinks=True, dirs_exist_ok=True)
    return _checked(copy / bindir.name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """One local server in ``root``: :meth:`up` starts it, :meth:`down` stops it.

    ``settings`` are extra ``postgres -c`` settings; the defaults trade durability for speed
    (``fsync=off``): a test database need not survive a power cut.
    """

    def __init__(self, root: Path, *, port: int | None = None, bindir: Path | None = None,
                 user: str = "parley", settings: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.port = port or _free_port()
        self.bindir = bindir
        self.user = user
        self.settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                         "max_connections": "200", "shared_buffers": "128MB"}
        self.settings.update(settings or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _run_as(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        name = os.environ.get("PARLEY_PG_RUN_AS", "nobody")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise LauncherError(f"running as root, and user {name!r} (PARLEY_PG_RUN_AS) to run "
                                "PostgreSQL as does not exist") from None
        return entry.pw_uid, entry.pw_gid

    def up(self, *, timeout_s: float = 60.0) -> str:
        """Initialise (first time) and start the server; return its DSN once it accepts connections."""
        bindir = self.bindir or find_bindir()
        ids = self._run_as()
        data = self.root / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        if ids is not None:
            _check_traversable(self.root)
            os.chown(self.root, *ids)
            if not _reachable_by_others(bindir):
                bindir = copy_installation(bindir, self.root / "pg")
        as_user: dict[str, int] = {} if ids is None else {"user": ids[0], "group": ids[1],
                                                           "extra_groups": []}  # type: ignore[dict-item]
        if not (data / "PG_VERSION").exists():
            try:
                init = subprocess.run(  # noqa: S603 - our own binaries, no shell
                    [str(bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
                     "-E", "UTF8", "--locale=C", "--no-sync"],
                    capture_output=True, cwd=self.root, check=False, **as_user)  # type: ignore[call-overload]
            except OSError as exc:
                who = "this user" if ids is None else f"uid {ids[0]}"
                raise LauncherError(f"cannot run {bindir / 'initdb'} as {who}: {exc}") from None
            if init.returncode != 0:
                raise LauncherError(f"initdb failed ({init.returncode}): "
                                    f"{init.stderr.decode(errors='replace')[-2000:]}")
        args = [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port),
                "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.root}"]
        for key, value in self.settings.items():
            args += ["-c", f"{key}={value}"]
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            if ids is not None:
                os.chown(self.log_path, *ids)
            self._proc = subprocess.Popen(  # noqa: S603 - our own binaries, no shell
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True,
                **as_user)  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout_s
        while not self._accepts():
            if self._proc.poll() is not None:
                raise LauncherError(f"postgres exited with {self._proc.returncode}: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.down()
                raise LauncherError(f"postgres did not start within {timeout_s:g} s: {self._log_tail()}")
            time.sleep(0.05)
        return self.dsn

    def _accepts(self) -> bool:
        # The server answers TCP before it accepts sessions; "ready to accept" in the log is
        # the signal that both listen and recovery are done.
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)  # this start's lines only (the log is appended to)
            return b"ready to accept connections" in log.read()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def down(self, *, wipe: bool = False, timeout_s: float = 30.0) -> None:
        """Stop the server this object started (fast shutdown, then SIGKILL); ``wipe`` its files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: roll back sessions, checkpoint
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if wipe:
            shutil.rmtree(self.root, ignore_errors=True)

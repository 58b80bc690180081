"""The local broker of a data directory: find it, and record who started it and who uses it.

When ``kafka.bootstrap`` is unset, ``parley run`` and ``parley kafka up`` start a local KRaft
broker in ``<data_dir>/kafka`` (the launcher's ``cluster.json`` lists its nodes and pids), and
every other command finds it there through :func:`bootstrap_for`. Beside ``cluster.json``:

    owner.json         which command started the running broker, and its pid
    users/<pid>.json   one per process using the broker, locked (``flock``) for that process's
                       lifetime: a record whose lock is free belongs to a process that died
    .lock              held while a command starts or stops the broker, so that starts, stops
                       and the exit of a run decide one at a time

The rules: a broker ``parley kafka up`` started runs until ``parley kafka down``; one that
``parley run`` started is stopped when that run exits, or, if other processes (a ``parley
consumer``, a second run) still use it then, by the last of them to exit; ``parley kafka
down`` refuses while any process uses the broker (``--force`` stops it anyway).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec

from parley.errors import LaunchCancelled, LocalKafkaInUse, NoLocalKafka
from parley.kafka.launcher import HOST, ClusterState, LocalKafka
from parley.private_files import private_dir, write_private
from parley.settings import Settings

__all__ = ["KAFKA_UP", "RUN", "BrokerUser", "LocalBroker", "Owner", "bootstrap_for",
           "local_kafka"]

RUN = "parley run"
KAFKA_UP = "parley kafka up"


log = logging.getLogger("parley.kafka.local")


class Owner(msgspec.Struct, frozen=True, kw_only=True):
    """The command that started the running broker."""

    command: str
    pid: int

    def describe(self) -> str:
        return f"{self.command} (pid {self.pid})"


class BrokerUser(msgspec.Struct, frozen=True, kw_only=True):
    """A process using the local broker (``detail``: e.g. the URL a run serves)."""

    pid: int
    command: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.command} (pid {self.pid}{', ' + self.detail if self.detail else ''})"


def local_kafka(settings: Settings, brokers: int = 1, port: int | None = None,
                heap_mb: int = 512) -> LocalKafka:
    """The launcher of ``settings``' local broker: ``<data_dir>/kafka``, ``kafka.local_port``."""
    first = settings.kafka.local_port if port is None else port
    return LocalKafka(Path(settings.data_dir) / "kafka", brokers=brokers,
                      ports=[first + i for i in range(brokers)], heap_mb=heap_mb)


def bootstrap_for(settings: Settings) -> Settings:
    """``settings`` with ``kafka.bootstrap`` filled in from the local broker of ``data_dir``
    (unchanged when it is set). Raises :class:`NoLocalKafka`, one line, when none runs."""
    if settings.kafka.bootstrap:
        return settings
    broker = LocalBroker(settings)
    bootstrap = broker.running_bootstrap()
    if bootstrap is None:
        raise broker.not_running()
    return msgspec.structs.replace(
        settings, kafka=msgspec.structs.replace(settings.kafka, bootstrap=bootstrap))


class LocalBroker:
    """The records of one data directory's local broker, and the decisions made from them."""

    def __init__(self, settings: Settings, kafka: LocalKafka | None = None) -> None:
        self.settings = settings
        self.kafka = kafka or local_kafka(settings)
        self.root = self.kafka.root

    def _private_root(self) -> Path:
        """The broker's directory, made (or made again, after an older version) owner-only
        like ``data_dir`` itself: chats pass through the broker's segments."""
        private_dir(Path(self.settings.data_dir), tighten=True)
        return private_dir(self.root, tighten=True)

    # ------------------------------------------------------------------ what runs
    def running_bootstrap(self) -> str | None:
        """The bootstrap address of the nodes that run (None: none does)."""
        state = self.kafka.load_state()
        if state is None:
            return None
        running = [n for n in state.nodes if self.kafka.is_running(n)]
        return ",".join(f"{HOST}:{n.port}" for n in running) or None

    def not_running(self) -> NoLocalKafka:
        return NoLocalKafka(
            f"no local Kafka broker runs for data_dir {self.root.parent}: start one with "
            "`parley run` or `parley kafka up`, or set kafka.bootstrap to use a cluster")

    def owner(self) -> Owner | None:
        """Who started the broker (None: unknown, or nothing runs)."""
        try:
            return msgspec.json.decode((self.root / "owner.json").read_bytes(), type=Owner)
        except (OSError, msgspec.DecodeError):
            return None

    def _set_owner(self, command: str) -> None:
        write_private(self.root / "owner.json",
                      msgspec.json.encode(Owner(command=command, pid=os.getpid())))

    def _clear_owner(self) -> None:
        (self.root / "owner.json").unlink(missing_ok=True)

    def users(self) -> list[BrokerUser]:
        """The live processes (other than this one) that use the broker; stale records of
        processes that died are removed on the way."""
        found: list[BrokerUser] = []
        for path in sorted((self.root / "users").glob("*.json")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its process just ended
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # locked: its process is alive
                    with contextlib.suppress(msgspec.DecodeError):
                        user = msgspec.json.decode(os.read(fd, 4096), type=BrokerUser)
                        if user.pid != os.getpid():
                            found.append(user)
                else:
                    path.unlink(missing_ok=True)  # free: its process died without cleaning up
            finally:
                os.close(fd)
        return found

    @contextlib.contextmanager
    def use(self, command: str, detail: str = "") -> Iterator[None]:
        """Record this process as a user of the broker for the duration of the block."""
        fd = self._register(command, detail)
        try:
            yield
        finally:
            with self._decide():
                self._unregister(fd)
                line = self._stop_if_abandoned()
            if line is not None:
                log.info(line)

    def _register(self, command: str, detail: str) -> int:
        users = private_dir(self._private_root() / "users")
        pid = os.getpid()
        # Locked before it gets its name, so no reader ever sees it unlocked and removes it.
        tmp = users / f".{pid}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, msgspec.json.encode(BrokerUser(pid=pid, command=command, detail=detail)))
        tmp.replace(users / f"{pid}.json")
        return fd

    def _unregister(self, fd: int) -> None:
        (self.root / "users" / f"{os.getpid()}.json").unlink(missing_ok=True)
        os.close(fd)

    @contextlib.contextmanager
    def _decide(self, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold ``.lock``: one start, stop or exit decision at a time per data directory."""
        fd = os.open(self._private_root() / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                # Another command is starting or stopping this broker: wait for it, and stay
                # responsive to a Ctrl-C meanwhile (wait() is True only once cancel is set).
                if (cancel or threading.Event()).wait(0.1):
                    raise LaunchCancelled("cancelled while another command was starting or "
                                          "stopping the local Kafka")
            yield
        finally:
            os.close(fd)

    # ---------------------------------------------------------------- parley run
    def start_for_run(self, detail: str, cancel: threading.Event) -> tuple[ClusterState, int]:
        """For ``parley run``: use the running broker, or start it (stopped again if ``cancel``
        is set before it answers). Returns its state and the user record's descriptor, to be
        passed to :meth:`finish_run` when the run ends."""
        with self._decide(cancel):
            fd = self._register(RUN, detail)
            try:
                state = self.kafka.load_state()
                if state is not None and all(self.kafka.is_running(n) for n in state.nodes):
                    return state, fd  # running (of any size, e.g. `kafka up --brokers 3`)
                was_running = self.running_bootstrap() is not None
                state = self.kafka.up(cancel=cancel)
            except BaseException:
                self._unregister(fd)
                raise
            if not was_running:
                self._set_owner(RUN)
            return state, fd

    def finish_run(self, fd: int) -> str:
        """For ``parley run`` at exit: stop the broker if a run started it and no other
        process uses it any more. Returns one line saying what was done."""
        with self._decide():
            self._unregister(fd)
            owner = self.owner()
            if self.running_bootstrap() is None:
                return "the local Kafka had already stopped"
            if owner is None or owner.command != RUN:
                started = owner.describe() if owner else "another command"
                return f"left the local Kafka running: started by {started}"
            users = self.users()
            if users:
                return ("left the local Kafka running: still used by "
                        + ", ".join(u.describe() for u in users) + " (the last of them stops it)")
            return self._stop_if_abandoned() or "the local Kafka had already stopped"

    def _stop_if_abandoned(self) -> str | None:
        """Stop a broker that a ``parley run`` started once nothing uses it any more: the run
        leaves it to the processes still using it when it exits, and the last of them to exit
        stops it (so a consumer stopped after its run leaves no broker behind). Call under
        :meth:`_decide`; returns one line when it stopped the broker."""
        owner = self.owner()
        if owner is None or owner.command != RUN or self.users() or self.running_bootstrap() is None:
            return None
        stopped = self.kafka.down()
        self._clear_owner()
        return f"stopped the local Kafka (node(s) {', '.join(map(str, stopped))})"

    # ------------------------------------------------------------ kafka up/down
    def up(self) -> tuple[ClusterState, str]:
        """For ``parley kafka up``: start the broker, or keep a running one until ``kafka
        down``. Returns its state and a note on what was already running (or "")."""
        with self._decide():
            owner = self.owner() if self.running_bootstrap() is not None else None
            state = self.kafka.up()
            note = ""
            if owner is not None and owner.command == RUN:
                note = (f" (started by {owner.describe()}; now kept running after that run "
                        "exits, until `parley kafka down`)")
            if owner is None or owner.command == RUN:
                self._set_owner(KAFKA_UP)
            return state, note

    def down(self, *, wipe: bool = False, force: bool = False) -> str:
        """For ``parley kafka down``: stop the broker unless a process uses it (``force``:
        even then). Returns one line saying what was stopped."""
        with self._decide():
            users = self.users()
            running = self.running_bootstrap()
            owner = self.owner()
            if users and running and not force:
                raise LocalKafkaInUse(
                    f"the local Kafka at {running} (data_dir {self.root.parent}) is in use by "
                    f"{', '.join(u.describe() for u in users)}: stop that first (Ctrl-C ends a "
                    "run and the broker it started), or pass --force to stop the broker anyway")
            stopped = self.kafka.down(wipe=wipe)
            self._clear_owner()
        if not stopped:
            line = f"no local Kafka node was running for data_dir {self.root.parent}"
        else:
            line = (f"stopped the local Kafka at {running} (node(s) "
                    f"{', '.join(map(str, stopped))}"
                    f"{', started by ' + owner.describe() if owner else ''})")
            if users:
                line += "; it was still used by " + ", ".join(u.describe() for u in users)
        if wipe:
            line += f"; removed {self.root}"
        return line

"""Local KRaft clusters of real Apache Kafka, run with the machine's Java.

Layout under ``root`` (``.parley/kafka`` by default)::

    cluster.json          what `up` started: cluster id, nodes, ports, pids
    node-<id>/server.properties, node-<id>/data/, node-<id>/server.log, node-<id>/stdout.log

all of it owner-only (directories 0700, files 0600: the segments hold chats), the broker's own
files too, as it runs with umask 077 (:mod:`parley.private_files`).

Each node is a combined broker + controller; the controller quorum is static
(``controller.quorum.voters``), so one code path serves one node or three. ``down`` signals only
the pids recorded in ``cluster.json`` and only if they still run this node's Kafka, so it never
stops a process it did not start.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from parley.errors import LaunchCancelled, LauncherError
from parley.kafka.jars import KAFKA_VERSION, require_tool, resolve_jars
from parley.private_files import PRIVATE_UMASK, private_dir, write_private

T = TypeVar("T")
HOST = "127.0.0.1"


class ExtraListener(Protocol):
    """A client listener added to every node beside the plaintext one (which the launcher and
    inter-broker traffic use) and the controller's; the tests' TLS/SASL listeners are
    :class:`parley.testing.kafka.SecureListener`."""

    @property
    def name(self) -> str: ...

    @property
    def protocol(self) -> str: ...

    @property
    def ports(self) -> tuple[int, ...]:
        """One port per node."""
        ...

    def properties(self) -> dict[str, str]:
        """Broker properties of this listener (besides ``listeners`` and the protocol map)."""
        ...

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create its SCRAM credentials."""
        ...

    def check(self, nodes: int) -> None:
        """Raise :class:`LauncherError` when it cannot serve a cluster of ``nodes`` nodes."""
        ...


class NodeState(msgspec.Struct, kw_only=True):
    node_id: int
    port: int
    controller_port: int
    pid: int | None = None


class ClusterState(msgspec.Struct, kw_only=True):
    cluster_id: str
    kafka_version: str
    nodes: list[NodeState]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{HOST}:{n.port}" for n in self.nodes)


class NodeStatus(msgspec.Struct, frozen=True, kw_only=True):
    node_id: int
    port: int
    pid: int | None
    running: bool
    log: str


def run_coro(coro: Coroutine[object, object, T]) -> T:
    """Run ``coro`` to completion from sync code, even when called inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the OS considers free right now (for tests and benchmarks)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port_block(n: int, controller_offset: int = 1000) -> int:
    """A base port such that ``base..base+n-1`` and their controller ports are all free."""
    for _ in range(200):
        base = free_ports(1)[0]
        if base + n + controller_offset > 65535:
            continue
        wanted = [base + i for i in range(n)] + [base + controller_offset + i for i in range(n)]
        if all(port_is_free(p) for p in wanted):
            return base
    raise LauncherError(f"found no block of {n} free ports on {HOST}")


def _pid_runs_node(pid: int, node_dir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(node_dir).encode() in cmdline


class LocalKafka:
    """A local Kafka cluster of ``brokers`` combined nodes on consecutive ports."""

    def __init__(self, root: Path, *, brokers: int = 1, ports: Sequence[int] | None = None,
                 controller_ports: Sequence[int] | None = None, heap_mb: int = 512,
                 extra_properties: Mapping[str, str] | None = None,
                 listeners: Sequence[ExtraListener] = ()) -> None:
        if brokers < 1:
            raise LauncherError("--brokers must be at least 1")
        self.root = Path(root).absolute()
        self.brokers = brokers
        self.ports = list(ports) if ports else [9092 + i for i in range(brokers)]
        self.controller_ports = (list(controller_ports) if controller_ports
                                 else [p + 1000 for p in self.ports])
        if len(self.ports) != brokers or len(self.controller_ports) != brokers:
            raise LauncherError("need one broker port and one controller port per node")
        self.heap_mb = heap_mb
        self.extra_properties = dict(extra_properties or {})
        self.listeners = tuple(listeners)
        for listener in self.listeners:
            listener.check(brokers)

    # ------------------------------------------------------------------ state
    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    def node_dir(self, node_id: int) -> Path:
        return self.root / f"node-{node_id}"

    def load_state(self) -> ClusterState | None:
        try:
            return msgspec.json.decode(self.state_file.read_bytes(), type=ClusterState)
        except FileNotFoundError:
            return None

    def _save_state(self, state: ClusterState) -> None:
        write_private(self.state_file, msgspec.json.format(msgspec.json.encode(state)))

    def is_running(self, node: NodeState) -> bool:
        return node.pid is not None and _pid_runs_node(node.pid, self.node_dir(node.node_id))

    # -------------------------------------------------------------------- up
    def up(self, *, timeout_s: float = 120.0,
           cancel: threading.Event | None = None) -> ClusterState:
        """Start every node that is not running and return once the cluster serves metadata.

        ``cancel`` (set from another thread, e.g. on Ctrl-C) ends the start early: the nodes
        this call started are stopped again and :class:`LaunchCancelled` is raised.
        """
        java = require_tool("java", "run the Kafka broker")
        state = self.load_state()
        if state is not None and len(state.nodes) != self.brokers:
            raise LauncherError(
                f"{self.root} holds a {len(state.nodes)}-node cluster; run `parley kafka down "
                f"--wipe` first to start one with {self.brokers} nodes")
        if state is not None and all(self.is_running(n) for n in state.nodes):
            return state
        _check_cancel(cancel)
        libs = resolve_jars()
        if state is None:
            state = self._new_state()
        started: list[NodeState] = []
        try:
            for node in state.nodes:
                if self.is_running(node):
                    continue
                index = state.nodes.index(node)
                for port in (node.port, node.controller_port,
                             *(lst.ports[index] for lst in self.listeners)):
                    if not port_is_free(port):
                        raise LauncherError(f"port {port} on {HOST} is already in use; stop "
                                            "whatever listens there or choose other ports with "
                                            "--port")
                _check_cancel(cancel)
                node.pid = self._start_node(java, libs, state, node)
                started.append(node)
            self._save_state(state)
            self.wait_ready(state, timeout_s=timeout_s, cancel=cancel)
        except LauncherError:
            if cancel is None or not cancel.is_set():
                raise
            # Cancelled, or failed because of it (a Ctrl-C in a terminal reaches the format
            # tool too): stop what this call started, so nothing outlives the cancelled start.
            self._save_state(state)
            for node in started:
                self.stop_node(node.node_id, state=state)
            raise LaunchCancelled("the local Kafka start was cancelled; the nodes it had "
                                  "started are stopped") from None
        return state

    def _new_state(self) -> ClusterState:
        private_dir(self.root, tighten=True)
        cluster_id = "-"
        while cluster_id.startswith("-"):  # like Kafka's Uuid.randomUuid: no leading '-'
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        nodes = [NodeState(node_id=i + 1, port=p, controller_port=c)
                 for i, (p, c) in enumerate(zip(self.ports, self.controller_ports, strict=True))]
        return ClusterState(cluster_id=cluster_id, kafka_version=KAFKA_VERSION, nodes=nodes)

    def properties(self, state: ClusterState, node: NodeState) -> dict[str, str]:
        n = len(state.nodes)
        voters = ",".join(f"{x.node_id}@{HOST}:{x.controller_port}" for x in state.nodes)
        index = state.nodes.index(node)
        extra = [(lst, lst.ports[index]) for lst in self.listeners]
        listeners = "".join(f",{lst.name}://{HOST}:{port}" for lst, port in extra)
        protocols = "".join(f",{lst.name}:{lst.protocol}" for lst, _ in extra)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": (f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}"
                          + listeners),
            "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}" + listeners,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" + protocols,
            "log.dirs": str(self.node_dir(node.node_id) / "data"),
            # Parley creates its topics from specs; a typo must not create a topic silently.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": str(min(3, n)),
            "offsets.topic.replication.factor": str(min(3, n)),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(min(3, n)),
            "transaction.state.log.min.isr": str(min(2, n)),
            "transaction.state.log.num.partitions": "10",
            # Local clusters serve tests and one-machine runs: no reason to delay first joins.
            "group.initial.rebalance.delay.ms": "0",
            "unclean.leader.election.enable": "false",
        }
        for lst in self.listeners:
            props.update(lst.properties())
        props.update(self.extra_properties)
        return props

    def _start_node(self, java: str, libs: Path, state: ClusterState, node: NodeState) -> int:
        ndir = self.node_dir(node.node_id)
        for directory in (self.root, ndir, ndir / "data"):  # an older version's: tightened
            private_dir(directory, tighten=True)
        props_file = ndir / "server.properties"
        write_private(props_file, "".join(f"{k}={v}\n" for k, v in
                                          self.properties(state, node).items()).encode())
        classpath = f"{libs}/*"
        if not (ndir / "data" / "meta.properties").exists():
            fmt = subprocess.run(  # noqa: S603
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
                 f"--cluster-id={state.cluster_id}", "-c", str(props_file), "--ignore-formatted",
                 *(arg for lst in self.listeners for arg in lst.scram_arguments())],
                capture_output=True, text=True, check=False, umask=PRIVATE_UMASK)
            if fmt.returncode != 0:
                raise LauncherError(f"formatting node {node.node_id} failed: "
                                    f"{(fmt.stdout + fmt.stderr).strip().splitlines()[-1:]}")
        log4j = resources.files("parley.kafka").joinpath("log4j2.properties")
        with resources.as_file(log4j) as log4j_path:
            cmd = [java, f"-Xms{min(256, self.heap_mb)}m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
                   "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
                   "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j_path}",
                   f"-Dparley.kafka.logdir={ndir}", "-cp", classpath, "kafka.Kafka", str(props_file)]
        # posix_spawn, not Popen: the broker outlives this object (and often this process), in a
        # session of its own so that a Ctrl-C aimed at the caller does not reach it. Through a
        # shell that sets the umask and execs Java in the same process (posix_spawn has no
        # umask of its own): the broker's segments and logs are then owner-only too.
        cmd = ["/bin/sh", "-c", f"umask {PRIVATE_UMASK:03o} && exec \"$@\"", "sh", *cmd]
        out = os.open(ndir / "stdout.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            return os.posix_spawn(cmd[0], cmd, dict(os.environ), setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)])
        finally:
            os.close(out)

    def wait_ready(self, state: ClusterState, *, timeout_s: float,
                   cancel: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            _check_cancel(cancel)
            for node in state.nodes:
                # The pid was just spawned by us: ask whether it exited, not what its cmdline
                # says (which can lag right after the spawn).
                if node.pid is None or _exited(node.pid):
                    raise LauncherError(f"Kafka node {node.node_id} exited during start-up; "
                                        f"last lines of its log:\n{self._log_tail(node)}")
            if run_coro(_brokers_visible(state.bootstrap)) >= len(state.nodes):
                return
            if time.monotonic() > deadline:
                raise LauncherError(f"Kafka did not answer metadata within {timeout_s:.0f}s; "
                                    f"see {self.root}/node-*/server.log")
            (cancel or threading.Event()).wait(0.25)  # poll interval; a cancel ends it early

    def _log_tail(self, node: NodeState, lines: int = 8) -> str:
        ndir = self.node_dir(node.node_id)
        text = ""
        for name in ("stdout.log", "server.log"):
            with contextlib.suppress(OSError):
                text += (ndir / name).read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    # ---------------------------------------------------------- down / status
    def down(self, *, wipe: bool = False, timeout_s: float = 30.0) -> list[int]:
        """Stop the nodes this launcher started (SIGTERM, then SIGKILL after ``timeout_s``)."""
        state = self.load_state()
        stopped: list[int] = []
        if state is not None:
            for node in state.nodes:
                if self.stop_node(node.node_id, timeout_s=timeout_s, state=state):
                    stopped.append(node.node_id)
        if wipe and self.root.exists():
            import shutil

            shutil.rmtree(self.root)
        return stopped

    def stop_node(self, node_id: int, *, sig: int = signal.SIGTERM, timeout_s: float = 30.0,
                  state: ClusterState | None = None) -> bool:
        """Stop one node (``sig=SIGKILL`` for fault tests). True if it was running."""
        state = state or self.load_state()
        node = next((n for n in state.nodes if n.node_id == node_id), None) if state else None
        if node is None or not self.is_running(node) or node.pid is None:
            return False
        os.kill(node.pid, sig)
        deadline = time.monotonic() + timeout_s
        while self.is_running(node):
            _reap(node.pid)
            if time.monotonic() > deadline:
                os.kill(node.pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.1)
        return True

    def start_node(self, node_id: int, *, timeout_s: float = 120.0) -> None:
        """(Re)start one stopped node of an existing cluster and wait until all nodes answer."""
        state = self.load_state()
        if state is None:
            raise LauncherError(f"no cluster in {self.root}; run `parley kafka up` first")
        node = next(n for n in state.nodes if n.node_id == node_id)
        if not self.is_running(node):
            node.pid = self._start_node(require_tool("java", "run the Kafka broker"),
                                        resolve_jars(), state, node)
            self._save_state(state)
        self.wait_ready(state, timeout_s=timeout_s)

    def status(self) -> list[NodeStatus]:
        state = self.load_state()
        if state is None:
            return []
        return [NodeStatus(node_id=n.node_id, port=n.port, pid=n.pid, running=self.is_running(n),
                           log=str(self.node_dir(n.node_id) / "server.log")) for n in state.nodes]


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise LaunchCancelled("the local Kafka start was cancelled")


def _exited(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by another `parley kafka up`)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return done == pid


def _reap(pid: int) -> None:
    # A node started by this very process is our child: collect it so it does not linger.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _accepts_tcp(bootstrap: str) -> bool:
    for addr in bootstrap.split(","):
        host, _, port = addr.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return False
    return True


async def _brokers_visible(bootstrap: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    # Probe the sockets first: aiokafka logs every refused connection as an error.
    if not _accepts_tcp(bootstrap):
        return 0
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(admin.start(), 5)
        cluster = await asyncio.wait_for(admin.describe_cluster(), 5)
        return len(cluster.get("brokers", []))
    except Exception:  # noqa: BLE001 - any failure just means "not ready yet"
        return 0
    finally:
        with contextlib.suppress(Exception):
            await admin.close()

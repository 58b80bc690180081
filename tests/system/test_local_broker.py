"""The local broker of a data_dir, shared by `parley run` and every operational command.

Real processes throughout: `parley run` and the commands run as subprocesses with a config
of their own (free ports, a data_dir under tmp_path, no kafka.bootstrap), exactly what a user
types after `make run`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parley.kafka.launcher import free_port_block, free_ports
from parley.kafka.local import LocalBroker
from parley.settings import load_settings
from tests.kit.readme import http_status

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "tests" / "fixtures" / "webhooks" / "natterly" / "chat_initiated_seed.json"
SEED_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"  # the fixture's own auth_token
NO_BROKER = "parley: error: no local Kafka broker runs for data_dir "


@dataclass
class Site:
    """A config of its own: data_dir, HTTP port and local broker port."""

    dir: Path
    http_port: int
    config: Path

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def broker(self) -> LocalBroker:
        return LocalBroker(load_settings(self.config, env={}))

    def broker_pids(self) -> list[int]:
        state = self.broker().kafka.load_state()
        return [n.pid for n in state.nodes if n.pid] if state else []


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    [http_port] = free_ports(1)
    config = tmp_path / "parley.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f"[kafka]\nlocal_port = {free_port_block(1)}\npartitions = 2\n"
        f"[http]\nport = {http_port}\nshutdown_timeout_s = 2.0\n"
        f'[sources.acme]\nprovider = "natterly"\nauth_tokens = ["{SEED_TOKEN}"]\n',
        encoding="utf-8")
    s = Site(dir=tmp_path, http_port=http_port, config=config)
    yield s
    s.broker().kafka.down()  # whatever a failed test left running


def _env() -> dict[str, str]:
    # Only the config file speaks: no PARLEY_CONFIG, PARLEY_KAFKA__BOOTSTRAP… from outside.
    return {k: v for k, v in os.environ.items()
            if not k.startswith("PARLEY_") or k == "PARLEY_CACHE_DIR"}


def parley(site: Site, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parley.cli", *args, "--config", str(site.config)],
                          capture_output=True, text=True, env=_env(), cwd=site.dir,
                          timeout=timeout_s, check=False)


class Run:
    """A `parley run` subprocess; its stderr (JSON logs) goes to a file, never a pipe."""

    def __init__(self, site: Site, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.site = site
        self.log = site.dir / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "parley.cli", *(args or ("run",)), "--config", str(site.config)],
                stdout=subprocess.DEVNULL, stderr=log, env=_env() | (env or {}), cwd=site.dir)

    def text(self) -> str:
        return self.log.read_text()

    def wait_ready(self, timeout_s: float = 120) -> None:
        wait_until(lambda: self._get("/readyz") == 200, timeout_s, "parley run ready",
                   alive=self)

    def _get(self, path: str) -> int | None:
        return http_status(f"http://127.0.0.1:{self.site.http_port}{path}", timeout_s=5)

    def post_seed(self) -> str:
        req = urllib.request.Request(f"http://127.0.0.1:{self.site.http_port}/webhooks/acme",
                                     data=SEED.read_bytes(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - an http:// URL
            position: str = json.loads(resp.read())["position"]
        return position

    def interrupt(self, timeout_s: float = 60) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(ok: Callable[[], bool], timeout_s: float, what: str, *,
               alive: Run | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if alive is not None and alive.proc.poll() is not None:
            pytest.fail(f"parley run exited ({alive.proc.returncode}) before {what}:\n"
                        f"{alive.text()[-3000:]}")
        assert time.monotonic() < deadline, f"not {what} within {timeout_s:.0f} s"
        time.sleep(0.1)  # poll interval of the condition


def _pid_alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent to collect it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def one_line_error(proc: subprocess.CompletedProcess[str], starts: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), proc.stderr
    return lines[0]


def clean_exit(run: Run, *, errors_ok: bool = False) -> None:
    text = run.text()
    assert "Traceback" not in text and "Unclosed" not in text, text[-4000:]
    assert errors_ok or '"level":"error"' not in text, text[-4000:]


def test_without_a_local_broker_every_command_says_so_in_one_line(site: Site) -> None:
    commands = [("projections", "status"), ("projections", "rebuild"),
                ("consumers", "lag", "search"), ("consumers", "reset", "search", "--to", "latest"),
                ("consumers", "dlq", "search", "list"), ("topics", "apply"), ("kafka", "status")]
    procs = [subprocess.Popen([sys.executable, "-m", "parley.cli", *c, "--config", str(site.config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(), cwd=site.dir) for c in commands]
    for command, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=60)
        line = one_line_error(subprocess.CompletedProcess(command, proc.returncode, out, err),
                              NO_BROKER + str(site.data_dir))
        assert "`parley run` or `parley kafka up`" in line and "kafka.bootstrap" in line


@pytest.mark.slow
def test_parley_run_shares_its_broker_and_stops_it_at_exit(site: Site) -> None:
    run = Run(site, "run")
    try:
        run.wait_ready()
        run.post_seed()

        # Every operational command finds the run's broker through the data_dir.
        status = parley(site, "projections", "status")
        assert status.returncode == 0, status.stderr
        assert "?" not in status.stdout and "unreachable" not in status.stdout, status.stdout
        assert "parley.events.chat[" in status.stdout and "  end 1  " in status.stdout

        lag = parley(site, "consumers", "lag", "search")
        assert lag.returncode == 0, lag.stderr
        assert "parley.state.chat" in lag.stdout  # search reads the projector's chat states

        listed = parley(site, "consumers", "list")
        assert listed.returncode == 0 and "parley.consumers.search" in listed.stdout

        topics = parley(site, "topics", "apply")
        assert topics.returncode == 0, topics.stderr
        for kind in ("chat", "visitor", "agent", "other"):  # the run created them
            assert f"parley.events.{kind}: unchanged" in topics.stdout, topics.stdout

        kafka = parley(site, "kafka", "status")
        assert kafka.returncode == 0, kafka.stderr
        assert f"started by parley run (pid {run.proc.pid})" in kafka.stdout
        assert f"used by: parley run (pid {run.proc.pid}, http://" in kafka.stdout

        rebuilt = parley(site, "projections", "rebuild")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert rebuilt.stdout.startswith("rebuilt v2: 1 records"), rebuilt.stdout

        # `kafka down` refuses while the run uses the broker, and says what it would stop.
        down = parley(site, "kafka", "down")
        line = one_line_error(down, "parley: error: the local Kafka at 127.0.0.1:")
        assert f"in use by parley run (pid {run.proc.pid}" in line and "--force" in line
        assert all(_pid_alive(pid) for pid in site.broker_pids())

        # A second run on the same port: one line, before it touches Kafka.
        again = parley(site, "run", timeout_s=60)
        line = one_line_error(again, f"parley: error: cannot listen on 127.0.0.1:{site.http_port}"
                                     f": port {site.http_port} is in use")
        assert "http.port / PARLEY_HTTP__PORT" in line
        assert run._get("/readyz") == 200

        # Ctrl-C: the run stops, and with it the broker it started.
        pids = site.broker_pids()
        assert run.interrupt() == 0
    finally:
        run.kill()
    clean_exit(run)
    assert pids and not any(_pid_alive(pid) for pid in pids)
    assert '"msg":"stopped the local Kafka (node(s) 1)"' in run.text()
    assert site.broker().users() == []


@pytest.mark.slow
def test_the_last_process_to_leave_a_runs_broker_stops_it(site: Site) -> None:
    """Ctrl-C to `parley run` while a consumer still uses its broker leaves the broker to the
    consumer; the consumer's own Ctrl-C then stops it: nothing is left running."""
    run = Run(site, "run")
    consumer: Run | None = None
    try:
        run.wait_ready()
        consumer = Run(site, "consumer", "consumer", "examples.message_counts:message_counts",
                       env={"PYTHONPATH": str(REPO), "MESSAGE_COUNTS_DB": str(site.dir / "mc.db")})
        wait_until(lambda: '"msg":"consumer started"' in consumer.text(), 120, "consumer started",
                   alive=consumer)
        pids = site.broker_pids()
        assert run.interrupt() == 0
        assert "left the local Kafka running: still used by parley consumer" in run.text()
        assert pids and all(_pid_alive(pid) for pid in pids)
        assert consumer.interrupt() == 0
    finally:
        run.kill()
        if consumer is not None:
            consumer.kill()
    clean_exit(run)
    clean_exit(consumer)
    assert '"msg":"stopped the local Kafka (node(s) 1)"' in consumer.text(), consumer.text()[-3000:]
    assert not any(_pid_alive(pid) for pid in pids)
    assert site.broker().users() == []


@pytest.mark.slow
def test_kafka_up_broker_outlives_runs_and_a_forced_down_ends_cleanly(site: Site) -> None:
    up = parley(site, "kafka", "up")
    assert up.returncode == 0, up.stderr
    pids = site.broker_pids()

    first = Run(site, "first")
    try:
        first.wait_ready()
        assert first.interrupt() == 0
    finally:
        first.kill()
    clean_exit(first)
    assert "left the local Kafka running: started by parley kafka up" in first.text()
    assert all(_pid_alive(pid) for pid in pids)

    second = Run(site, "second")
    try:
        second.wait_ready()
        forced = parley(site, "kafka", "down", "--force")
        assert forced.returncode == 0, forced.stderr
        assert "started by parley kafka up" in forced.stdout
        assert f"still used by parley run (pid {second.proc.pid}" in forced.stdout
        wait_until(lambda: not any(_pid_alive(pid) for pid in pids), 30, "broker stopped")
        # The run rides the outage (503s) and still stops cleanly on Ctrl-C.
        assert second.interrupt() == 0
    finally:
        second.kill()
    clean_exit(second, errors_ok=True)  # the outage may be logged, one line per problem


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_sigint_while_the_broker_starts_stops_the_start(site: Site) -> None:
    run = Run(site, "run")
    try:
        # The broker's JVM is spawned (its pid recorded) but does not answer yet.
        wait_until(lambda: bool(site.broker_pids()), 120, "broker spawned", alive=run)
        pids = site.broker_pids()
        run.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while run.proc.poll() is None:
            assert not _accepts(site.http_port), "the server came up after Ctrl-C"
            assert time.monotonic() < deadline, "parley run still running 30 s after Ctrl-C"
            time.sleep(0.05)  # poll interval: exit and the port
    finally:
        run.kill()
    assert run.proc.returncode in (0, 130)
    assert not _accepts(site.http_port)
    assert not any(_pid_alive(pid) for pid in pids), "the broker it was starting still runs"
    text = run.text()
    assert "Traceback" not in text, text[-3000:]
    assert '"msg":"listening"' not in text
    last = text.strip().splitlines()[-1]
    assert '"msg":"interrupted while the local Kafka was starting; stopped it"' in last, text


def test_a_dead_users_record_is_pruned(site: Site) -> None:
    code = ("import sys, time\n"
            "from parley.kafka.local import LocalBroker\n"
            "from parley.settings import load_settings\n"
            f"with LocalBroker(load_settings({str(site.config)!r}, env={{}})).use('parley test'):\n"
            "    print('in use', flush=True)\n"
            "    time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          env=_env()) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "in use\n"
            [user] = site.broker().users()
            assert (user.pid, user.command) == (proc.pid, "parley test")
            proc.kill()  # no clean exit: its record stays behind, but its lock is gone
            proc.wait()
            assert site.broker().users() == []
            assert not list((site.data_dir / "kafka" / "users").glob("*.json"))
        finally:
            proc.kill()

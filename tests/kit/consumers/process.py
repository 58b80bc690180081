"""``parley consumer …`` as a child process, for signal tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp

from parley.kafka.launcher import free_ports
from parley.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[3]  # the child imports tests.kit.* from here


class ConsumerProcess:
    def __init__(self, tmp: Path, k: KafkaSettings, ref: str, *, max_records: int = 50,
                 env: dict[str, str] | None = None, consumer_name: str | None = None,
                 extra_toml: str = "") -> None:
        self.port = free_ports(1)[0]
        self.config = tmp / f"parley-{self.port}.toml"
        self.config.write_text(
            f'data_dir = "{tmp / "data"}"\nlog_level = "WARNING"\n'
            f'[kafka]\nbootstrap = "{k.bootstrap}"\ntopic_prefix = "{k.topic_prefix}"\n'
            f'partitions = {k.partitions}\n[http]\nport = {self.port}\nshutdown_timeout_s = 5\n')
        name = consumer_name or ref.rpartition(":")[2]
        self.consumers_config = tmp / f"consumers-{self.port}.toml"
        self.consumers_config.write_text(f'[consumers."{name}"]\nmax_records = {max_records}\n'
                                         + extra_toml)
        self.ref = ref
        self.env = {**os.environ, "PYTHONPATH": str(REPO),
                    "PARLEY_CONSUMERS_CONFIG": str(self.consumers_config), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"consumer-{self.port}.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "parley.cli", "--config", str(self.config), "consumer",
                 self.ref], env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"consumer not ready:\n{self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.proc.poll() is None:
            if asyncio.get_running_loop().time() > deadline:
                self.proc.kill()
                raise AssertionError("consumer did not exit")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

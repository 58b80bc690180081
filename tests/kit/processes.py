"""Parley at scale, for the system tests and bench/scale.py: its roles as processes, a webhook
workload, and a load generator that spreads it over several receivers (a client-side load
balancer)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from contracts.position import Position
from tests.kit.live_projector import T0, TOKEN, natterly_body, natterly_user_status

JSON = {"Content-Type": "application/json"}


# ----------------------------------------------------------------------------- processes
class ParleyProcess:
    """One ``python -m parley.cli <command> --config …`` subprocess, logging to a file."""

    def __init__(self, name: str, args: Sequence[str], port: int, log_dir: Path) -> None:
        self.name = name
        self.args = list(args)
        self.port = port
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> ParleyProcess:
        with self.log_path.open("ab") as log:  # a file, not a pipe: a full pipe would block it
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "parley.cli", *self.args,
                stdout=asyncio.subprocess.DEVNULL, stderr=log)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if not self.running:
                    raise AssertionError(f"{self.name} exited: {self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"http://127.0.0.1:{self.port}/readyz",
                                        timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} not ready after {timeout_s:g} s: "
                                         f"{self.log_tail()}")
                await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Signal it and wait for it to exit; its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                raise AssertionError(f"{self.name} did not exit on {sig!r}: {self.log_tail()}") from None
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def metric(self, name: str) -> float:
        """Sum of a metric's samples in this process's /metrics."""
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{self.port}/metrics") as resp:
            text = await resp.text()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))


@contextlib.asynccontextmanager
async def processes() -> AsyncIterator[list[ParleyProcess]]:
    """A list to put started processes in; whatever still runs at the end is killed."""
    started: list[ParleyProcess] = []
    try:
        yield started
    finally:
        for p in started:
            if p.running:
                assert p.proc is not None
                p.proc.kill()
                await p.proc.wait()


# ------------------------------------------------------------------------------ workload
@dataclass(frozen=True)
class Webhook:
    body: bytes
    chat: str | None  # None: an agent status change
    message: str | None = None  # the message this webhook adds, if any


def workload(chats: int, *, visitors: int, agents: int = 5, n_messages: int = 3,
             start: datetime = T0, tag: str = "") -> list[Webhook]:
    """Natterly webhooks of ``chats`` conversations, interleaved in time order.

    Visitors are shared (chat ``i`` has visitor ``i % visitors``) so one visitor's chats sit in
    several partitions, owned by several projectors: their rows are written concurrently.
    Each chat: initiated (first message), accepted, one webhook per further message, closed.
    One agent status change every ten chats.
    """
    timed: list[tuple[datetime, int, Webhook]] = []
    for i in range(chats):
        chat, visitor, agent = f"{tag}chat-{i}", f"{tag}vis-{i % visitors}", f"{tag}ag-{i % agents}"
        at = start + timedelta(seconds=7 * i)
        msgs = [(f"{chat}-m{k}", f"message {k} of {chat}", at + timedelta(seconds=10 * k))
                for k in range(n_messages)]
        steps = [(at, Webhook(natterly_body("ChatInitiated", chat, at, visitor=visitor,
                                            messages=msgs[:1], status="Initiated"), chat, msgs[0][0])),
                 (at + timedelta(seconds=5), Webhook(natterly_body(
                     "ChatAccepted", chat, at + timedelta(seconds=5), agent=agent, visitor=visitor,
                     messages=msgs[:1]), chat))]
        for k in range(1, n_messages):
            steps.append((msgs[k][2], Webhook(natterly_body(
                "ChatAccepted", chat, msgs[k][2], agent=agent, visitor=visitor,
                messages=msgs[:k + 1]), chat, msgs[k][0])))
        end = at + timedelta(seconds=10 * n_messages)
        steps.append((end, Webhook(natterly_body("ChatClosed", chat, end, agent=agent,
                                                 visitor=visitor, messages=msgs), chat)))
        if i % 10 == 0:
            steps.append((end, Webhook(natterly_user_status(agent, "Offline" if i % 20 else "Visible",
                                                            end), None)))
        timed += [(when, i, hook) for when, hook in steps]
    timed.sort(key=lambda t: (t[0], t[1]))
    return [hook for _, _, hook in timed]


# ---------------------------------------------------------------------------------- load
@dataclass
class Outcome:
    index: int  # into the workload
    port: int
    status: int
    event_id: str | None = None
    position: Position | None = None
    seconds: float = 0.0


@dataclass
class Load:
    """Posts webhooks to several receivers in turn; keeps every answer."""

    ports: Sequence[int]
    source: str = "acme"
    outcomes: list[Outcome] = field(default_factory=list)
    _turn: int = 0

    async def post(self, http: aiohttp.ClientSession, index: int, hook: Webhook) -> Outcome:
        port = self.ports[self._turn % len(self.ports)]  # round robin: a client-side balancer
        self._turn += 1
        started = time.monotonic()
        try:
            async with http.post(f"http://127.0.0.1:{port}/webhooks/{self.source}", data=hook.body,
                                 headers=JSON, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                answer = await resp.json()
                outcome = Outcome(index=index, port=port, status=resp.status,
                                  seconds=time.monotonic() - started)
        except (aiohttp.ClientError, TimeoutError):
            outcome = Outcome(index=index, port=port, status=0, seconds=time.monotonic() - started)
        else:
            if 200 <= outcome.status < 300:
                outcome.event_id = answer["event_id"]
                outcome.position = Position.parse(answer["position"])
        self.outcomes.append(outcome)
        return outcome

    async def run(self, hooks: Sequence[tuple[int, Webhook]], *, concurrency: int = 8,
                  rate_per_s: float | None = None) -> None:
        """Post ``hooks`` (workload index, webhook) with ``concurrency`` senders, optionally
        paced to ``rate_per_s`` in total."""
        queue: asyncio.Queue[tuple[int, Webhook]] = asyncio.Queue()
        for item in hooks:
            queue.put_nowait(item)
        gap = concurrency / rate_per_s if rate_per_s else 0.0
        async with aiohttp.ClientSession() as http:
            async def sender() -> None:
                while not queue.empty():
                    index, hook = queue.get_nowait()
                    started = time.monotonic()
                    await self.post(http, index, hook)
                    if gap:
                        await asyncio.sleep(max(0.0, gap - (time.monotonic() - started)))

            await asyncio.gather(*(sender() for _ in range(concurrency)))

    def acknowledged(self) -> list[Outcome]:
        return [o for o in self.outcomes if 200 <= o.status < 300]

    def positions(self) -> list[Position]:
        return [o.position for o in self.acknowledged() if o.position is not None]


__all__ = ["JSON", "TOKEN", "Load", "Outcome", "ParleyProcess", "Webhook", "processes", "workload"]

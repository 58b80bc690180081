"""Reading and running README.md the way a newcomer does: its console blocks and its command table.

A console block is a fenced ```console block; each ``$ `` line is a command (a trailing ``\\``
continues it on the next line), and the lines after it, up to the next command, are what the
README says it prints. ``…`` in a shown line stands for any text. A command with no shown output
is only required to succeed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ELLIPSIS = "…"
# What a fresh clone has beside what git tracks: only the venv `make` already built.
NOT_IN_A_CLONE = {".git", ".parley", "parley.toml", ".venv-uv", ".venv-latest", ".pytest_cache",
                  ".mypy_cache", ".ruff_cache", ".hypothesis", "message_counts.db"}


@dataclass
class Step:
    section: str
    command: str
    shown: list[str] = field(default_factory=list)


def sections(text: str) -> Iterator[tuple[str, str]]:
    """(heading, body) for every ``#``-heading of the README."""
    parts = re.split(r"^(#{1,6} .*)$", text, flags=re.M)
    yield "", parts[0]
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        yield heading.lstrip("#").strip(), body


def console_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    for heading, body in sections(text):
        for block in re.findall(r"^```console\n(.*?)^```", body, flags=re.M | re.S):
            lines = block.splitlines()
            i = 0
            while i < len(lines):
                line = lines[i]
                i += 1
                if line.startswith("$ "):
                    command = line[2:]
                    while command.rstrip().endswith("\\") and i < len(lines):
                        command = command.rstrip()[:-1] + " " + lines[i].strip()
                        i += 1
                    steps.append(Step(heading, command.strip()))
                elif steps and line.strip():
                    steps[-1].shown.append(line.strip())
    return steps


def command_table(text: str) -> list[str]:
    """Every backticked command in the first column of the table under ``## Commands``."""
    body = dict(sections(text))["Commands"]
    commands: list[str] = []
    for row in body.splitlines():
        if row.startswith("| `"):
            first = row.split(" | ")[0]
            commands += re.findall(r"`([^`]+)`", first)
    return commands


def command_words(command: str) -> str:
    """``parley kafka up [--brokers N]`` → ``parley kafka up``: the words before the arguments."""
    words = []
    for word in command.split():
        if word[0] in "[-<|" or word.isupper() or not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        words.append(word)
    return " ".join(words)


def matches(shown: list[str], output: str) -> bool:
    """Each shown line matches one output line, in order (``…`` is any text)."""
    lines = [line.strip() for line in output.splitlines()]
    at = 0
    for want in shown:
        pattern = re.compile(".*?".join(re.escape(part) for part in want.split(ELLIPSIS)))
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return False
        at += 1
    return True


def fresh_clone(target: Path) -> Path:
    """A directory that looks like a fresh clone after `make install`: every tracked top-level
    entry and the venv, linked; nothing a previous run left (data, parley.toml)."""
    target.mkdir(parents=True)
    for entry in REPO.iterdir():
        if entry.name not in NOT_IN_A_CLONE:
            (target / entry.name).symlink_to(entry)
    return target


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment without Parley's or an enclosing make's variables."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PARLEY_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return env | extra


@dataclass
class Background:
    """A long-running command (``make run``, ``parley consumer …``), stopped like Ctrl-C."""

    command: str
    log: Path
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, command: str, cwd: Path, env: dict[str, str], log: Path) -> Background:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(command, log, proc)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout_s: float = 180.0) -> None:
        self.wait_until(lambda: needle in self.output(), f"printing {needle!r}", timeout_s)

    def wait_until(self, ok: Callable[[], bool], what: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ok():
            assert self.proc.poll() is None, f"{self.command!r} exited:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"{self.command!r}: not {what}:\n{self.output()[-4000:]}"
            time.sleep(0.2)  # poll interval of the wait

    def interrupt(self, timeout_s: float = 90.0) -> int:
        """Ctrl-C: SIGINT to the whole foreground group, as a terminal sends it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"{self.command!r} ignored Ctrl-C:\n{self.output()[-4000:]}") from None


def http_status(url: str, timeout_s: float = 30.0) -> int | None:
    """The status a GET of ``url`` answers, or None when nothing listens (yet, or any more)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - http://127.0.0.1
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def run(command: str, cwd: Path, env: dict[str, str], timeout_s: float = 180.0) -> tuple[int, str]:
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    return done.returncode, done.stdout + done.stderr

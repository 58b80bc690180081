"""deploy/Dockerfile keeps its promises (checked statically: no Docker engine in CI):
multi-stage, a pinned slim base, non-root, every package copied, health checks on the real
endpoints; and the health-check script it installs works against a running Parley."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from dataclasses import dataclass

import pytest
from aiohttp import web

from parley.errors import SettingsError
from parley.http import build_app
from parley.kafka.launcher import free_ports
from parley.runtime import Runtime
from parley.settings import HttpSettings, Settings, load_settings
from tests.kit.manifests import ALL_INTERFACES, DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
IGNORE = DEPLOY / "Dockerfile.dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HEALTHCHECK_SCRIPT = DEPLOY / "image" / "healthcheck.py"
PINNED_PYTHON = re.compile(r"python:(\d+)\.(\d+)\.(\d+)-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")


@dataclass(frozen=True)
class Instruction:
    stage: int
    op: str
    args: str


def instructions() -> tuple[dict[str, str], list[Instruction]]:
    """(global ARG defaults, instructions with their stage index), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    out: list[Instruction] = []
    stage = -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            stage += 1
        if op == "ARG" and stage == -1:
            key, _, default = rest.partition("=")
            args[key] = default
        out.append(Instruction(stage, op, rest.strip()))
    return args, out


ARGS, INSTRUCTIONS = instructions()
STAGES = [i for i in INSTRUCTIONS if i.op == "FROM"]
FINAL = len(STAGES) - 1


def in_final(op: str) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.stage == FINAL and i.op == op]


def test_multi_stage_from_a_pinned_slim_python() -> None:
    assert len(STAGES) >= 2
    names = []
    for s in STAGES:
        image, _, name = s.args.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda m: ARGS[m.group(1)], image.strip())
        assert image in names or PINNED_PYTHON.fullmatch(image), f"unpinned base {image}"
        names.append(name.strip())
    m = PINNED_PYTHON.fullmatch(ARGS["PYTHON_IMAGE"])
    assert m is not None
    # The image's Python satisfies the project's requires-python.
    floor = tuple(int(x) for x in PYPROJECT["project"]["requires-python"].removeprefix(">=").split("."))
    assert (int(m.group(1)), int(m.group(2))) >= floor
    # The runtime stage takes the built venv from the build stage, not the sources.
    copies = in_final("COPY")
    assert any(c.args.startswith(f"--from={names[0]} /opt/parley") for c in copies)
    assert not any(re.search(r"\b(parley|contracts|receiver|projector|consumers)\b \./", c.args)
                   for c in copies)


def test_runs_as_a_non_root_user() -> None:
    [user] = in_final("USER")
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    assert f"--uid {uid}" in next(i.args for i in in_final("RUN") if "useradd" in i.args)
    # Nothing runs as root after the switch.
    final = [i for i in INSTRUCTIONS if i.stage == FINAL]
    assert not any(i.op == "RUN" for i in final[final.index(user):])


def test_health_check_and_entrypoint() -> None:
    [hc] = in_final("HEALTHCHECK")
    assert hc.args.endswith('CMD ["parley-healthcheck"]')
    assert any(c.args.endswith("deploy/image/healthcheck.py /usr/local/bin/parley-healthcheck")
               for c in in_final("COPY"))
    text = HEALTHCHECK_SCRIPT.read_text()
    assert '"/healthz"' in text and '"/readyz"' in text
    [entry] = in_final("ENTRYPOINT")
    assert entry.args == '["parley"]' and "parley" in PYPROJECT["project"]["scripts"]
    [expose] = in_final("EXPOSE")
    image_config = load_settings(DEPLOY / "image" / "parley.toml", env={})
    assert expose.args == str(image_config.http.port)
    assert image_config.http.host == ALL_INTERFACES and image_config.kafka.bootstrap is None
    env = " ".join(i.args for i in in_final("ENV"))
    assert "PARLEY_CONFIG=/etc/parley/parley.toml" in env and "PARLEY_HTTP__HOST=0.0.0.0" in env


def test_the_image_holds_no_credential_and_refuses_an_open_api() -> None:
    # Issue 16, hole 1: the image listens on every interface, so without tokens from the
    # environment it must not serve /api/* or /metrics at all.
    baked = load_settings(DEPLOY / "image" / "parley.toml", env={"PARLEY_HTTP__HOST": ALL_INTERFACES})
    assert baked.all_secrets() == () and baked.sources == {}
    assert not baked.http.allow_open_api
    with pytest.raises(SettingsError, match=r"refusing to serve /metrics on 0\.0\.0\.0 .*"
                                            r"PARLEY_HTTP__API_TOKENS"):
        build_app(Runtime.from_settings(baked), [])
    text = DOCKERFILE.read_text()
    assert "API_TOKENS" not in text and "AUTH_TOKENS" not in text and "SECRETS" not in text


def test_every_package_and_file_it_needs_is_copied_and_not_ignored() -> None:
    sources: list[str] = []
    for c in INSTRUCTIONS:
        if c.op == "COPY" and "--from=" not in c.args:
            parts = [p for p in c.args.split() if not p.startswith("--")]
            sources += parts[:-1]
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert package in sources, f"package {package} is not copied into the image"
    assert PYPROJECT["project"]["readme"] in sources and "pyproject.toml" in sources
    rules = [r.strip() for r in IGNORE.read_text().splitlines() if r.strip() and not r.startswith("#")]
    assert rules[0] == "*"
    for src in sources:
        assert (REPO / src).exists(), src
        assert f"!{src.rstrip('/')}/" in rules or f"!{src}" in rules or any(
            src.startswith(r[1:]) for r in rules if r.startswith("!")), f"{src} is dockerignored"


def test_installs_the_runtime_lock_and_resolves_nothing() -> None:
    """The image gets the hash-checked versions CI tested: the runtime lock with
    --require-hashes, then Parley itself with --no-deps (nothing resolved at build time)."""
    runs = [i.args for i in INSTRUCTIONS if i.op == "RUN" and "pip install" in i.args]
    assert any("--require-hashes" in r and "requirements/runtime.lock" in r for r in runs), runs
    for run in runs:
        if "-r " not in run:
            assert "--no-deps" in run and "--no-build-isolation" in run, run
    assert (REPO / "requirements" / "runtime.lock").is_file()


# ------------------------------------------------------------------ the health-check script
@pytest.fixture
async def served() -> object:
    """A Parley HTTP process (no roles) with one readiness check the test can flip, and
    bearer tokens on, like production."""
    [port] = free_ports(1)
    rt = Runtime.from_settings(Settings(http=HttpSettings(
        host="127.0.0.1", port=port, api_tokens=("token-0123456789abcdef",))))
    problem: list[str | None] = [None]

    async def check() -> str | None:
        return problem[0]

    rt.readiness["switch"] = check
    runner = web.AppRunner(build_app(rt, []))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, problem
    finally:
        await runner.cleanup()


async def _healthcheck(port: int, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HEALTHCHECK_SCRIPT), *args, env={"PARLEY_HTTP__PORT": str(port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_healthcheck_script_probes_liveness_and_readiness(served) -> None:  # type: ignore[no-untyped-def]
    port, problem = served
    assert await _healthcheck(port) == (0, "")
    assert await _healthcheck(port, "--ready") == (0, "")
    problem[0] = "Kafka unreachable"
    assert (await _healthcheck(port))[0] == 0  # alive, not ready
    deadline = asyncio.get_running_loop().time() + 20  # readiness is cached for a second
    while (answer := await _healthcheck(port, "--ready"))[0] == 0:
        assert asyncio.get_running_loop().time() < deadline
    code, err = answer
    # The failing check is named; why needs a token (the probe has none).
    assert code == 1 and "503" in err and "switch" in err and "Kafka unreachable" not in err


async def test_healthcheck_script_fails_when_nothing_listens() -> None:
    [port] = free_ports(1)
    code, err = await _healthcheck(port)
    assert code == 1 and f"127.0.0.1:{port}/healthz" in err

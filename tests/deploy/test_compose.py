"""deploy/compose.yaml, offline: it parses, runs a three-broker KRaft cluster of the Kafka
version Parley tests against, and its Parley services run real commands with settings that
load and agree with the brokers, ports and topic specs."""

from __future__ import annotations

import base64
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from contracts.topics import Topics
from parley.cli import build_parser
from parley.http import check_exposure
from parley.kafka.jars import KAFKA_VERSION
from parley.pg.url import parse_postgres_url
from parley.settings import Settings, load_settings
from tests.kit.manifests import ALL_INTERFACES, DEPLOY, REPO

COMPOSE_FILE = DEPLOY / "compose.yaml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())  # YAML 1.1 merge keys too
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BROKERS = {n: s for n, s in SERVICES.items() if s.get("image", "").startswith("apache/kafka:")}
PARLEY = {n: s for n, s in SERVICES.items() if s.get("image", "").startswith("parley:")}
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# An innermost ${VAR}, ${VAR-default}, ${VAR:-default}, ${VAR?error} or ${VAR:?error} (its
# default holds no other one).
_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^${}]*))?\}")
#: What an operator exports before `docker compose up` (the file's header says which): the
#: secrets, generated. Nothing else is set.
OPERATOR_ENV = {"PARLEY_API_TOKENS": f'["{secrets.token_hex(32)}"]',
                "PARLEY_ACME_TOKENS": f'["{secrets.token_hex(32)}"]',
                "PARLEY_POSTGRES_PASSWORD": secrets.token_hex(32),
                "PARLEY_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode()}


class MissingVariable(Exception):
    """A required variable (``${VAR:?error}``) is unset: compose refuses to start."""


def interpolate(value: object, env: Mapping[str, str] = OPERATOR_ENV) -> str:
    """Compose's interpolation of ``value`` with ``env`` as the environment, nested
    references (``${A:-x${B:-y}}``) from the inside out."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op in ("-", ":-"):
            return arg if value is None or (op == ":-" and not value) else value
        if op in ("?", ":?") and (value is None or (op == ":?" and not value)):
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    text = str(value)
    while True:
        resolved = _VAR.sub(one, text)
        if resolved == text:
            return text
        text = resolved


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form for environment"
    return {k: interpolate(v) for k, v in env.items()}


def settings_of(name: str) -> Settings:
    service = PARLEY[name]
    env = service_env(service)
    [config] = service["configs"]
    assert env["PARLEY_CONFIG"] == config["target"]
    source = DEPLOY / COMPOSE["configs"][config["source"]]["file"]
    return load_settings(source, env={k: v for k, v in env.items() if k != "PARLEY_CONFIG"})


def test_three_kraft_brokers_of_the_tested_kafka_version() -> None:
    assert len(BROKERS) == 3
    envs = {n: service_env(s) for n, s in BROKERS.items()}
    ids = sorted(int(e["KAFKA_NODE_ID"]) for e in envs.values())
    assert ids == [1, 2, 3]
    cluster_ids = {e["CLUSTER_ID"] for e in envs.values()}
    [cluster_id] = cluster_ids
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 and not cluster_id.startswith("-")
    for name, s in BROKERS.items():
        e = envs[name]
        assert s["image"] == f"apache/kafka:{KAFKA_VERSION}"
        assert e["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = dict(v.split("@") for v in e["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert {voters[str(i)] for i in ids} == {f"{b}:9093" for b in BROKERS}
        assert voters[e["KAFKA_NODE_ID"]] == f"{name}:9093"
        assert e["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert e["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert s["volumes"] == [f"{name}:/var/lib/kafka/data"]
        assert e["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
        assert s["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(PARLEY))
def test_parley_services_run_real_commands_with_loadable_settings(name: str) -> None:
    service = PARLEY[name]
    assert service["image"] == f"parley:{VERSION}"
    assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    args = build_parser().parse_args(service["command"])
    settings = settings_of(name)
    assert settings.http.host == ALL_INTERFACES
    if args.command == "receiver":
        assert settings.sources
    if args.command in ("receiver", "projector", "consumer"):
        # Published on the configured port; healthy means ready.
        assert all(p.endswith(f":{settings.http.port}") for p in service["ports"])
        assert service["healthcheck"]["test"] == ["CMD", "parley-healthcheck", "--ready"]
        assert service["depends_on"]["topics"] == {"condition": "service_completed_successfully"}
    if args.command in ("projector", "consumer"):
        # A volume at data_dir (a SQLite store, the search index) and a unique static member
        # id; the state store is the postgres service or a SQLite file on that volume.
        assert any(v.endswith(f":{settings.data_dir}") for v in service["volumes"])
        assert settings.kafka.group_instance_id
        url = settings.store.url
        assert url.startswith(("postgresql://", "sqlite:///" + settings.data_dir)), url


def test_topics_are_applied_before_any_role_starts() -> None:
    topics = [n for n, s in PARLEY.items() if s["command"] == ["topics", "apply"]]
    assert topics == ["topics"]
    assert SERVICES["topics"]["restart"] == "no"
    assert SERVICES["topics"]["depends_on"] == {b: {"condition": "service_healthy"} for b in BROKERS}
    roles = [n for n in PARLEY if n != "topics"]
    assert {"receiver", "projector"} <= set(roles) and any(
        PARLEY[n]["command"][0] == "consumer" for n in roles)


def test_settings_agree_with_the_brokers_and_topic_specs() -> None:
    settings = {n: settings_of(n) for n in PARLEY}
    kafka = {(s.kafka.bootstrap, s.kafka.topic_prefix, s.kafka.partitions, s.kafka.replication_factor)
             for s in settings.values()}
    [(bootstrap, prefix, partitions, rf)] = kafka  # every service: the same cluster and topics
    assert sorted((bootstrap or "").split(",")) == sorted(f"{b}:9092" for b in BROKERS)
    broker_env = service_env(next(iter(BROKERS.values())))
    assert rf == len(BROKERS) == int(broker_env["KAFKA_DEFAULT_REPLICATION_FACTOR"])
    specs = Topics(prefix=prefix).specs(partitions)[:4]  # the event topics
    assert [s.name for s in specs] == [f"{prefix}.events.{k}" for k in ("chat", "visitor", "agent", "other")]
    assert broker_env["KAFKA_MIN_INSYNC_REPLICAS"] == specs[0].configs(rf)["min.insync.replicas"]
    assert int(broker_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == rf
    ids = [s.kafka.group_instance_id for s in settings.values() if s.kafka.group_instance_id]
    assert len(ids) == len(set(ids))


def test_postgres_is_pinned_and_healthy_before_the_projector() -> None:
    pg = SERVICES["postgres"]
    assert re.fullmatch(r"postgres:\d+\.\d+(-\w+)?", pg["image"])
    assert pg["healthcheck"]["test"]
    assert PARLEY["projector"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_the_projector_keeps_its_state_in_the_postgres_service() -> None:
    pg = service_env(SERVICES["postgres"])
    url = settings_of("projector").store.url
    parts = urlsplit(url)
    assert parts.scheme == "postgresql"
    assert (parts.hostname, parts.port or 5432) == ("postgres", 5432)
    assert parts.username == pg["POSTGRES_USER"]
    assert parts.password is not None and unquote(parts.password) == pg["POSTGRES_PASSWORD"]
    assert parts.path == "/" + pg["POSTGRES_DB"]
    assert parse_postgres_url(url).migrate == "auto"  # the schema is created on start-up
    # One password for both services, and the whole URL can still be replaced (e.g. by a
    # sqlite:/// URL on the projector's volume) without editing the file.
    raw = PARLEY["projector"]["environment"]["PARLEY_STORE__URL"]
    assert raw.startswith("${PARLEY_STORE_URL:-")
    assert "${PARLEY_POSTGRES_PASSWORD:?" in raw
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${PARLEY_POSTGRES_PASSWORD:?")


def test_interpolation_resolves_nested_defaults() -> None:
    assert interpolate("${A:-x${B:-y}z}") == "xyz"
    assert interpolate("${A:-${B}}") == ""
    assert interpolate("plain") == "plain"
    assert interpolate("${A:?needed}", {"A": "v"}) == "v"
    with pytest.raises(MissingVariable, match="A: needed"):
        interpolate("${A:?needed}", {"A": ""})


# Issue 16, hole 1: compose published an open API on every interface, and defaulted the
# webhook source's token to the public demo token of the README.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|_URL$")


def test_secrets_come_from_the_environment_only_and_are_required() -> None:
    text = COMPOSE_FILE.read_text()
    for leaked in ("DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4", "parley-dev-only"):
        assert leaked not in text, leaked
    checked = 0
    for name, service in SERVICES.items():
        for key, raw in service.get("environment", {}).items():
            if not _SECRET_NAME.search(key):
                continue
            checked += 1
            # No literal and no default: only references to required variables, or (a URL)
            # a default built from them.
            for _var, op, _ in _VAR.findall(str(raw)):
                assert op in ("", ":?") or key.endswith("_URL"), (name, key, raw)
            if not key.endswith("_URL"):
                assert str(raw).startswith("${") and ":?" in str(raw), (name, key, raw)
            with pytest.raises(MissingVariable):  # unset: compose refuses to start
                interpolate(raw, {})
    assert checked >= 6


@pytest.mark.parametrize("missing", sorted(OPERATOR_ENV))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in OPERATOR_ENV.items() if k != missing}
    with pytest.raises(MissingVariable, match=missing):
        for service in SERVICES.values():
            for raw in service.get("environment", {}).values():
                interpolate(raw, env)


@pytest.mark.parametrize("name", sorted(PARLEY))
def test_every_parley_service_guards_its_api_with_tokens(name: str) -> None:
    settings = settings_of(name)
    assert settings.http.api_tokens and not settings.http.allow_open_api
    check_exposure(settings.http, ["/api/chats", "/metrics"])  # does not raise


def test_the_query_api_is_published_on_loopback_unless_asked() -> None:
    for name, service in PARLEY.items():
        for port in service.get("ports", []):
            published = interpolate(port)
            if service["command"][0] == "receiver":
                assert published.count(":") == 1, published  # webhooks: every interface
            else:
                assert published.startswith("127.0.0.1:"), (name, published)
                assert interpolate(port, OPERATOR_ENV | {"PARLEY_API_ADDRESS": ALL_INTERFACES}
                                   ).startswith(ALL_INTERFACES + ":")


def test_images_are_pinned() -> None:
    for name, s in SERVICES.items():
        image = s["image"]
        assert ":" in image and not image.endswith(":latest"), name


def test_the_readme_command_names_this_file() -> None:
    assert "docker compose -f deploy/compose.yaml up" in COMPOSE_FILE.read_text()
    assert Path(DEPLOY / "compose" / "parley.toml").is_file()

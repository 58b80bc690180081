"""Settings: loaded once from TOML (+ ``PARLEY_…`` environment overrides) into frozen Structs.

The file is found from ``--config FILE``, else ``PARLEY_CONFIG``, else no file (embedded
defaults). Environment variables override single values: ``PARLEY_<SECTION>__<KEY>`` (for
example ``PARLEY_KAFKA__BOOTSTRAP=10.0.0.5:9092`` or ``PARLEY_HTTP__PORT=9000``) and
``PARLEY_SOURCES__<NAME>__<KEY>`` for a source. Values are read as TOML literals when they
parse as one (``9000``, ``["a", "b"]``, ``true``) and as plain strings otherwise.

Secrets (auth tokens, HMAC secrets, SASL passwords) are kept out of ``repr()`` so that a
settings object that reaches a log line or a traceback does not leak them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from parley.errors import SettingsError

ProviderName = Literal["natterly", "chatshipper", "standard"]
ENV_PREFIX = "PARLEY_"
ENV_SEP = "__"


class KafkaSecurity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS / SASL client settings shared by every Kafka client Parley builds."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __repr__(self) -> str:
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, sasl_mechanism={self.sasl_mechanism!r}, "
            f"sasl_username={self.sasl_username!r}, sasl_password={'***' if self.sasl_password else None})"
        )


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where Kafka is and how Parley's topics are named and sized."""

    bootstrap: str | None = None  # None: `parley run` starts a local broker
    topic_prefix: str = "parley"
    partitions: int = 6
    replication_factor: int = 1
    client_id: str = "parley"
    request_timeout_ms: int = 10_000
    security: KafkaSecurity = KafkaSecurity()


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    shutdown_timeout_s: float = 15.0


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "sqlite:///.parley/state.db"


class SourceSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One webhook source; its name in the config is the URL path segment."""

    provider: ProviderName
    auth_tokens: tuple[str, ...] = ()  # natterly: `auth_token` in the body
    secrets: tuple[str, ...] = ()  # chatshipper: HMAC-SHA1 keys; standard: whsec_… keys
    tolerance_s: int = 300  # standard: accepted clock skew of `webhook-timestamp`

    def __repr__(self) -> str:
        return (
            f"SourceSettings(provider={self.provider!r}, auth_tokens=<{len(self.auth_tokens)} hidden>, "
            f"secrets=<{len(self.secrets)} hidden>, tolerance_s={self.tolerance_s})"
        )

    def credentials(self) -> tuple[str, ...]:
        return self.auth_tokens + self.secrets


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kafka: KafkaSettings = KafkaSettings()
    http: HttpSettings = HttpSettings()
    store: StoreSettings = StoreSettings()
    sources: dict[str, SourceSettings] = {}
    data_dir: str = ".parley"
    log_level: str = "INFO"

    def all_secrets(self) -> tuple[str, ...]:
        """Every configured secret value: for redaction checks and leak tests."""
        out: list[str] = []
        for src in self.sources.values():
            out.extend(src.credentials())
        if self.kafka.security.sasl_password:
            out.append(self.kafka.security.sasl_password)
        return tuple(s for s in out if s)


def _parse_env_value(raw: str) -> object:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(doc: dict[str, object], env: Mapping[str, str]) -> None:
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or ENV_SEP not in name or name == "PARLEY_CONFIG":
            continue
        parts = name[len(ENV_PREFIX) :].split(ENV_SEP)
        # Section and key names are lower-case in TOML; source names keep their case as lower.
        path = [p.lower() for p in parts]
        node: dict[str, object] = doc
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SettingsError(f"{name}: {part!r} is not a table in the configuration")
            node = child
        node[path[-1]] = _parse_env_value(raw)


def load_settings(path: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Load settings from ``path`` (or ``$PARLEY_CONFIG``) and environment overrides.

    Raises :class:`SettingsError` with one clear line on a missing file, bad TOML, an unknown
    key (typos are errors, not silently ignored) or a wrong type.
    """
    env = os.environ if env is None else env
    path = path or env.get("PARLEY_CONFIG") or None
    doc: dict[str, object] = {}
    if path is not None:
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"configuration file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"configuration file {p} is not valid TOML: {exc}") from None
    _apply_env(doc, env)
    try:
        settings = msgspec.convert(doc, Settings)
    except msgspec.ValidationError as exc:
        # msgspec names the offending path ("at `$.sources.acme.provider`"); never the value.
        raise SettingsError(f"invalid configuration: {exc}") from None
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    for name, src in s.sources.items():
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise SettingsError(f"source name {name!r} must be letters, digits, '-' or '_'")
        if src.provider == "natterly" and not src.auth_tokens:
            raise SettingsError(f"sources.{name}: provider natterly needs auth_tokens")
        if src.provider in ("chatshipper", "standard") and not src.secrets:
            raise SettingsError(f"sources.{name}: provider {src.provider} needs secrets")
    if s.kafka.partitions < 1 or s.kafka.replication_factor < 1:
        raise SettingsError("kafka.partitions and kafka.replication_factor must be >= 1")

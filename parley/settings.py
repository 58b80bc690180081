"""Settings: loaded once from TOML (+ ``PARLEY_…`` environment overrides) into frozen Structs.

The file is, in this order: ``--config FILE``, else ``$PARLEY_CONFIG``, else ``parley.toml`` in
the working directory if there is one (the command line looks there; see :func:`config_path`),
else none: the embedded defaults. Environment variables override single values:
``PARLEY_<SECTION>__<KEY>`` (for example ``PARLEY_KAFKA__BOOTSTRAP=10.0.0.5:9092`` or
``PARLEY_HTTP__PORT=9000``) and ``PARLEY_SOURCES__<NAME>__<KEY>`` for a source. Values are
read as TOML literals when they parse as one (``9000``, ``["a", "b"]``, ``true``) and as plain
strings otherwise.

Secrets (auth tokens, HMAC secrets, SASL passwords) are kept out of ``repr()`` so that a
settings object that reaches a log line or a traceback does not leak them.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin
from urllib.parse import quote, unquote, urlsplit

import msgspec

from contracts.topics import Topics
from parley.credentials import secret_problem, standard_secret_problem
from parley.errors import SettingsError
from parley.pg.url import SCHEMES as POSTGRES_SCHEMES

ProviderName = Literal["natterly", "chatshipper", "standard"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
ENV_PREFIX = "PARLEY_"
ENV_SEP = "__"
CONFIG_ENV = "PARLEY_CONFIG"
#: The file a command reads from its working directory when neither ``--config`` nor
#: ``$PARLEY_CONFIG`` names one.
LOCAL_CONFIG = "parley.toml"
#: ``store.url`` schemes some store understands (projector/stores.py builds them).
STORE_SCHEMES = ("sqlite", *POSTGRES_SCHEMES, "memory")


class KafkaSecurity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS / SASL client settings shared by every Kafka client Parley builds.

    Each password can be given inline (``sasl_password``, typically from the environment:
    ``PARLEY_KAFKA__SECURITY__SASL_PASSWORD``) or as a file (``sasl_password_file``, e.g. a
    mounted Kubernetes Secret), never both. Files are read each time a client is built (not
    when settings load, so a configuration can be checked where the Secret is not mounted);
    after rotating a Secret, restart the processes. One trailing newline is ignored.
    """

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None  # CA bundle (PEM) to verify brokers; None: the system's CAs
    ssl_certfile: str | None = None  # client certificate (PEM), for brokers requiring mTLS
    ssl_keyfile: str | None = None  # its private key (PEM)
    ssl_key_password: str | None = None  # only for an encrypted ssl_keyfile
    ssl_key_password_file: str | None = None

    def __repr__(self) -> str:
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, sasl_mechanism={self.sasl_mechanism!r}, "
            f"sasl_username={self.sasl_username!r}, sasl_password={'***' if self.sasl_password else None}, "
            f"sasl_password_file={self.sasl_password_file!r}, ssl_cafile={self.ssl_cafile!r}, "
            f"ssl_certfile={self.ssl_certfile!r}, ssl_keyfile={self.ssl_keyfile!r}, "
            f"ssl_key_password={'***' if self.ssl_key_password else None}, "
            f"ssl_key_password_file={self.ssl_key_password_file!r})"
        )

    def resolved_sasl_password(self) -> str | None:
        """The SASL password, inline or read from ``sasl_password_file`` now."""
        return _secret(self.sasl_password, self.sasl_password_file, "kafka.security.sasl_password")

    def resolved_ssl_key_password(self) -> str | None:
        """The client key's password, inline or read from ``ssl_key_password_file`` now."""
        return _secret(self.ssl_key_password, self.ssl_key_password_file,
                       "kafka.security.ssl_key_password")


def _secret(inline: str | None, path: str | None, what: str) -> str | None:
    """A secret given inline or in a file (one trailing newline stripped); errors name the
    setting and the file, never the value."""
    if inline is not None and path is not None:
        raise SettingsError(f"{what} and {what}_file are both set; set only one")
    if path is None:
        return inline
    try:
        value = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{what}_file {path} cannot be read: {exc.strerror or exc}") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise SettingsError(f"{what}_file {path} is empty")
    return value


class KafkaSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where Kafka is and how Parley's topics are named and sized."""

    bootstrap: str | None = None  # None: the local broker of data_dir (parley.kafka.local)
    topic_prefix: str = "parley"
    partitions: int = 6
    # Replicas of each new topic. None: chosen from the cluster when topics are created, one
    # per broker up to 3 (three brokers or more: 3, with min.insync.replicas 2).
    replication_factor: int | None = None
    client_id: str = "parley"
    request_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    security: KafkaSecurity = KafkaSecurity()
    # Static group membership (KIP-345): a stable id per process, e.g. the StatefulSet pod name.
    # A member that restarts with the same id within `static_session_timeout_ms` gets its
    # partitions back without a rebalance of the group. None: dynamic membership.
    group_instance_id: str | None = None
    static_session_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 60_000
    #: The port of the local broker that `parley run` and `parley kafka up` start when
    #: ``bootstrap`` is unset (its controller listens 1000 above).
    local_port: Annotated[int, msgspec.Meta(ge=1, le=64535)] = 9092


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The HTTP server, and bearer tokens for its read API and admin endpoints.

    With ``api_tokens`` empty every endpoint is open (the embedded default), which Parley
    allows only on a loopback ``host`` (127.0.0.0/8, ``::1``, ``localhost``): elsewhere a
    process serving ``/api/*`` or ``/metrics`` without tokens refuses to start unless
    ``allow_open_api`` is true (parley.http.check_exposure). With tokens, every request needs
    ``Authorization: Bearer <one of them>`` except ``/healthz``, ``/readyz``,
    ``/api/openapi.json``, ``/webhooks/…`` (which authenticate per source) and, if
    ``metrics_public``, ``/metrics``. Several tokens may be valid at once, for rotation.
    """

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080  # 0: any free port (tests)
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1024 * 1024
    shutdown_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 15.0
    #: How long a webhook waits for Kafka's acknowledgement before it is answered 503
    #: (keep it well under the providers' own timeouts: ChatShipper gives up after 20 s),
    #: and the ``Retry-After`` seconds that 503 carries.
    ack_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    retry_after_s: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 5
    api_tokens: tuple[str, ...] = ()
    metrics_public: bool = False
    #: The explicit opt-out: serve ``/api/*`` and ``/metrics`` without tokens on an address
    #: the network can reach (a private network guarded by other means). docs/security.md.
    allow_open_api: bool = False

    #: Slow or stalled senders (docs/receiver.md, "Limits"). A webhook body must arrive
    #: whole within ``body_timeout_s`` of the handler starting to read it (else 408 and the
    #: connection is closed); a connection is closed when it has sent no complete request
    #: headers for ``idle_timeout_s`` (a slow header sender, or an idle keep-alive).
    body_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    idle_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 15.0
    #: Open connections at most; one more is answered 503 with ``Retry-After`` and closed.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 512
    #: Webhook body bytes held across all in-flight requests at most; a request whose body
    #: does not fit is answered 503 with ``Retry-After`` before its body is read. At least
    #: twice ``max_body_bytes``.
    max_buffered_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 64 * 1024 * 1024
    #: Query API requests waiting for their ``min_position`` at once at most; one more is
    #: answered 503 ``overloaded`` with ``Retry-After`` (docs/projector.md).
    max_position_waiters: Annotated[int, msgspec.Meta(ge=1)] = 256
    #: Live streams (``/api/chats/{id}/stream``, ``/api/stream``) open at once at most; one
    #: more is answered 503 ``overloaded`` with ``Retry-After`` (docs/http-api.md).
    max_streams: Annotated[int, msgspec.Meta(ge=1)] = 100

    def __post_init__(self) -> None:
        if self.max_buffered_body_bytes < 2 * self.max_body_bytes:
            raise ValueError("http.max_buffered_body_bytes must be at least twice "
                             "http.max_body_bytes")

    def __repr__(self) -> str:
        return (f"HttpSettings(host={self.host!r}, port={self.port}, "
                f"max_body_bytes={self.max_body_bytes}, shutdown_timeout_s={self.shutdown_timeout_s}, "
                f"ack_timeout_s={self.ack_timeout_s}, retry_after_s={self.retry_after_s}, "
                f"api_tokens=<{len(self.api_tokens)} hidden>, metrics_public={self.metrics_public}, "
                f"allow_open_api={self.allow_open_api}, "
                f"body_timeout_s={self.body_timeout_s}, idle_timeout_s={self.idle_timeout_s}, "
                f"max_connections={self.max_connections}, "
                f"max_buffered_body_bytes={self.max_buffered_body_bytes})")


#: Where Parley keeps its local files (the local broker, SQLite store, keys, search index).
DEFAULT_DATA_DIR = ".parley"


class StoreSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``url``: the projection store; unset, :func:`load_settings` makes it SQLite in
    ``<data_dir>/state.db``."""

    url: str = "sqlite:///.parley/state.db"


class PrivacySettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-subject encryption of personal data (docs/privacy.md).

    ``encrypt``: the receiver seals each webhook's personal parts with its subject's data key
    before Kafka (the default; false writes bodies readable, as before issue 20). The master
    key wraps the data keys: ``master_key`` (base64 of 32 bytes, better from the environment:
    ``PARLEY_PRIVACY__MASTER_KEY``) or ``master_key_file``; with neither and a SQLite key
    store, ``master.key`` beside it (``<data_dir>/master.key``), which Parley creates
    (owner-only): the one-machine setup. Otherwise a missing master key refuses to start.
    ``previous_master_keys`` still unwrap keys during a rotation (``parley keys rewrap``).
    ``key_store``: where data keys live; unset: ``<data_dir>/keys.db`` with a SQLite
    ``store.url``, the same database with a PostgreSQL one. ``cache_ttl_s``: how long a
    process uses a cached key (or its absence): a destroyed key stops being used everywhere
    within it.
    """

    encrypt: bool = True
    master_key: str | None = None
    master_key_file: str | None = None
    previous_master_keys: tuple[str, ...] = ()
    key_store: str | None = None
    cache_ttl_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    cache_size: Annotated[int, msgspec.Meta(ge=1)] = 100_000

    def __repr__(self) -> str:
        return (f"PrivacySettings(encrypt={self.encrypt}, "
                f"master_key={'***' if self.master_key else None}, "
                f"master_key_file={self.master_key_file!r}, "
                f"previous_master_keys=<{len(self.previous_master_keys)} hidden>, "
                f"key_store={'<set>' if self.key_store else None}, "
                f"cache_ttl_s={self.cache_ttl_s}, cache_size={self.cache_size})")


class SourceSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One webhook source; its name in the config is the URL path segment."""

    provider: ProviderName
    auth_tokens: tuple[str, ...] = ()  # natterly: `auth_token` in the body
    secrets: tuple[str, ...] = ()  # chatshipper: HMAC-SHA1 keys; standard: whsec_… keys
    #: standard: accepted clock skew of `webhook-timestamp` (below 1 s every webhook would fail)
    tolerance_s: Annotated[int, msgspec.Meta(ge=1)] = 300

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
    privacy: PrivacySettings = PrivacySettings()
    sources: dict[str, SourceSettings] = {}
    # [consumers.<name>] tables: each consumer validates its own (e.g. consumers.crm.config).
    consumers: dict[str, dict[str, object]] = {}
    data_dir: str = DEFAULT_DATA_DIR
    log_level: LogLevel = "INFO"  # any case in the file or environment
    #: The event loop of the long-running commands (parley.loop): "auto" is uvloop where it
    #: is installed (a dependency on Linux and macOS), else asyncio.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    #: The file these settings were read from (None: the embedded defaults). Set by
    #: :func:`load_settings`, for the start-up log; not a key of the file itself.
    config_file: str | None = None

    def __repr__(self) -> str:
        # Consumer tables are free-form and may hold credentials: show only their names.
        return (f"Settings(kafka={self.kafka!r}, http={self.http!r}, store={self.store!r}, "
                f"privacy={self.privacy!r}, "
                f"sources={self.sources!r}, consumers={sorted(self.consumers)!r}, "
                f"data_dir={self.data_dir!r}, log_level={self.log_level!r}, "
                f"event_loop={self.event_loop!r}, config_file={self.config_file!r})")

    def all_secrets(self) -> tuple[str, ...]:
        """Every configured secret value: for masking (parley/secrets.py) and leak tests."""
        out: list[str] = []
        for src in self.sources.values():
            out.extend(src.credentials())
        out.extend(self.http.api_tokens)
        for url in (self.store.url, self.privacy.key_store or ""):
            store_password = urlsplit(url).password
            if store_password:
                out.append(unquote(store_password))
        out.extend((self.privacy.master_key or "", *self.privacy.previous_master_keys))
        if self.privacy.master_key_file:
            # Unreadable: reported where the key ring is built (it reads the file too).
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out.append(Path(self.privacy.master_key_file).read_text(encoding="utf-8").strip())
        for table in self.consumers.values():
            out.extend(v for k, v in table.items()
                       if isinstance(v, str) and is_secret_key(k))
        sec = self.kafka.security
        for resolve in (sec.resolved_sasl_password, sec.resolved_ssl_key_password):
            # An unreadable file is reported where clients are built (they read it too).
            with contextlib.suppress(SettingsError):
                out.append(resolve() or "")
        return tuple(s for s in out if s)


_SECRET_WORDS = ("secret", "token", "password", "auth_value", "api_key")


def is_secret_key(key: str) -> bool:
    """Whether a ``[consumers.NAME]`` key holds a secret, by its name (docs/consumers.md)."""
    return any(word in key.lower() for word in _SECRET_WORDS)
# Top-level scalar keys that `PARLEY_<KEY>` (no `__`) may override.
_TOP_LEVEL_ENV = {"PARLEY_DATA_DIR": "data_dir", "PARLEY_LOG_LEVEL": "log_level",
                  "PARLEY_EVENT_LOOP": "event_loop"}


def _parse_env_value(raw: str) -> object:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(doc: dict[str, object], env: Mapping[str, str]) -> None:
    for name, raw in env.items():
        if name in _TOP_LEVEL_ENV:
            doc[_TOP_LEVEL_ENV[name]] = raw
            continue
        if not name.startswith(ENV_PREFIX) or ENV_SEP not in name or name == CONFIG_ENV:
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


def config_path(path: str | os.PathLike[str] | None, env: Mapping[str, str],
                cwd: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file that applies: ``path`` (``--config``), else ``$PARLEY_CONFIG``,
    else ``parley.toml`` in ``cwd`` when ``cwd`` is given and the file exists, else None."""
    named = path or env.get(CONFIG_ENV) or None
    if named is not None:
        return Path(named)
    if cwd is not None and (local := Path(cwd) / LOCAL_CONFIG).is_file():
        return local
    return None


def load_settings(path: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None, *,
                  cwd: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from the file :func:`config_path` picks, then environment overrides.

    ``cwd``: where to look for ``parley.toml`` when no file is named (the command line passes
    its working directory; library callers and tests leave it out, so no stray file counts).
    Raises :class:`SettingsError` with one clear line on a missing file, bad TOML, an unknown
    key (typos are errors, not silently ignored), a wrong type, or a value outside its
    choices (the error lists them).
    """
    env = os.environ if env is None else env
    found = config_path(path, env, cwd)
    doc: dict[str, object] = {}
    if found is not None:
        try:
            doc = tomllib.loads(found.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"configuration file not found: {found}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"configuration file {found} is not valid TOML: {exc}") from None
        if "config_file" in doc:
            raise SettingsError(f"{found}: config_file is not a setting (name the file with "
                                f"--config FILE or {CONFIG_ENV})")
    _apply_env(doc, env)
    _default_store_in_data_dir(doc)
    if isinstance(level := doc.get("log_level"), str):
        doc["log_level"] = level.upper()  # "debug" and "DEBUG" alike, as logging takes them
    # Which file was read, when the error is in it or in the environment: a ./parley.toml
    # picked up without being named should not be a surprise.
    origin = f" (configuration file {found})" if found is not None else ""
    if problem := _choice_problem(doc, Settings, ""):
        raise SettingsError(f"invalid configuration: {problem}{origin}")
    try:
        settings = msgspec.convert(doc, Settings)
    except msgspec.ValidationError as exc:
        # msgspec names the offending path ("at `$.sources.acme.provider`"); never the value.
        raise SettingsError(f"invalid configuration: {exc}{origin}") from None
    try:
        _check(settings)
    except SettingsError as exc:
        raise SettingsError(f"{exc}{origin}") from None
    return msgspec.structs.replace(settings, config_file=str(found) if found else None)


def _default_store_in_data_dir(doc: dict[str, object]) -> None:
    """Without a ``store.url``, the SQLite store is ``<data_dir>/state.db``, beside the
    local broker, the key store and the search index (``.parley/state.db`` by default), so
    every command with the same ``data_dir`` reads the same store, wherever it runs from."""
    store = doc.setdefault("store", {})
    data_dir = doc.get("data_dir", DEFAULT_DATA_DIR)
    if isinstance(store, dict) and "url" not in store and isinstance(data_dir, str) and data_dir:
        store["url"] = "sqlite:///" + quote(str(Path(data_dir) / "state.db"))


def _choices(hint: object) -> tuple[str, ...]:
    """The values of a ``Literal[...]`` hint (or of ``Literal[...] | None``), else ()."""
    if get_origin(hint) is Literal:
        return tuple(str(a) for a in get_args(hint))
    if get_origin(hint) in (Union, types.UnionType):
        return tuple(v for arg in get_args(hint) for v in _choices(arg))
    return ()


def _choice_problem(doc: Mapping[str, object], struct: type[msgspec.Struct],
                    where: str) -> str | None:
    """The first string value in ``doc`` outside its field's ``Literal`` choices, as one line
    naming the key (a source by its name, which msgspec's own error does not) and every valid
    value. Anything else is left to msgspec's validation."""
    for field in msgspec.structs.fields(struct):
        value = doc.get(field.name)
        choices = _choices(field.type)
        if choices and isinstance(value, str) and value not in choices:
            return f"{where}{field.name} = {value!r} is not one of: {', '.join(choices)}"
        for prefix, inner, table in _tables(field.type, value, f"{where}{field.name}"):
            if problem := _choice_problem(table, inner, prefix):
                return problem
    return None


def _tables(hint: object, value: object, key: str
            ) -> list[tuple[str, type[msgspec.Struct], Mapping[str, object]]]:
    """The Struct-typed tables inside ``value``: itself for a Struct field, each entry of a
    ``dict[str, Struct]`` field (``[sources.NAME]``)."""
    if not isinstance(value, dict):
        return []
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return [(f"{key}.", hint, value)]
    if get_origin(hint) is dict:
        item = get_args(hint)[1]
        if isinstance(item, type) and issubclass(item, msgspec.Struct):
            return [(f"{key}.{k}.", item, v) for k, v in value.items() if isinstance(v, dict)]
    return []


def _check(s: Settings) -> None:
    for name, src in s.sources.items():
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise SettingsError(f"source name {name!r} must be letters, digits, '-' or '_'")
        if src.provider == "natterly" and not src.auth_tokens:
            raise SettingsError(f"sources.{name}: provider natterly needs auth_tokens")
        if src.provider in ("chatshipper", "standard") and not src.secrets:
            raise SettingsError(f"sources.{name}: provider {src.provider} needs secrets")
        _check_strength(name, src)
    scheme, sep, _ = s.store.url.partition("://")
    if not sep or scheme.lower() not in STORE_SCHEMES:
        # Only the scheme is named: the rest of a URL may carry a password.
        what = f"unknown scheme {scheme!r}" if sep else "no scheme"
        raise SettingsError(f"store.url has {what}: use sqlite:///path/to/state.db or "
                            "postgresql://user:password@host:5432/db (schemes: "
                            f"{', '.join(STORE_SCHEMES)})")
    try:
        Topics(prefix=s.kafka.topic_prefix)  # it names every topic and group: checked there
    except ValueError as exc:
        raise SettingsError(f"kafka.topic_prefix: {exc}") from None
    rf = s.kafka.replication_factor
    if s.kafka.partitions < 1 or (rf is not None and rf < 1):
        raise SettingsError("kafka.partitions and kafka.replication_factor must be >= 1")
    sec = s.kafka.security
    # Files are read when clients are built (the first is built at start-up), not here: the
    # configuration stays checkable where the secret files are not mounted.
    for what, inline, path in (("sasl_password", sec.sasl_password, sec.sasl_password_file),
                               ("ssl_key_password", sec.ssl_key_password, sec.ssl_key_password_file)):
        if inline is not None and path is not None:
            raise SettingsError(f"kafka.security.{what} and kafka.security.{what}_file are both "
                                "set; set only one")
    if sec.protocol.startswith("SASL") and not (sec.sasl_mechanism and sec.sasl_username
                                                and (sec.sasl_password or sec.sasl_password_file)):
        raise SettingsError(f"kafka.security: protocol {sec.protocol} needs sasl_mechanism, "
                            "sasl_username and sasl_password (or sasl_password_file)")
    for n, token in enumerate(s.http.api_tokens, 1):
        if problem := secret_problem(token):
            raise SettingsError(f"http.api_tokens: token #{n} {problem}")


def _check_strength(name: str, src: SourceSettings) -> None:
    """Every credential of a source is strong enough (:mod:`parley.credentials`); the error
    names the source and the credential's position, never its value."""
    for n, token in enumerate(src.auth_tokens, 1):
        if problem := secret_problem(token):
            raise SettingsError(f"sources.{name}: auth token #{n} {problem}")
    for n, secret in enumerate(src.secrets, 1):
        problem = (standard_secret_problem(secret) if src.provider == "standard"
                   else secret_problem(secret))
        if problem:
            raise SettingsError(f"sources.{name}: secret #{n} {problem}")

"""Settings: TOML + environment overrides, clear errors, secrets kept out of repr."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from parley.errors import SettingsError
from parley.settings import load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "parley.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file() -> None:
    s = load_settings(None, env={})
    assert s.kafka.bootstrap is None
    assert s.http.port == 8080
    assert s.store.url == "sqlite:///.parley/state.db"
    assert s.sources == {}


def test_the_default_store_is_in_the_data_dir(tmp_path: Path) -> None:
    # Every command with one data_dir reads one store, whatever its working directory.
    cfg = write(tmp_path, 'data_dir = "/srv/my parley"\n')
    assert load_settings(cfg, env={}).store.url == "sqlite:////srv/my%20parley/state.db"
    assert load_settings(None, env={"PARLEY_DATA_DIR": "d"}).store.url == "sqlite:///d/state.db"
    named = write(tmp_path, 'data_dir = "/srv/p"\n[store]\nurl = "sqlite:///elsewhere.db"\n')
    assert load_settings(named, env={}).store.url == "sqlite:///elsewhere.db"
    assert load_settings(cfg, env={"PARLEY_STORE__URL": "memory://"}).store.url == "memory://"


@pytest.mark.parametrize(("toml", "where"), [
    ("[http]\nport = 70000\n", "$.http.port"),  # was a traceback from bind() at start-up
    ("[http]\nport = -1\n", "$.http.port"),
    ("[http]\nmax_body_bytes = -1\n", "$.http.max_body_bytes"),
    ("[http]\nshutdown_timeout_s = -5\n", "$.http.shutdown_timeout_s"),
    ("[kafka]\nrequest_timeout_ms = -1\n", "$.kafka.request_timeout_ms"),  # was "Unable to
    ("[kafka]\nstatic_session_timeout_ms = 0\n", "$.kafka.static_session_timeout_ms"),  # bootstrap"
    ('[kafka]\ntopic_prefix = "bad prefix!"\n', "kafka.topic_prefix: topic prefix 'bad prefix!'"),
    ('[kafka]\ntopic_prefix = ""\n', "kafka.topic_prefix: "),  # both were ValueError tracebacks
    ('[sources.b]\nprovider = "standard"\nsecrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]\n'
     "tolerance_s = -300\n", "tolerance_s"),  # every webhook was a 401
])
def test_a_value_out_of_range_is_one_line_naming_it(
        tmp_path: Path, toml: str, where: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(where)):
        load_settings(write(tmp_path, toml), env={})


def test_design_md_example_loads(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
[kafka]
bootstrap = "127.0.0.1:9092"
[http]
port = 8080
[store]
url = "sqlite:///.parley/state.db"
[sources.acme]
provider = "natterly"
auth_tokens = ["tok-1-5d0c9e2a7b41f836", "tok-2-8e1f4a6c3d92b057"]
[sources.shop]
provider = "chatshipper"
secrets = ["s3cret-hmac-key-40c7e9"]
""")
    s = load_settings(cfg, env={})
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.sources["acme"].auth_tokens == ("tok-1-5d0c9e2a7b41f836", "tok-2-8e1f4a6c3d92b057")
    assert s.sources["shop"].provider == "chatshipper"
    assert set(s.all_secrets()) == {"tok-1-5d0c9e2a7b41f836", "tok-2-8e1f4a6c3d92b057",
                                    "s3cret-hmac-key-40c7e9"}


def test_env_overrides_file_and_config_env_var(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[http]\nport = 8080\n")
    s = load_settings(None, env={"PARLEY_CONFIG": str(cfg), "PARLEY_HTTP__PORT": "9001",
                                 "PARLEY_KAFKA__BOOTSTRAP": "10.1.2.3:9092",
                                 "PARLEY_SOURCES__X__PROVIDER": "natterly",
                                 "PARLEY_SOURCES__X__AUTH_TOKENS": '["a-token-7c2e9f0b41d3"]'})
    assert s.http.port == 9001
    assert s.kafka.bootstrap == "10.1.2.3:9092"
    assert s.sources["x"].auth_tokens == ("a-token-7c2e9f0b41d3",)


@pytest.mark.parametrize(("text", "needle"), [
    ("[kafka]\nbootstrp = 'x'\n", "bootstrp"),                 # typo: unknown key
    ("[http]\nport = 'eighty'\n", "$.http.port"),              # wrong type, path named
    ("[sources.a]\nprovider = 'natterly'\n", "auth_tokens"),    # missing credentials
    ("[sources.a]\nprovider = 'zendesk'\n", "provider"),        # unknown provider
    ("[kafka\n", "not valid TOML"),
    ("[http]\nack_timeout_s = 0\n", "$.http.ack_timeout_s"),  # must be > 0
    ("[http]\nretry_after_s = 0\n", "$.http.retry_after_s"),  # must be >= 1
    ("event_loop = 'trio'\n", "event_loop = 'trio' is not one of: auto, uvloop, asyncio"),
    ("[kafka]\nreplication_factor = 0\n", "replication_factor"),
])
def test_bad_configuration_is_one_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(write(tmp_path, text), env={})
    assert needle in str(err.value)


def test_replication_factor_is_chosen_unless_set(tmp_path: Path) -> None:
    # Unset: `parley topics apply` chooses from the cluster. Set, even to 1: honoured as is.
    assert load_settings(None, env={}).kafka.replication_factor is None
    assert load_settings(write(tmp_path, "[kafka]\nreplication_factor = 1\n"),
                         env={}).kafka.replication_factor == 1
    assert load_settings(None, env={"PARLEY_KAFKA__REPLICATION_FACTOR": "1"}
                         ).kafka.replication_factor == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_secrets_never_in_repr_or_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
[kafka.security]
protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "u"
sasl_password = "kafka-pw-123"
[sources.a]
provider = "chatshipper"
secrets = ["hmac-key-456-e8b1c3d9"]
tolerance_s = "soon"
""")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env={})
    assert "hmac-key-456-e8b1c3d9" not in str(err.value)
    cfg.write_text(cfg.read_text().replace('tolerance_s = "soon"', "tolerance_s = 60"))
    s = load_settings(cfg, env={})
    text = repr(s)
    assert "kafka-pw-123" not in text and "hmac-key-456-e8b1c3d9" not in text
    assert "kafka-pw-123" in s.all_secrets()


# ------------------------------------------------------------- secrets from files, API tokens
def test_kafka_passwords_from_files_are_read_when_used(tmp_path: Path) -> None:
    pw = tmp_path / "sasl-password"
    pw.write_text("from-a-file\n")  # `echo pw > file` leaves a newline; it is not the password
    cfg = write(tmp_path, f"""
[kafka.security]
protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "parley"
sasl_password_file = "{pw}"
""")
    s = load_settings(cfg, env={})
    assert s.kafka.security.resolved_sasl_password() == "from-a-file"
    assert "from-a-file" in s.all_secrets()
    assert "from-a-file" not in repr(s) and str(pw) in repr(s)
    pw.write_text("rotated")  # a rotated Secret file counts from the next client on
    assert s.kafka.security.resolved_sasl_password() == "rotated"


def test_a_master_key_from_a_file_is_masked_like_an_inline_one(tmp_path: Path) -> None:
    key = tmp_path / "master.key"
    key.write_text("bWFzdGVyLWtleS1mcm9tLWEtZmlsZS0zMi1ieXRlcyE=\n")
    cfg = write(tmp_path, f'[privacy]\nmaster_key_file = "{key}"\n')
    s = load_settings(cfg, env={})
    assert "bWFzdGVyLWtleS1mcm9tLWEtZmlsZS0zMi1ieXRlcyE=" in s.all_secrets()
    key.unlink()  # unreadable: reported where the key ring is built, not here
    assert load_settings(cfg, env={}).all_secrets() == ()


def test_kafka_password_file_via_environment(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("env-file-pw")
    s = load_settings(None, env={"PARLEY_KAFKA__SECURITY__PROTOCOL": "SASL_PLAINTEXT",
                                 "PARLEY_KAFKA__SECURITY__SASL_MECHANISM": "PLAIN",
                                 "PARLEY_KAFKA__SECURITY__SASL_USERNAME": "u",
                                 "PARLEY_KAFKA__SECURITY__SASL_PASSWORD_FILE": str(pw)})
    assert s.kafka.security.resolved_sasl_password() == "env-file-pw"


@pytest.mark.parametrize(("security", "needle"), [
    ('sasl_password = "x"\nsasl_password_file = "{pw}"', "both set"),
    ("", "needs sasl_mechanism, sasl_username and sasl_password"),
])
def test_bad_kafka_secret_settings_are_one_clear_error(tmp_path: Path, security: str,
                                                      needle: str) -> None:
    pw = tmp_path / "pw"
    pw.write_text("file-secret-789")
    body = security.format(pw=pw)
    cfg = write(tmp_path, f'[kafka.security]\nprotocol = "SASL_SSL"\n{body}\n'
                + ('sasl_mechanism = "PLAIN"\nsasl_username = "u"\n' if body else ""))
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env={})
    assert needle in str(err.value)
    assert "file-secret-789" not in str(err.value)


@pytest.mark.parametrize(("setting", "content", "needle"), [
    ("sasl_password_file", None, "sasl_password_file .* cannot be read"),
    ("sasl_password_file", "\n", "sasl_password_file .* is empty"),
    ("ssl_key_password_file", None, "ssl_key_password_file .* cannot be read"),
])
def test_unreadable_secret_files_are_named_when_used(tmp_path: Path, setting: str,
                                                     content: str | None, needle: str) -> None:
    # Loading works where the Secret is not mounted (offline checks of deploy/); building a
    # client, which reads the file, says which setting and file are wrong.
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    cfg = write(tmp_path, f'[kafka.security]\nprotocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n'
                          f'sasl_username = "u"\n{setting} = "{path}"\n'
                          + ('sasl_password = "p"\n' if setting != "sasl_password_file" else ""))
    s = load_settings(cfg, env={})
    resolve = (s.kafka.security.resolved_sasl_password if setting == "sasl_password_file"
               else s.kafka.security.resolved_ssl_key_password)
    with pytest.raises(SettingsError, match=needle):
        resolve()


def test_api_tokens_rotate_hidden_and_validated(tmp_path: Path) -> None:
    old, new = "old-token-0123456789abcdef", "new-token-0123456789abcdef"
    s = load_settings(None, env={"PARLEY_HTTP__API_TOKENS": f'["{old}", "{new}"]'})
    assert s.http.api_tokens == (old, new)
    assert old not in repr(s) and new not in repr(s) and "2 hidden" in repr(s.http)
    assert {old, new} <= set(s.all_secrets())
    assert s.http.metrics_public is False
    with pytest.raises(SettingsError, match="token #1 is shorter than 16 characters"):
        load_settings(None, env={"PARLEY_HTTP__API_TOKENS": '["short"]'})


def test_static_group_membership_settings() -> None:
    s = load_settings(None, env={"PARLEY_KAFKA__GROUP_INSTANCE_ID": "parley-projector-0"})
    assert s.kafka.group_instance_id == "parley-projector-0"
    assert s.kafka.static_session_timeout_ms == 60_000
    assert load_settings(None, env={}).kafka.group_instance_id is None


def test_consumer_tables_load_and_their_secrets_are_redacted(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
[consumers.crm]
base_url = "http://127.0.0.1:9"
auth_value = "Bearer crm-tok-789"
signing_secret = "whsec_c2VjcmV0"
""")
    s = load_settings(cfg, env={"PARLEY_DATA_DIR": str(tmp_path / "d"), "PARLEY_LOG_LEVEL": "DEBUG",
                                "PARLEY_EVENT_LOOP": "asyncio"})
    assert s.consumers["crm"]["base_url"] == "http://127.0.0.1:9"
    assert {"Bearer crm-tok-789", "whsec_c2VjcmV0"} <= set(s.all_secrets())
    assert "http://127.0.0.1:9" not in s.all_secrets()
    assert "crm-tok-789" not in repr(s) and "whsec_" not in repr(s)
    assert s.data_dir == str(tmp_path / "d") and s.log_level == "DEBUG"
    assert s.event_loop == "asyncio" and load_settings(None, env={}).event_loop == "auto"


# ------------------------------------------------------------- which file, and valid choices
def test_config_file_order_flag_then_env_then_local_file(tmp_path: Path) -> None:
    local = tmp_path / "parley.toml"
    local.write_text("[http]\nport = 8001\n")
    named = tmp_path / "named.toml"
    named.write_text("[http]\nport = 8002\n")
    from_env = tmp_path / "env.toml"
    from_env.write_text("[http]\nport = 8003\n")
    env = {"PARLEY_CONFIG": str(from_env)}
    assert load_settings(named, env=env, cwd=tmp_path).http.port == 8002     # --config
    s = load_settings(None, env=env, cwd=tmp_path)                          # $PARLEY_CONFIG
    assert (s.http.port, s.config_file) == (8003, str(from_env))
    s = load_settings(None, env={}, cwd=tmp_path)                           # ./parley.toml
    assert (s.http.port, s.config_file) == (8001, str(local))
    local.unlink()
    s = load_settings(None, env={}, cwd=tmp_path)                           # embedded defaults
    assert (s.http.port, s.config_file) == (8080, None)
    local.write_text("[http]\nport = 8001\n")
    assert load_settings(None, env={}).config_file is None  # no cwd given: no file looked for


def test_an_error_in_a_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "parley.toml").write_text("[sources.acme]\nprovider = 'natterly'\n")
    with pytest.raises(SettingsError, match=r"needs auth_tokens \(configuration file .*parley"):
        load_settings(None, env={}, cwd=tmp_path)
    (tmp_path / "parley.toml").write_text("config_file = 'other.toml'\n")
    with pytest.raises(SettingsError, match="config_file is not a setting"):
        load_settings(None, env={}, cwd=tmp_path)


@pytest.mark.parametrize(("env", "message"), [
    ({"PARLEY_SOURCES__ACME__PROVIDER": "natterley", "PARLEY_SOURCES__ACME__AUTH_TOKENS": '["t"]'},
     "sources.acme.provider = 'natterley' is not one of: natterly, chatshipper, standard"),
    ({"PARLEY_EVENT_LOOP": "trio"}, "event_loop = 'trio' is not one of: auto, uvloop, asyncio"),
    ({"PARLEY_LOG_LEVEL": "LOUD"},
     "log_level = 'LOUD' is not one of: DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ({"PARLEY_KAFKA__SECURITY__PROTOCOL": "TLS"},
     "kafka.security.protocol = 'TLS' is not one of: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"PARLEY_KAFKA__SECURITY__SASL_MECHANISM": "GSSAPI"},
     "kafka.security.sasl_mechanism = 'GSSAPI' is not one of: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"PARLEY_STORE__URL": "mysql://parley:db-pw-3141@db/parley"},
     "store.url has unknown scheme 'mysql': use sqlite:///path/to/state.db or postgresql://"),
    ({"PARLEY_STORE__URL": "parley:db-pw-3141@db/parley"}, "store.url has no scheme"),
])
def test_a_value_outside_its_choices_lists_the_valid_ones(env: dict[str, str],
                                                         message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(None, env=env)
    assert message in str(err.value)
    assert "db-pw-3141" not in str(err.value)  # a store URL's password is never echoed


def test_log_level_takes_any_case() -> None:
    assert load_settings(None, env={"PARLEY_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    for url in ("sqlite:///x.db", "postgresql://u@h/db", "postgres://h/db", "memory://"):
        assert load_settings(None, env={"PARLEY_STORE__URL": url}).store.url == url

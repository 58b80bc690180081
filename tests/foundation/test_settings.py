"""Settings: TOML + environment overrides, clear errors, secrets kept out of repr."""

from __future__ import annotations

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
auth_tokens = ["tok-1", "tok-2"]
[sources.shop]
provider = "chatshipper"
secrets = ["s3cret"]
""")
    s = load_settings(cfg, env={})
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.sources["acme"].auth_tokens == ("tok-1", "tok-2")
    assert s.sources["shop"].provider == "chatshipper"
    assert set(s.all_secrets()) == {"tok-1", "tok-2", "s3cret"}


def test_env_overrides_file_and_config_env_var(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[http]\nport = 8080\n")
    s = load_settings(None, env={"PARLEY_CONFIG": str(cfg), "PARLEY_HTTP__PORT": "9001",
                                 "PARLEY_KAFKA__BOOTSTRAP": "10.1.2.3:9092",
                                 "PARLEY_SOURCES__X__PROVIDER": "natterly",
                                 "PARLEY_SOURCES__X__AUTH_TOKENS": '["a"]'})
    assert s.http.port == 9001
    assert s.kafka.bootstrap == "10.1.2.3:9092"
    assert s.sources["x"].auth_tokens == ("a",)


@pytest.mark.parametrize(("text", "needle"), [
    ("[kafka]\nbootstrp = 'x'\n", "bootstrp"),                 # typo: unknown key
    ("[http]\nport = 'eighty'\n", "$.http.port"),              # wrong type, path named
    ("[sources.a]\nprovider = 'natterly'\n", "auth_tokens"),    # missing credentials
    ("[sources.a]\nprovider = 'zendesk'\n", "provider"),        # unknown provider
    ("[kafka\n", "not valid TOML"),
])
def test_bad_configuration_is_one_clear_error(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(write(tmp_path, text), env={})
    assert needle in str(err.value)


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
secrets = ["hmac-key-456"]
tolerance_s = "soon"
""")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, env={})
    assert "hmac-key-456" not in str(err.value)
    cfg.write_text(cfg.read_text().replace('tolerance_s = "soon"', "tolerance_s = 60"))
    s = load_settings(cfg, env={})
    text = repr(s)
    assert "kafka-pw-123" not in text and "hmac-key-456" not in text
    assert "kafka-pw-123" in s.all_secrets()

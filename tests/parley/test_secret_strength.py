"""Every configured secret has a minimum strength, checked when settings load (issue 16,
holes 4 and 15): an empty or tiny HMAC key, or a placeholder copied from an example file,
stops start-up with one line naming the source and the key's position, never its value."""

from __future__ import annotations

import base64
import os

import pytest

from parley.credentials import MIN_SECRET_CHARS, STANDARD_KEY_BYTES
from parley.errors import SettingsError
from parley.settings import load_settings
from receiver.signatures import StandardWebhooks

README_TOKEN = "DZBHWMV3TJXQZeCZb8HdAqWNP90Kp4"  # the README's demo token (Natterly's own example)


def whsec(n_bytes: int) -> str:
    return "whsec_" + base64.b64encode(os.urandom(n_bytes)).decode()


def source_env(provider: str, key: str, values: str) -> dict[str, str]:
    return {"PARLEY_SOURCES__SRC__PROVIDER": provider, f"PARLEY_SOURCES__SRC__{key}": values}


WEAK = [
    # (provider, key, the weak value, what the error says)
    ("standard", "SECRETS", "whsec_", "secret #1 decodes to 0 bytes"),
    ("standard", "SECRETS", "", "secret #1 decodes to 0 bytes"),
    ("standard", "SECRETS", whsec(STANDARD_KEY_BYTES[0] - 1), "decodes to 23 bytes, not 24 to 64"),
    ("standard", "SECRETS", whsec(STANDARD_KEY_BYTES[1] + 1), "decodes to 65 bytes, not 24 to 64"),
    ("standard", "SECRETS", "whsec_not base64!", "secret #1 is not whsec_<base64>"),
    ("standard", "SECRETS", "whsec_change-me", "secret #1 is not whsec_<base64>"),
    ("chatshipper", "SECRETS", "", "secret #1 is shorter than 16 characters"),
    ("chatshipper", "SECRETS", "s3cret", "secret #1 is shorter than 16 characters"),
    ("chatshipper", "SECRETS", "replace-with-the-chatshipper-hmac-secret", "placeholder"),
    ("natterly", "AUTH_TOKENS", "t", "auth token #1 is shorter than 16 characters"),
    ("natterly", "AUTH_TOKENS", "change-me-please-now", "placeholder"),
    ("natterly", "AUTH_TOKENS", "CHANGEME-0123456789", "placeholder"),
    ("natterly", "AUTH_TOKENS", "replace-with-the-natterly-auth-token", "placeholder"),
    ("natterly", "AUTH_TOKENS", "a" * 40, "fewer than 6 different characters"),
    ("natterly", "AUTH_TOKENS", "0123456789abcdef 01", "contains whitespace"),
]


@pytest.mark.parametrize(("provider", "key", "value", "needle"), WEAK,
                         ids=[f"{p}-{v[:24]!r}" for p, _, v, _ in WEAK])
def test_a_weak_source_secret_stops_start_up(provider: str, key: str, value: str,
                                              needle: str) -> None:
    good = README_TOKEN if provider == "natterly" else (
        whsec(32) if provider == "standard" else "cs-" + os.urandom(16).hex())
    for values in (f'["{value}"]', f'["{good}", "{value}"]'):  # also when another one is fine
        with pytest.raises(SettingsError) as err:
            load_settings(None, env=source_env(provider, key, values))
        message = str(err.value)
        assert message.startswith("sources.src: "), message
        assert needle.replace("#1", "#2" if good in values else "#1") in message, message
        if len(value.removeprefix("whsec_")) >= 4:
            assert value.removeprefix("whsec_") not in message  # never the value
        assert "\n" not in message


@pytest.mark.parametrize("token", ["short-token", "replace-with-openssl-rand-hex-32-output-0001",
                                   "0000000000000000"])
def test_weak_api_tokens_stop_start_up(token: str) -> None:
    with pytest.raises(SettingsError, match=r"^http\.api_tokens: token #1 ") as err:
        load_settings(None, env={"PARLEY_HTTP__API_TOKENS": f'["{token}"]'})
    assert token not in str(err.value)


@pytest.mark.parametrize(("provider", "key", "value"), [
    ("natterly", "AUTH_TOKENS", README_TOKEN),            # the README's demo token passes
    ("natterly", "AUTH_TOKENS", os.urandom(32).hex()),    # `openssl rand -hex 32`
    ("chatshipper", "SECRETS", "zICWczLmAOEDvh1DiPGSHw=="),
    ("chatshipper", "SECRETS", "x" * 4 + os.urandom(8).hex()),
    ("standard", "SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),  # the specification's example
    ("standard", "SECRETS", whsec(STANDARD_KEY_BYTES[0])),
    ("standard", "SECRETS", whsec(STANDARD_KEY_BYTES[1])),
])
def test_strong_secrets_load(provider: str, key: str, value: str) -> None:
    s = load_settings(None, env=source_env(provider, key, f'["{value}"]'))
    assert value in s.sources["src"].credentials()
    assert len(value) >= MIN_SECRET_CHARS or provider == "standard"


def test_the_verifier_itself_refuses_an_empty_standard_key() -> None:
    # Settings built in code (not loaded) do not pass through the check above: the verifier
    # must still never sign with an empty key.
    for secrets in (["whsec_"], [""], [whsec(32), "whsec_"]):
        with pytest.raises(ValueError, match=r"secret #\d is empty"):
            StandardWebhooks(secrets)

"""`parley receiver`: registered, and refuses to start without what it needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parley.cli import build_parser, main
from parley.errors import SettingsError
from parley.runtime import Runtime
from parley.settings import load_settings
from receiver.role import ReceiverRole


def test_receiver_command_is_registered() -> None:
    assert build_parser().parse_args(["receiver"]).command == "receiver"


@pytest.mark.parametrize(("config", "message"), [
    ('[sources.acme]\nprovider = "natterly"\nauth_tokens = ["nat-token-7f3a9c0e5b21"]\n',
     "kafka.bootstrap"),
    ('[kafka]\nbootstrap = "127.0.0.1:1"\n', "no [sources.NAME]"),
])
def test_receiver_refuses_incomplete_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        config: str, message: str) -> None:
    for name in [n for n in os.environ if n.startswith("PARLEY_")]:
        monkeypatch.delenv(name)
    path = tmp_path / "parley.toml"
    path.write_text(config)
    assert main(["receiver", "--config", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_a_malformed_standard_secret_is_named_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "parley.toml"
    path.write_text('[kafka]\nbootstrap = "127.0.0.1:1"\n'
                    '[sources.s]\nprovider = "standard"\nsecrets = ["whsec_not base64!"]\n')
    with pytest.raises(SettingsError, match=r"sources\.s: secret #1 is not whsec_<base64>") as info:
        ReceiverRole(Runtime.from_settings(load_settings(path, env={})))
    assert "not base64!" not in str(info.value)

"""The `parley` command line: parsing, `--config` anywhere, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.cli import _hoist_config, main


def test_config_accepted_before_or_after_the_command() -> None:
    assert _hoist_config(["kafka", "status", "--config", "a.toml"]) == [
        "--config", "a.toml", "kafka", "status"]
    assert _hoist_config(["--config=b.toml", "run"]) == ["--config", "b.toml", "run"]


def test_a_kafka_tools_own_arguments_are_left_alone() -> None:
    # kafka-topics has a --config of its own; parley's may still come before the tool's name.
    assert _hoist_config(["kafka", "tool", "--config", "a.toml", "topics", "--alter",
                          "--config", "retention.ms=1"]) == [
        "--config", "a.toml", "kafka", "tool", "topics", "--alter", "--config", "retention.ms=1"]
    assert _hoist_config(["kafka", "tool", "--print", "topics", "--config", "x=1"]) == [
        "kafka", "tool", "--print", "topics", "--config", "x=1"]


@pytest.mark.kafka  # needs Java and the resolved jars, not a broker
def test_kafka_tool_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from parley.kafka import resolve_jars

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n[kafka]\nbootstrap = "10.0.0.5:9092"\n')
    assert main(["--config", str(cfg), "kafka", "tool", "--print", "kafka-consumer-groups.sh",
                 "--list"]) == 0
    line = capsys.readouterr().out.strip()
    assert f"-cp {resolve_jars()}/*" in line
    assert line.endswith("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "
                         "--bootstrap-server 10.0.0.5:9092 --list")
    # A server named on the line wins; an unknown tool is one line naming the known ones.
    assert main(["--config", str(cfg), "kafka", "tool", "--print", "topics",
                 "--bootstrap-server=h:1", "--list"]) == 0
    assert "10.0.0.5" not in capsys.readouterr().out
    assert main(["--config", str(cfg), "kafka", "tool", "frobnicate"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("parley: error: no Kafka tool 'frobnicate'; known: acls,")
    assert len(err.splitlines()) == 1


def test_bad_config_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[kafka]\nbootstrp = 1\n")
    assert main(["kafka", "status", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("parley: error: invalid configuration")
    assert len(err.splitlines()) == 1


def test_kafka_status_without_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n')
    assert main(["kafka", "status", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"parley: error: no local Kafka broker runs for data_dir {tmp_path}: start "
                   "one with `parley run` or `parley kafka up`, or set kafka.bootstrap to use a "
                   "cluster")


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_a_parley_toml_in_the_working_directory_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parley.toml").write_text("[kafka]\nbootstrp = 1\n")
    assert main(["kafka", "status"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("parley: error: invalid configuration") and "parley.toml" in err, err


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    # `parley consumers lag --json | head -1`: the pipe closes while the command writes.
    import os
    import subprocess
    import sys

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n')
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the command writes a byte: every write is EPIPE
    try:
        done = subprocess.run([Path(sys.executable).parent / "parley", "--config", str(cfg),
                               "consumers", "list"], stdout=write_end, stderr=subprocess.PIPE,
                              timeout=60, check=False)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == b"", done.stderr.decode()


@pytest.mark.parametrize(("argv", "flag"), [
    (["kafka", "up", "--port", "70000"], "--port"),
    (["kafka", "up", "--port", "64536"], "--port"),  # its controller would be past 65535
    (["kafka", "up", "--heap-mb", "-5"], "--heap-mb"),
    (["consumer", "search", "--port", "70000"], "--port"),
    (["consumer", "search", "--port", "x"], "--port"),
])
def test_a_port_or_size_out_of_range_is_one_line_exit_2(
        capsys: pytest.CaptureFixture[str], argv: list[str], flag: str) -> None:
    # Was a traceback: OverflowError: bind(): port must be 0-65535.
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert f"argument {flag}: must be a whole number from " in err


@pytest.mark.parametrize(("argv", "error"), [
    (["consumers", "replay", "search", "--from", "yesterday"],
     "--from 'yesterday': expected an ISO-8601 time"),
    (["consumers", "replay", "search", "--from", "2026-02-01", "--to", "2026-01-01"],
     "--from 2026-02-01T00:00:00+00:00 is not before --to"),
    (["consumers", "reset", "search", "--to", "soon"], "soon"),
    (["projections", "rebuild", "--workers", "two"],
     "--workers must be a whole number of at least 1, not 'two'"),
    (["projections", "rebuild", "--workers", "2", "--join"], "--join needs the copy's name"),
    (["projections", "rebuild", "bad-name!"], "projection name"),
])
def test_bad_arguments_are_their_error_before_a_missing_broker(
        argv: list[str], error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No broker runs: what is wrong with the arguments is said first (fixing them, then
    starting a broker, then learning the arguments were wrong is a round too many)."""
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("parley: error: ") and error in err, err
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_no_command_has_an_argument_named_like_the_dispatch_attributes() -> None:
    """``handler``, ``precheck`` and ``local_kafka`` are set per command with
    ``set_defaults``; an argument with one of those names would overwrite it (as
    ``store migrate --check`` once did to a hook then named ``check``)."""
    import argparse

    from parley.cli import build_parser

    reserved = {"handler", "precheck", "local_kafka"}
    clashes: list[str] = []
    todo = [("parley", build_parser())]
    while todo:
        name, parser = todo.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
            elif action.dest in reserved:
                clashes.append(f"{name}: {action.option_strings or action.dest}")
    assert clashes == []

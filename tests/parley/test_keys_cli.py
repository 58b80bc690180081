"""``parley keys new-master`` and ``parley keys rewrap``: rotating the master key re-wraps
the data keys; the same data keys (so every sealed record) open under the new master alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from parley.cli import main
from parley.privacy.config import build_key_ring
from parley.settings import load_settings


def _config(path: Path, current: str, previous: tuple[str, ...] = ()) -> str:
    old = ", ".join(f'"{k}"' for k in previous)
    path.write_text(f'data_dir = "{path.parent}"\n[store]\nurl = "sqlite:///{path.parent}/state.db"\n'
                    f'[privacy]\nmaster_key = "{current}"\nprevious_master_keys = [{old}]\n',
                    encoding="utf-8")
    return str(path)




def test_rotation_rewraps_every_data_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    assert main(["keys", "new-master"]) == 0
    old = capsys.readouterr().out.strip()
    assert main(["keys", "new-master"]) == 0
    new = capsys.readouterr().out.strip()
    assert old != new and len(old) == 44
    config = _config(tmp_path / "parley.toml", old)
    created = asyncio.run(_key(config, create=True))

    config = _config(tmp_path / "parley.toml", new, (old,))
    assert main(["keys", "rewrap", "--config", config]) == 0
    assert capsys.readouterr().out.startswith("rewrapped 1 data keys under master key ")
    only_new = _config(tmp_path / "parley.toml", new)
    assert asyncio.run(_key(only_new, create=False)) == created


async def _key(config: str, *, create: bool) -> bytes | None:
    store = build_key_ring(load_settings(config)).store
    await store.open()
    try:
        if create:
            return (await store.get_or_create("natterly:visitor:V1")).secret
        key = await store.get("natterly:visitor:V1")
        return None if key is None else key.secret
    finally:
        await store.close()


def test_rewrap_with_an_unknown_master_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "parley.toml"
    config.write_text('[store]\nurl = "postgresql://u:pw@127.0.0.1:9/db"\n', encoding="utf-8")
    assert main(["keys", "rewrap", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no master key" in err and "pw" not in err

"""parley.loop: which event loop the long-running commands get, and clear errors."""

from __future__ import annotations

import asyncio
import sys
import warnings

import pytest

from parley.errors import SettingsError
from parley.loop import loop_factory, loop_name, run


async def _which() -> str:
    await asyncio.sleep(0)
    return loop_name(asyncio.get_running_loop())


def test_auto_is_uvloop_where_installed() -> None:
    pytest.importorskip("uvloop")  # a dependency except on Windows
    assert run(_which(), "auto") == "uvloop"
    assert run(_which(), "uvloop") == "uvloop"


def test_asyncio_opts_out() -> None:
    assert loop_factory("asyncio") is None
    assert run(_which(), "asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert run(_which(), "auto") == "asyncio"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the refused coroutine is closed, not left unawaited
        with pytest.raises(SettingsError, match="uvloop is not installed"):
            run(_which(), "uvloop")


def test_run_returns_the_result_and_raises_the_error() -> None:
    async def boom() -> None:
        raise ValueError("from the coroutine")

    with pytest.raises(ValueError, match="from the coroutine"):
        run(boom(), "auto")

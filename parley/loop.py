"""The event loop Parley's long-running commands run on: uvloop where installed, else asyncio.

uvloop (libuv, with transports written in C) serves the same aiohttp and aiokafka code with
less CPU per request and per Kafka round trip than asyncio's pure-Python selector loop;
``bench/receiver.py`` measures both (docs/benchmarks.md, "Receiver"). It is a dependency on
every platform it supports, so ``auto`` (the default) means uvloop there; ``asyncio`` opts
out, e.g. to rule the loop out while chasing a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from parley.errors import SettingsError

__all__ = ["EventLoopName", "loop_factory", "loop_name", "run"]

EventLoopName = Literal["auto", "uvloop", "asyncio"]
T = TypeVar("T")


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_factory(choice: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (None: asyncio's default loop).

    Raises SettingsError when uvloop is asked for by name and is not installed; ``auto``
    falls back to asyncio quietly.
    """
    if choice == "asyncio":
        return None
    factory = _uvloop_factory()
    if factory is None and choice == "uvloop":
        raise SettingsError('event_loop = "uvloop" but uvloop is not installed '
                            '(pip install uvloop, or set event_loop to "auto" or "asyncio")')
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what a running loop is, for logs."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], choice: EventLoopName) -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    try:
        factory = loop_factory(choice)
    except SettingsError:
        main.close()  # never awaited: close it, or Python warns about it
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)

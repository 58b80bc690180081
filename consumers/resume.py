"""Finishing a coroutine that was started by hand (``coro.send(None)``) and suspended.

The runner's in-order path calls handlers inside one coroutine that it steps itself: when that
coroutine returns at the first step, the whole batch was handled without waiting and no task,
lane or future was needed. When it suspends instead (a handler waits on I/O), :func:`resume`
lets the runner await the rest of it exactly as if it had been awaited from the start.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["resume"]

T = TypeVar("T")


@types.coroutine
def resume(coro: Coroutine[Any, Any, T], yielded: Any) -> Generator[Any, Any, T]:
    """Await ``coro``, whose first ``send(None)`` returned ``yielded`` (what it waits on).

    The awaiting task resumes ``coro`` as it would have: ``send`` of what the task sends,
    ``throw`` of what it throws (a cancellation reaches the handler that is waiting).
    """
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the coroutine, as await would
            try:
                yielded = coro.throw(exc)
            except StopIteration as end:
                return end.value  # type: ignore[no-any-return]
            continue
        try:
            yielded = coro.send(sent)
        except StopIteration as end:
            return end.value  # type: ignore[no-any-return]

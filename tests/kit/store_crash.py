"""SIGKILL in the middle of store commits, for every durable store (SQLite, PostgreSQL).

A child process commits ``rows_per_commit`` rows plus one offset per transaction, in a loop,
each row holding the offset it was written with; it is killed right after it reports commit
``target`` (it is then inside the next one). Afterwards the store must hold exactly the rows
of the commit its stored offset names: never rows of two commits, never rows without their
offset.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import textwrap

from projector.states import AggregateRef
from projector.stores import open_store

__all__ = ["kill_mid_commits"]

_CRASHER = textwrap.dedent(
    """
    import asyncio, sys
    from projector.stores import open_store
    from projector.views import Row

    async def main(url: str, rows_per_commit: int) -> None:
        store = open_store(url)
        await store.open()
        await store.create_projection("p1")
        offset = (await store.offsets("p1")).get(("t", 0), 0)
        while True:
            rows = [Row(kind="chat", id=f"c{i}", state=str(offset).encode(), view=str(offset).encode(),
                        chat_id=f"c{i}", sort_key="0") for i in range(rows_per_commit)]
            offset += 1
            await store.commit("p1", rows, {("t", 0): offset})
            print(offset, flush=True)  # then straight on to the next commit

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


async def kill_mid_commits(url: str, *, rounds: int, max_step: int,
                           rows_per_commit: int = 2000) -> None:
    """``rounds`` times: run the committing child on ``url``, SIGKILL it a random 1 to
    ``max_step - 1`` commits later, and check the store with a connection of its own."""
    rng = random.Random()
    observer = open_store(url)
    await observer.open()
    offset = 0
    try:
        for _ in range(rounds):
            target = offset + rng.randrange(1, max_step)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _CRASHER, url, str(rows_per_commit),
                stdout=asyncio.subprocess.PIPE)
            try:
                assert proc.stdout is not None
                while int(await proc.stdout.readline() or b"-1") < target:
                    assert proc.returncode is None, "the committing process died on its own"
                proc.send_signal(signal.SIGKILL)
                await asyncio.wait_for(proc.wait(), 30)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            offset = (await observer.offsets("p1"))[("t", 0)]
            assert offset >= target
            refs = [AggregateRef("chat", f"c{i}") for i in range(rows_per_commit)]
            states = set((await observer.load("p1", refs)).values())
            assert states == {str(offset - 1).encode()}, f"rows from several commits at {offset}"
    finally:
        await observer.close()

"""The competitors of ``bench/replay.py``: the same fold in Quix Streams and in faust-streaming.

Both run :func:`fold_record` per record — the projector's own code: decode the envelope,
normalise it, and for every domain event and every aggregate it touches read the aggregate's
state from the framework's state store, ``projector.fold_fast.apply`` the event, and write the state
back (``encode_state``: the same msgpack bytes Parley stores). State keys are
``b"<kind>:<id>"``, inside the state of the record's key (both frameworks partition state by
the record key; see ``bench/replay.py``'s docstring for what that simplifies in their favour).

Each app is configured as its documentation recommends for stateful processing:

- Quix Streams: ``Application`` with RocksDB state (the default store) and changelog topics
  (default on), at-least-once, one ``StreamingDataFrame`` per event topic with
  ``update(..., stateful=True)``; ``state.get_bytes`` / ``set_bytes`` skip Quix's JSON value
  serialisation, since the fold states are already bytes.
- faust-streaming: an ``App`` with one agent over the four event topics, folding into a
  ``Table`` (changelog-backed; the in-memory store by default, ``rocksdb://`` with
  ``--faust-store rocksdb``), raw (bytes) keys and values, the web server off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from replay_parley import cpu_seconds

from contracts.envelope import decode_envelope
from contracts.normalise import normalise
from contracts.topics import Topics
from projector.fold_fast import affected, apply
from projector.states import decode_state, encode_state

__all__ = ["fold_record", "run_faust", "run_quix"]


def fold_record(value: bytes, get: Callable[[bytes], bytes | None],
                put: Callable[[bytes, bytes], None]) -> int:
    """Fold one record through a key-value state store; returns the domain events folded."""
    events = normalise(decode_envelope(value))
    for event in events:
        for ref in affected(event):
            key = f"{ref.kind}:{ref.id}".encode()
            prior = get(key)
            state = apply(ref, None if prior is None else decode_state(ref.kind, prior), event)
            put(key, encode_state(state))
    return len(events)


class _Clock:
    """Times a run from its first record to its n-th, in wall-clock and CPU seconds."""

    def __init__(self, n: int) -> None:
        self.n, self.records, self.events = n, 0, 0
        self.first = self.last = self.cpu_first = 0.0

    def tick(self, events: int) -> bool:
        """Count a record; True when it was the n-th."""
        if not self.records:
            self.first, self.cpu_first = time.perf_counter(), cpu_seconds()
        self.records += 1
        self.events += events
        if self.records == self.n:
            self.last = time.perf_counter()
            return True
        return False

    def result(self) -> dict[str, Any]:
        """Timed from the first record to the app's return: its last state is then durable
        (Quix's final checkpoint, faust's changelog flush), as Parley's is at its last
        commit. ``seconds_to_nth`` stops at the n-th record's fold instead."""
        closed, cpu = time.perf_counter(), cpu_seconds()
        return {"records": self.records, "events": self.events,
                "seconds": closed - self.first, "seconds_to_nth": self.last - self.first,
                "cpu_seconds": cpu - self.cpu_first}


# ------------------------------------------------------------------------------ Quix Streams


def run_quix(bootstrap: str, prefix: str, group: str, n: int, work: Path) -> dict[str, Any]:
    from quixstreams import Application, State

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,  # fresh per run: no committed offsets, no changelog to restore
        auto_offset_reset="earliest",
        state_dir=work / "state",
        loglevel="WARNING",
    )
    clock = _Clock(n)

    def fold(value: bytes, state: State) -> None:
        if clock.tick(fold_record(value, state.get_bytes, state.set_bytes)):
            app.stop()

    for name in Topics(prefix=prefix).event_topics:
        topic = app.topic(name, key_deserializer="bytes", value_deserializer="bytes")
        app.dataframe(topic).update(fold, stateful=True)
    app.run()
    return clock.result() | {"store_bytes": _size(work / "state")}


# -------------------------------------------------------------------------------- faust


def run_faust(bootstrap: str, prefix: str, group: str, n: int, partitions: int, work: Path,
              store: str) -> dict[str, Any]:
    import faust

    app = faust.App(
        group,  # the app id: consumer group and changelog names, fresh per run
        broker=f"kafka://{bootstrap}",
        store=f"{store}://",
        datadir=str(work / "faust"),
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
    )
    # Raw bytes in and out (the app's default serializers are raw too): the envelope is
    # decoded by the fold, and fold states are stored as the bytes Parley stores.
    topic = app.topic(*Topics(prefix=prefix).event_topics, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    table = app.Table("folds", partitions=partitions, key_type=bytes, value_type=bytes)
    clock = _Clock(n)

    @app.agent(topic)
    async def fold(stream: Any) -> None:
        async for value in stream:
            if clock.tick(fold_record(value, table.get, table.__setitem__)):
                asyncio.get_running_loop().call_soon(_stop, worker)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    logging.getLogger("faust").setLevel(logging.WARNING)
    with contextlib.suppress(SystemExit):  # the worker exits when it has stopped
        worker.execute_from_commandline()
    if clock.records < n:
        raise RuntimeError(f"faust stopped after {clock.records} of {n} records")
    return clock.result() | {"store_bytes": _size(work / "faust")}


_STOPPING: set[asyncio.Task[Any]] = set()


def _stop(worker: Any) -> None:
    task = asyncio.ensure_future(worker.stop())
    _STOPPING.add(task)  # keep a reference until it is done
    task.add_done_callback(_STOPPING.discard)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0

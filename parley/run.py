"""``parley run``: every role in one process on one port, on the embedded defaults.

Steps: (1) bind ``http.port`` (a taken port is one line, before Kafka starts); (2) use
``kafka.bootstrap`` if configured, else use or start the local broker of ``data_dir``
(:mod:`parley.kafka.local`); (3) apply the topic specs; (4) serve receiver, projector, query
API and the built-in consumers; (5) on Ctrl-C or SIGTERM — at any step, the broker's start
included — shut down, and stop the local broker if this run started it and no other process
uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator

import msgspec

from parley.errors import LaunchCancelled
from parley.http import bind, build_app, check_exposure, serve
from parley.logs import log_secrets, setup_logging
from parley.roles import roles_for
from parley.runtime import Runtime
from parley.settings import Settings

log = logging.getLogger("parley.run")

#: The exit status of a run interrupted before it served (128 + SIGINT, as a shell reports).
INTERRUPTED = 130


async def run_all(settings: Settings) -> int:
    if not settings.http.allow_open_api:  # (that warning is logged once, by build_app)
        # Before the broker starts: `run` always serves the query API, and an exposed one is
        # refused with nothing started. build_app checks the real routes again.
        check_exposure(settings.http, ["/api/*"])
    setup_logging(settings.log_level, settings.all_secrets())
    sock = bind(settings.http.host, settings.http.port)
    # One stop signal for the whole run: set by SIGINT/SIGTERM from the first moment, so a
    # Ctrl-C while Kafka starts ends the start (cancel: the launcher's thread watches it).
    stop, cancel = asyncio.Event(), threading.Event()

    def interrupt() -> None:
        stop.set()
        cancel.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupt)
    try:
        async with _kafka(settings, cancel) as settings:
            if not stop.is_set():
                await _serve(settings, sock, stop)
    except LaunchCancelled:
        log.info("interrupted while the local Kafka was starting; stopped it")
        return INTERRUPTED
    finally:
        sock.close()
    return 0


async def _serve(settings: Settings, sock: socket.socket, stop: asyncio.Event) -> None:
    from parley.kafka.topics import apply_topics

    rt = Runtime.from_settings(settings)
    report = await apply_topics(settings.kafka, rt.topics.specs(settings.kafka.partitions))
    for change in report.changes:
        if change.action != "unchanged":
            log.info("topic %s %s", change.topic, change.action, extra={"detail": change.detail})
    for warning in report.warnings():
        log.warning("%s", warning)
    roles = roles_for("run", rt)
    # Consumers may hold secrets the settings don't list (a $PARLEY_CONSUMERS_CONFIG
    # file): now that they are built, redact theirs too.
    setup_logging(settings.log_level, log_secrets(settings, roles))
    if not stop.is_set():
        await serve(build_app(rt, roles), rt, stop=stop, sock=sock)


@contextlib.asynccontextmanager
async def _kafka(settings: Settings, cancel: threading.Event) -> AsyncIterator[Settings]:
    """``settings`` with the bootstrap of the Kafka to use, for the block; the local broker
    when ``kafka.bootstrap`` is unset (started if needed, and stopped at the end if this run
    started it and no other process uses it)."""
    if settings.kafka.bootstrap:
        yield settings
        return
    from parley.kafka.local import LocalBroker

    broker = LocalBroker(settings)
    log.info("starting local Kafka", extra={"dir": str(broker.root)})
    http = settings.http
    state, use = await asyncio.to_thread(broker.start_for_run,
                                         f"http://{http.host}:{http.port}", cancel)
    try:
        yield msgspec.structs.replace(
            settings, kafka=msgspec.structs.replace(settings.kafka, bootstrap=state.bootstrap))
    finally:
        log.info(await asyncio.to_thread(broker.finish_run, use))

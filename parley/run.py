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

from consumers.role import BuiltinConsumersRole
from contracts.topics import Topics
from parley.errors import LaunchCancelled
from parley.http import bind, check_exposure
from parley.logs import setup_logging
from parley.process import serve_roles
from parley.runtime import Role, Runtime
from parley.settings import Settings
from projector.role import ProjectorRole
from receiver.role import ReceiverRole

log = logging.getLogger("parley.run")

#: The roles ``parley run`` serves, in the order they install (each is built with the Runtime).
RUN_ROLES = (ReceiverRole, ProjectorRole, BuiltinConsumersRole)

#: The exit status of a run interrupted before it served (128 + SIGINT, as a shell reports).
INTERRUPTED = 130


async def run_all(settings: Settings) -> int:
    """Run ``parley run`` (steps 1-5 above); the exit status."""
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


def run_roles(rt: Runtime) -> list[Role]:
    """Every role of ``parley run``: receiver, projector (with the query API) and the
    built-in consumers."""
    return [role(rt) for role in RUN_ROLES]


async def _serve(settings: Settings, sock: socket.socket, stop: asyncio.Event) -> None:
    from parley.kafka.topics import apply_topics

    topics = Topics(prefix=settings.kafka.topic_prefix)
    report = await apply_topics(settings.kafka, [*topics.specs(settings.kafka.partitions),
                                                 *topics.ops_specs(), topics.erasures_spec()])
    for change in report.changes:
        if change.action != "unchanged":
            log.info("topic %s %s", change.topic, change.action, extra={"detail": change.detail})
    for warning in report.warnings():
        log.warning("%s", warning)
    await serve_roles(settings, run_roles, stop=stop, sock=sock)


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

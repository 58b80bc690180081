"""``parley run``: every role in one process on one port, on the embedded defaults.

Steps: (1) use ``kafka.bootstrap`` if configured, else start (or reuse) the local broker;
(2) apply the topic specs; (3) serve receiver, projector, query API and the built-in consumers
on ``http.port``; (4) on Ctrl-C, shut down gracefully and stop the broker if this run started it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec

from parley.http import build_app, serve
from parley.logs import log_secrets, setup_logging
from parley.roles import roles_for
from parley.runtime import Runtime
from parley.settings import Settings

log = logging.getLogger("parley.run")


async def run_all(settings: Settings) -> int:
    setup_logging(settings.log_level, settings.all_secrets())
    kafka = None
    if not settings.kafka.bootstrap:
        from parley.kafka.launcher import LocalKafka

        kafka = LocalKafka(Path(settings.data_dir) / "kafka")
        already = kafka.load_state()
        was_running = already is not None and all(kafka.is_running(n) for n in already.nodes)
        log.info("starting local Kafka", extra={"dir": str(kafka.root)})
        state = await asyncio.to_thread(kafka.up)
        if was_running:
            kafka = None  # someone else's `parley kafka up`: leave it running
        settings = msgspec.structs.replace(
            settings, kafka=msgspec.structs.replace(settings.kafka, bootstrap=state.bootstrap))
    try:
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
        app = build_app(rt, roles)
        await serve(app, rt)
    finally:
        if kafka is not None:
            log.info("stopping local Kafka")
            await asyncio.to_thread(kafka.down)
    return 0

"""A consumer that records every delivery (duplicates included) in a file, slowly.

For process tests: ``parley consumer tests.kit.consumers.recording:recording`` with
``RECORDING_FILE`` set. Each handled event appends ``<event_id>\\n`` with one unbuffered
``write`` (O_APPEND), so a SIGKILL never loses a recorded line nor tears one.
"""

from __future__ import annotations

import asyncio
import os

from consumers.api import ConsumedEvent, consumer


@consumer("recording", topics=("chat",), concurrency=4)
async def recording(event: ConsumedEvent) -> None:
    await asyncio.sleep(float(os.environ.get("RECORDING_DELAY_S", "0.002")))
    fd = os.open(os.environ["RECORDING_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event.event_id}\n".encode())
    finally:
        os.close(fd)

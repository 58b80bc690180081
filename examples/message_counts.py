"""Example consumer: count each chat's messages in SQLite, exactly once per message.

Run it:  PYTHONPATH=. parley consumer examples.message_counts:message_counts
"""

import os
import sqlite3
from contextlib import closing

from consumers.api import ConsumedEvent, consumer
from contracts.domain import MessagePosted


@consumer("message-counts", topics=("chat",), kinds=("MessagePosted",))
async def message_counts(event: ConsumedEvent) -> None:
    # At-least-once delivery, and webhooks repeat messages: keying by message id makes both no-ops.
    path = os.environ.get("MESSAGE_COUNTS_DB", "message_counts.db")
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS messages (chat_id, message_id, PRIMARY KEY (chat_id, "
                   "message_id))")
        for e in event.domain:
            if isinstance(e, MessagePosted):
                db.execute("INSERT OR IGNORE INTO messages VALUES (?, ?)", (e.chat_id, e.message_id))

"""Each chat's index of log positions: which records of the event topics were folded into
it, so a chat's webhooks are read back by offset (the console's timeline) without scanning
a topic.

The index is rows of kind :data:`LOG_KIND` in the projection copy, one per (chat, record),
built by the :class:`~projector.folder.Folder` beside the chat's own row and committed in
the same transaction, so a copy's index always matches its states, and a rebuild (a replay
of the log into a new copy) builds it again. Its rows are no state: they are never
published to the state topics, counted by ``Store.counts`` or compared by a rebuild's
verification.

Row layout: ``id`` ``"{chat_id}/{topic}:{partition}:{offset:020d}"`` (under the chat, as
its messages are), ``chat_id``, ``sort_key`` the record's Kafka timestamp (milliseconds,
16 digits: the order the receiver appended them), ``view`` the position as a JSON string.
"""

from __future__ import annotations

import msgspec

from contracts.errors import ContractError
from contracts.position import Position
from projector.views import Row

__all__ = ["LOG_KIND", "log_row", "position_of"]

LOG_KIND = "chat_log"
_STRING = msgspec.json.Decoder(str)


def log_row(chat_id: str, topic: str, partition: int, offset: int, timestamp_ms: int) -> Row:
    """The index row saying record ``topic:partition:offset`` was folded into ``chat_id``."""
    return Row(kind=LOG_KIND, id=f"{chat_id}/{topic}:{partition}:{offset:020d}", state=b"",
               view=msgspec.json.encode(f"{topic}:{partition}:{offset}"), chat_id=chat_id,
               sort_key=f"{max(timestamp_ms, 0):016d}")


def position_of(view: bytes) -> Position:
    """The position an index row's ``view`` names (ContractError if it names none)."""
    try:
        return Position.parse(_STRING.decode(view))
    except msgspec.DecodeError as exc:
        raise ContractError(f"not a chat log entry: {exc}") from None

"""Each chat's and agent's index of log positions: which records of the event topics were
folded into it, so its webhooks are read back by offset (the console's timeline and status
history) without scanning a topic.

The index is rows of kinds :data:`LOG_KINDS` in the projection copy, one per (aggregate,
record), built by the :class:`~projector.folder.Folder` beside the aggregate's own row and
committed in the same transaction, so a copy's index always matches its states, and a
rebuild (a replay of the log into a new copy) builds it again. Its rows are no state: they
are never published to the state topics, counted by ``Store.counts`` or compared by a
rebuild's verification.

Row layout: kind ``chat_log`` / ``agent_log``; ``id``
``"{aggregate_id}/{topic}:{partition}:{offset:020d}"`` (under the aggregate, as a chat's
messages are); ``chat_id`` the aggregate's id (the column the range is checked against);
``sort_key`` the record's Kafka timestamp (milliseconds, 16 digits: the order the receiver
appended them); ``view`` the position as a JSON string.
"""

from __future__ import annotations

import msgspec

from contracts.errors import ContractError
from contracts.position import Position
from projector.views import Row

__all__ = ["INDEXED", "LOG_KINDS", "log_row", "position_of"]

#: The aggregate kinds indexed, and the row kind of each one's index.
INDEXED: dict[str, str] = {"chat": "chat_log", "agent": "agent_log"}
LOG_KINDS = frozenset(INDEXED.values())
_STRING = msgspec.json.Decoder(str)


def log_row(kind: str, id: str, topic: str, partition: int, offset: int,
            timestamp_ms: int) -> Row:
    """The index row saying record ``topic:partition:offset`` was folded into aggregate
    ``kind`` ``id`` (a kind of :data:`INDEXED`)."""
    return Row(kind=INDEXED[kind], id=f"{id}/{topic}:{partition}:{offset:020d}", state=b"",
               view=msgspec.json.encode(f"{topic}:{partition}:{offset}"), chat_id=id,
               sort_key=f"{max(timestamp_ms, 0):016d}")


def position_of(view: bytes) -> Position:
    """The position an index row's ``view`` names (ContractError if it names none)."""
    try:
        return Position.parse(_STRING.decode(view))
    except msgspec.DecodeError as exc:
        raise ContractError(f"not a log index entry: {exc}") from None

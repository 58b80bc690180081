"""A record's place in the log, as handed to clients for read-your-writes."""

from __future__ import annotations

import msgspec

from contracts.errors import ContractError
from contracts.params import INT32_MAX, parse_uint

__all__ = ["Position"]


class Position(msgspec.Struct, frozen=True, order=True):
    """``topic:partition:offset`` of one Kafka record.

    The receiver returns ``str(position)`` in its 2xx answer; query endpoints take
    it back as ``min_position`` and wait until the projection has applied it.
    Kafka topic names cannot contain ``:``, so the text form is unambiguous.
    """

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """Parse ``topic:partition:offset``; ContractError on anything else (an offset
        Kafka cannot have, too: partitions are 32-bit, offsets 64-bit)."""
        parts = text.split(":", 3)
        if len(parts) != 3 or not parts[0]:
            raise ContractError("position: must be topic:partition:offset")
        topic, partition, offset = parts
        return cls(topic, parse_uint(partition, "partition", maximum=INT32_MAX),
                   parse_uint(offset, "offset"))

"""A record's place in the log, as handed to clients for read-your-writes."""

from __future__ import annotations

import msgspec

from contracts.errors import ContractError

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
        """Parse ``topic:partition:offset``; ContractError on anything else."""
        parts = text.split(":")
        if len(parts) != 3 or not parts[0]:
            raise ContractError(f"position {text!r} is not topic:partition:offset")
        topic, partition, offset = parts
        # int() accepts "+1", " 1" and "1_0"; positions are plain decimal digits.
        if not (partition.isascii() and partition.isdigit()):
            raise ContractError(f"position {text!r} has a bad partition {partition!r}")
        if not (offset.isascii() and offset.isdigit()):
            raise ContractError(f"position {text!r} has a bad offset {offset!r}")
        return cls(topic, int(partition), int(offset))

"""A data key: the AES-256 key of one data subject, and its generation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = ["DATA_KEY_BYTES", "DataKey", "new_data_key"]

DATA_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class DataKey:
    """A subject's data key (AES-256) and its generation; ``repr`` hides the key."""

    subject: str
    generation: int
    secret: bytes = field(repr=False)


def new_data_key() -> bytes:
    return secrets.token_bytes(DATA_KEY_BYTES)

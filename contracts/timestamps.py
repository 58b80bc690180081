"""Time conversions shared by the provider contracts: all results are UTC-aware."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from msgspec import Meta

__all__ = ["MAX_UNIX_S", "UnixSeconds", "as_utc", "from_unix", "from_unix_or_none"]

#: 9999-12-31T23:59:59Z, the last second ``datetime`` can represent.
MAX_UNIX_S = 253_402_300_799

#: Unix seconds as a provider sends them: an integer (Natterly documents
#: integers) or, leniently, a float; bounded so conversion cannot overflow.
UnixSeconds = Annotated[int, Meta(ge=0, le=MAX_UNIX_S)] | Annotated[float, Meta(ge=0, le=MAX_UNIX_S)]


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def from_unix(seconds: int | float) -> datetime:
    """Convert Unix seconds (already range-checked by ``UnixSeconds``) to UTC."""
    return datetime.fromtimestamp(seconds, UTC)


def from_unix_or_none(seconds: int | float | None) -> datetime | None:
    """Natterly's "not set" convention: ``0`` (or null) means no time at all."""
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, UTC)

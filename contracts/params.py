"""Numbers and times that arrive as text from outside: query parameters, headers, cursors.

One place bounds them, so no caller can forget: :func:`parse_uint` checks the length before
``int()`` (CPython refuses more than 4,300 digits with a ValueError, and converting long
ones costs quadratic time) and the range after it (SQLite and PostgreSQL integers are 64-bit);
:func:`parse_time` answers only times that exist in UTC. Both raise :class:`ContractError`
whose ``detail`` starts with the parameter's name, ready for a 400 answer.
"""

from __future__ import annotations

from datetime import datetime

from contracts.errors import ContractError
from contracts.timestamps import as_utc

__all__ = ["INT32_MAX", "INT64_MAX", "parse_time", "parse_uint"]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# The longest ISO-8601 text fromisoformat reads ("2026-01-02T03:04:05.123456+14:00:00.123456").
_MAX_TIME_CHARS = 64


def parse_uint(text: str, name: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """``text`` as plain decimal digits within ``[minimum, maximum]``; no sign, spaces or
    ``_`` (all of which ``int()`` accepts)."""
    if not (0 < len(text) <= len(str(maximum)) and text.isascii() and text.isdigit()
            and minimum <= (value := int(text)) <= maximum):
        raise ContractError(f"{name}: must be a whole number from {minimum} to {maximum}")
    return value


def parse_time(text: str, name: str) -> datetime:
    """An ISO-8601 time, in UTC (a time without an offset is taken as UTC)."""
    try:
        if len(text) > _MAX_TIME_CHARS:
            raise ValueError(text)
        # Converting can leave datetime's range: 0001-01-01T00:00+14:00 is in year 0 in UTC.
        return as_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        raise ContractError(f"{name}: must be an ISO-8601 time between the years 1 and 9999 "
                            "(UTC)") from None

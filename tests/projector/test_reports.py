"""A report query's range: every bad ``from``/``to`` is a BadQuery naming it, never a crash."""

from __future__ import annotations

from datetime import date

import pytest

from projector.reports import BadQuery, parse_range

TODAY = date(2026, 12, 7)


@pytest.mark.parametrize(("raw_from", "raw_to", "named"), [
    ("2026-13-01", None, "from"),
    ("x", None, "from"),
    (None, "2026-3-1", "to"),
    ("2026-03-10", "2026-03-01", "after to"),
    ("1900-01-01", "2026-01-01", "3660 days"),
    # The last day the calendar has: the roll-up plan looks one day past `to`.
    ("9999-12-31", "9999-12-31", "to must be a day before 9999-12-31"),
    ("2026-01-01", "9999-12-31", "to must be a day before"),
])
def test_a_bad_range_is_a_bad_query_naming_the_parameter(
        raw_from: str | None, raw_to: str | None, named: str) -> None:
    with pytest.raises(BadQuery, match=named):
        parse_range(raw_from, raw_to, TODAY)


def test_the_range_defaults_to_the_30_days_ending_today() -> None:
    assert parse_range(None, None, TODAY) == (date(2026, 11, 8), TODAY)
    assert parse_range("0001-01-01", "0001-01-01", TODAY) == (date.min, date.min)
    assert parse_range(None, "9999-12-30", TODAY)[1] == date(9999, 12, 30)

"""How the console writes a duration (the ``ago`` filter of its templates)."""

from __future__ import annotations

import pytest

from parley.console.app import _ago


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "—"), (4.2, "4 s"), (119, "119 s"), (180, "3 min"), (9000, "2.5 h"),
    (172_799, "48.0 h"), (279_396_000, "3233.8 days")])
def test_a_duration_in_the_unit_people_read(seconds: float | None, text: str) -> None:
    """A wait of years read ``77610.0 h`` on the reports page; days from two days on."""
    assert _ago(seconds) == text

"""The roll-ups' arithmetic (projector/rollups.py): quantiles from the log-scale histograms
within the stated relative error, sums that remove exactly, and the month / day plan of a
range."""

from __future__ import annotations

import math
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from projector import rollups

EPOCH = date(1970, 1, 1)


@given(st.lists(st.integers(1, 10**10), min_size=1, max_size=60), st.sampled_from([0.5, 0.9]))
def test_a_quantile_is_within_the_relative_error_of_the_exact_one(values: list[int],
                                                                   q: float) -> None:
    hist: dict[int, int] = {}
    for ms in values:
        hist[rollups.bucket(ms)] = hist.get(rollups.bucket(ms), 0) + 1
    exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1] / 1000
    got = rollups.quantile(hist, len(values), q)
    assert got is not None and abs(got - exact) <= exact * rollups.RELATIVE_ERROR * 1.000001


def test_under_a_millisecond_is_zero() -> None:
    assert rollups.quantile({rollups.bucket(0): 3}, 3, 0.5) == 0.0


@given(st.lists(st.tuples(st.integers(0, 10**9), st.booleans()), max_size=30))
def test_adding_then_removing_leaves_nothing(values: list[tuple[int, bool]]) -> None:
    """Chats added one by one to a day's tally, then each removed: nothing left."""
    day: rollups.Key = ("d", "all", "", 20_000)
    facts = [rollups.Fact(day=20_000, groups=(("all", ""),), values=(ms, None, None, None, None),
                          counts=(1, int(missed), 0, 0, 0, 0, 0, 0, 0, 0)) for ms, missed in values]
    stored = b""
    for sign in (1, -1):
        for fact in facts:
            delta: dict[rollups.Key, rollups.Tally] = {}
            rollups._contribute(delta, fact, sign)
            stored = rollups.add(stored, delta[day])
    assert stored == b""


@given(st.dates(date(2020, 1, 1), date(2030, 1, 1)), st.integers(0, 800))
def test_the_plan_covers_every_day_once(first: date, span: int) -> None:
    last = first + timedelta(days=span)
    covered: list[int] = []
    for grain, a, b in rollups.plan((first - EPOCH).days, (last - EPOCH).days):
        if grain == "d":
            covered += range(a, b + 1)
        else:
            for month in range(a, b + 1):
                start = date(month // 12, month % 12 + 1, 1)
                end = date(month // 12 + (month % 12 == 11), (month + 1) % 12 + 1, 1)
                covered += range((start - EPOCH).days, (end - EPOCH).days)
    assert covered == list(range((first - EPOCH).days, (last - EPOCH).days + 1))

"""The reports page's charts: SVG that needs nothing from elsewhere, with gaps for days
without a value."""

from __future__ import annotations

import re

from parley.console import charts


def test_a_chart_refers_to_nothing_outside_itself() -> None:
    svg = charts.over_time("Wait per day", "seconds", ["2026-03-01", "2026-03-02", "2026-03-03"],
                           {"median": [20.0, None, 31.0], "p90": [41.0, None, 31.0]}).decode()
    assert svg.startswith("<svg")
    # No script, stylesheet or font fetched: pygal's default tooltip script is on another
    # site; its namespaces and comments are the only URLs left.
    refs = re.findall(r'(?:href|src)="([^"]*)"', svg)
    assert all(not ref.startswith(("http", "//")) for ref in refs), refs
    assert "<script" not in svg or "src=" not in svg.split("<script", 1)[1].split(">", 1)[0]
    assert "xml-stylesheet" not in svg and "@import" not in svg


def test_a_day_without_a_value_is_a_gap_not_a_zero() -> None:
    svg = charts.over_time("Wait per day", "seconds", ["2026-03-01", "2026-03-02", "2026-03-03"],
                           {"median": [20.0, None, 31.0]}).decode()
    assert svg.count('class="dot ') == 2  # a dot per day with a value


def test_bars_per_agent() -> None:
    svg = charts.bars("Chats per agent", "chats", ["ag-ann", "ag-bo"],
                      {"chats": [2.0, 1.0], "missed": [0.0, 0.0]}, counts=True).decode()
    assert svg.count('class="rect reactive tooltip-trigger"') == 4
    assert "ag-ann" in svg and "ag-bo" in svg


def _y_labels(svg: str) -> list[float]:
    axis = svg[svg.index('class="axis y'):]
    axis = axis[:axis.index('class="axis x') if 'class="axis x' in axis else len(axis)]
    return [float(t) for t in re.findall(r'class="(?:major)?">([-0-9.]+)</text>', axis)]


def test_the_axis_reaches_above_the_largest_value() -> None:
    """A p90 of 30.98 s sat above the axis's last label (30) at the chart's top edge."""
    svg = charts.over_time("Wait per day", "seconds", ["2026-03-01", "2026-03-02"],
                           {"median": [20.0, 25.0], "p90": [26.0, 30.98]}).decode()
    labels = _y_labels(svg)
    assert labels[0] == 0 and labels[-1] >= 30.98, labels
    counts = _y_labels(charts.bars("Chats per agent", "chats", ["a", "b"],
                                   {"chats": [7.0, 3.0]}, counts=True).decode())
    assert counts[-1] >= 7 and all(v == int(v) for v in counts), counts

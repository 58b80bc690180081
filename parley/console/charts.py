"""The reports page's charts, drawn on the server as SVG by pygal.

The page shows each chart as an ``<img>`` of its own URL, never inlined: pygal writes its
stylesheet (and a configuration script for its tooltips) inside the SVG, which the console's
Content-Security-Policy would refuse in a page, while an SVG shown as an image is a separate
document whose own style applies and whose scripts never run. ``js=[]``: no tooltip script
is referenced from anywhere (pygal's default is a script on another site).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

import pygal
from pygal.style import Style

# pygal appends an import hook to sys.meta_path (for its map plugins, which Parley does not
# use) that has no find_spec: every later import that reaches it warns (ImportWarning; an
# error under the test suite's filterwarnings) on Python 3.11. Take it out again.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

__all__ = ["HEIGHT", "WIDTH", "bars", "over_time"]

WIDTH, HEIGHT = 600, 300

#: The console's colours (console.css) and the browser's system font: nothing to fetch.
STYLE = Style(
    background="#ffffff", plot_background="#ffffff", foreground="#1b1f24",
    foreground_strong="#1b1f24", foreground_subtle="#d5dbe1", opacity=".85",
    colors=("#0b5cad", "#b42318", "#1a7f37", "#9a6700"), font_family="system-ui, sans-serif",
    title_font_size=15, legend_font_size=12, label_font_size=11, major_label_font_size=11)

Series = Mapping[str, Sequence[float | None]]


def _config(title: str, y_title: str, counts: bool) -> dict[str, object]:
    return {"title": title, "y_title": y_title, "style": STYLE, "width": WIDTH, "height": HEIGHT,
            "order_min": 0 if counts else None,  # counts: no fractions on the axis
            "explicit_size": True, "js": [], "disable_xml_declaration": True,
            "legend_at_bottom": True, "truncate_label": 14, "include_x_axis": True,
            "margin": 12, "margin_right": 40,  # room for the last date label
            "no_data_text": "no chats"}


def _axis(series: Series, counts: bool) -> list[float]:
    """The y axis's labels: 0 up to a round number at or above the largest value, about five
    steps of 1, 2 or 5 times a power of ten (pygal's own labels stop below the largest value,
    which then sits above the last label)."""
    top = max((v for values in series.values() for v in values if v is not None), default=0.0)
    if top <= 0:
        return [0.0, 1.0]
    rough = top / 5
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    if counts:
        step = max(1.0, float(math.ceil(step)))
    return [round(i * step, 9) for i in range(math.ceil(top / step - 1e-9) + 1)]


def _render(chart: pygal.graph.graph.Graph, series: Series, counts: bool) -> bytes:
    labels = _axis(series, counts)
    chart.config.y_labels = labels
    chart.config.range = (labels[0], labels[-1])
    for name, values in series.items():
        chart.add(name, list(values))
    svg: str = chart.render(is_unicode=True)
    return svg.encode()


def over_time(title: str, y_title: str, days: Sequence[str], series: Series, *,
              counts: bool = False) -> bytes:
    """A line per series over ``days`` (YYYY-MM-DD; None where a day has no value: a gap);
    ``counts``: whole numbers on the axis."""
    chart = pygal.Line(**_config(title, y_title, counts), show_legend=len(series) > 1,
                       show_dots=len(days) <= 62, dots_size=3, allow_interruptions=True,
                       show_minor_x_labels=False, x_labels_major_count=6, x_label_rotation=0)
    chart.x_labels = list(days)
    return _render(chart, series, counts)


def bars(title: str, y_title: str, keys: Sequence[str], series: Series, *,
         counts: bool = False) -> bytes:
    """Bars per key (an agent), one per series side by side."""
    chart = pygal.Bar(**_config(title, y_title, counts), show_legend=len(series) > 1,
                      x_label_rotation=20 if len(keys) > 6 else 0)
    chart.x_labels = list(keys)
    return _render(chart, series, counts)

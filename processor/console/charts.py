"""Small server-side charts as inline SVG: a line chart and a stacked bar chart, pure Python.

The console draws its charts on the server so a page needs no JavaScript library and fetches
nothing (its Content-Security-Policy would refuse both). Colours are SVG presentation attributes,
not ``style=`` (which the policy forbids); fonts and axis colours come from ``console.css``.

Both functions take the category labels of the x axis (months) and the series as
``[(name, values)]`` with one value per label, and return `Markup` for a Jinja2 template. Every
text is escaped. The SVG has ``role="img"``, a ``<title>`` and ``<desc>`` named by
``aria-labelledby`` (their ids come from the title: titles on one page must differ), a legend,
y ticks at round numbers with grid lines, and x labels (thinned out when there are many). Each
bar segment and each point carries a ``<title>`` with its exact value (a tooltip) and
``data-label`` / ``data-series`` / ``data-value`` attributes. Line values may be ``None`` (no
value: a gap in the line); bars are drawn for values > 0 (negative bar values count as 0).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

Series = Sequence[tuple[str, Sequence[float | int | None]]]
Format = Callable[[float], str]

#: series colours in order (Okabe-Ito without its yellow, then Paul Tol's muted: told apart by most
#: colour-blind readers too)
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#000000", "#882255", "#999933",
           "#332288", "#7f7f7f", "#44aa99")
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 28           # margins around the plot area
LEGEND_ROW, CHAR_W = 18, 7.0                         # legend line height, estimated px per character


def compact(value: float) -> str:
    """``1234567`` -> ``1.2M``; ``950`` -> ``950``; ``-2500`` -> ``-2.5k``."""
    sign, v = ("-" if value < 0 else ""), abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if v >= limit:
            text = f"{v / limit:.1f}".removesuffix(".0")
            return f"{sign}{text}{suffix}"
    return f"{sign}{v:g}" if v != int(v) else f"{sign}{int(v)}"


def compact_dollars(cents: float) -> str:
    """Cents as compact dollars: ``123456789`` -> ``$1.2M``."""
    text = compact(cents / 100)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def nice_ticks(low: float, high: float, count: int = 5, min_step: float = 1) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^k apart, at least ``min_step``: the charts show whole
    quantities) from 0 or below ``low`` to ``high`` or above, about ``count`` of them."""
    low, high = min(low, 0.0), max(high, 0.0)
    raw = max((high - low) / count, min_step)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first, last = math.floor(low / step), max(math.ceil(high / step), math.floor(low / step) + 1)
    return [round(i * step, 9) for i in range(first, last + 1)]


def line_chart(title: str, labels: Sequence[str], series: Series, *, desc: str = "", y_format: Format = compact,
               colors: Sequence[str] = PALETTE, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """Lines, one per series, with a point per value (``None``: no point, the line breaks)."""
    values = [v for _, vs in series for v in vs if v is not None]
    frame = _Frame(title, labels, series, desc, colors, width, height, min(values, default=0), max(values, default=0))
    parts = []
    for i, (name, vs) in enumerate(series):
        color = frame.color(i)
        runs: list[list[str]] = [[]]
        points = []
        for j, v in enumerate(vs[:len(labels)]):
            if v is None:
                runs.append([])
                continue
            x, y = frame.x_center(j), frame.y(v)
            runs[-1].append(f"{x:.1f},{y:.1f}")
            points.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}" '
                          f'data-series="{_e(name)}" data-label="{_e(labels[j])}" data-value="{_e(v)}">'
                          f"<title>{_e(labels[j])} · {_e(name)}: {_e(y_format(v))}</title></circle>")
        lines = [f'<polyline points="{" ".join(run)}" fill="none" stroke="{color}" stroke-width="2"/>'
                 for run in runs if len(run) > 1]
        parts.append(f'<g class="series" data-series="{_e(name)}">{"".join(lines)}{"".join(points)}</g>')
    return frame.svg("line", parts, y_format)


def stacked_bar_chart(title: str, labels: Sequence[str], series: Series, *, desc: str = "",
                      y_format: Format = compact, colors: Sequence[str] = PALETTE, width: int = WIDTH,
                      height: int = HEIGHT) -> Markup:
    """One bar per label (a ``<g class="bar-group">``), stacked from the series in order."""
    totals = [sum(max(0, vs[j] or 0) for _, vs in series if j < len(vs)) for j in range(len(labels))]
    frame = _Frame(title, labels, series, desc, colors, width, height, 0, max(totals, default=0))
    bar_w = max(1.0, frame.slot * 0.7)
    groups = []
    for j, label in enumerate(labels):
        x, base, rects = frame.x_center(j) - bar_w / 2, 0.0, []
        for i, (name, vs) in enumerate(series):
            v = max(0, (vs[j] if j < len(vs) else 0) or 0)
            if v <= 0:
                continue
            top, bottom = frame.y(base + v), frame.y(base)
            rects.append(f'<rect class="bar" x="{x:.1f}" y="{top:.1f}" width="{bar_w:.1f}" '
                         f'height="{max(bottom - top, 0.5):.1f}" fill="{frame.color(i)}" data-series="{_e(name)}" '
                         f'data-value="{_e(v)}"><title>{_e(label)} · {_e(name)}: {_e(y_format(v))}</title></rect>')
            base += v
        groups.append(f'<g class="bar-group" data-label="{_e(label)}" data-total="{totals[j]}">{"".join(rects)}</g>')
    return frame.svg("bar", groups, y_format)


def _e(value: object) -> str:
    """Escaped for SVG text and attribute values."""
    return escape(str(value), quote=True)


class _Frame:
    """The geometry shared by both charts: plot area, scales, axes, legend, the ``<svg>`` itself."""

    def __init__(self, title: str, labels: Sequence[str], series: Series, desc: str, colors: Sequence[str],
                 width: int, height: int, low: float, high: float) -> None:
        self.title, self.labels, self.names, self.colors = title, list(labels), [n for n, _ in series], colors
        self.width = width
        self.legend, legend_h = self._legend(width)
        self.height = height + legend_h
        self.plot = (LEFT, TOP + legend_h, width - RIGHT, self.height - BOTTOM)    # x0, y0, x1, y1
        self.ticks = nice_ticks(low, high)
        self.slot = (self.plot[2] - self.plot[0]) / max(1, len(self.labels))
        self.empty = not self.labels or not self.names
        span = f"{self.labels[0]} to {self.labels[-1]}" if self.labels else "no periods"
        self.desc = desc or f"{span}; series: {', '.join(self.names) or 'none'}."
        self.id = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "chart"

    def color(self, i: int) -> str:
        return _e(self.colors[i % len(self.colors)])

    def x_center(self, j: int) -> float:
        return self.plot[0] + self.slot * (j + 0.5)

    def y(self, value: float) -> float:
        low, high = self.ticks[0], self.ticks[-1]
        return self.plot[3] - (value - low) / (high - low) * (self.plot[3] - self.plot[1])

    def _legend(self, width: int) -> tuple[list[str], int]:
        """Swatch + name per series, left to right, wrapping; returns the items and their height."""
        items, x, row = [], float(LEFT), 0
        for i, name in enumerate(self.names):
            w = 18 + CHAR_W * len(name) + 14
            if x + w > width - RIGHT and x > LEFT:
                x, row = float(LEFT), row + 1
            y = TOP + row * LEGEND_ROW
            items.append(f'<g class="legend-item"><rect x="{x:.0f}" y="{y}" width="12" height="12" '
                         f'fill="{self.color(i)}"/><text x="{x + 16:.0f}" y="{y + 10}">{_e(name)}</text></g>')
            x += w
        return items, (row + 1) * LEGEND_ROW + 6 if items else 0

    def svg(self, kind: str, marks: list[str], y_format: Format) -> Markup:
        x0, y0, x1, y1 = self.plot
        axis = []
        for t in [] if self.empty else self.ticks:
            y = self.y(t)
            axis.append(f'<line class="grid{" zero" if t == 0 else ""}" x1="{x0}" x2="{x1}" y1="{y:.1f}" '
                        f'y2="{y:.1f}"/><text class="tick" x="{x0 - 6}" y="{y + 4:.1f}" '
                        f'text-anchor="end">{_e(y_format(t))}</text>')
        every = max(1, math.ceil(len(self.labels) * CHAR_W * 8 / max(1, x1 - x0)))   # ~8 chars a label
        for j, label in enumerate(self.labels):
            if (len(self.labels) - 1 - j) % every == 0:          # always label the latest period
                axis.append(f'<text class="tick" x="{self.x_center(j):.1f}" y="{y1 + 16}" '
                            f'text-anchor="middle">{_e(label)}</text>')
        if self.empty:
            marks = [f'<text class="no-data" x="{(x0 + x1) / 2:.0f}" y="{(y0 + y1) / 2:.0f}" '
                     'text-anchor="middle">No data</text>']
        return Markup(
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" id="chart-{self.id}" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" height="{self.height}" role="img" '
            f'aria-labelledby="chart-{self.id}-title chart-{self.id}-desc">'
            f'<title id="chart-{self.id}-title">{_e(self.title)}</title>'
            f'<desc id="chart-{self.id}-desc">{_e(self.desc)}</desc>'
            f'<g class="legend">{"".join(self.legend)}</g><g class="axis">{"".join(axis)}</g>'
            f'<line class="axis-line" x1="{x0}" x2="{x0}" y1="{y0}" y2="{y1}"/>'
            f'<g class="marks">{"".join(marks)}</g></svg>')

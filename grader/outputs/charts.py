"""Inline SVG charts for the reports: no scripts, no external assets, printable.

This module computes where everything goes, in plain numbers; the SVG itself is written
by the macros of ``templates/charts.svg.j2``, where autoescaping keeps every label (a
series named after a student's layer, say) text, never markup.

* :func:`line_chart`: training curves (per epoch, one series per phase, the reference's
  dashed beside them);
* :func:`bar_chart`: measured vs reference vs self-reported accuracy;
* :func:`histogram`: the class's score distribution.

Each returns a :class:`Chart` (None when there is nothing to draw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT = 480, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 46, 12, 14, 40
PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#0a7e8c")
REFERENCE_COLOUR = "#57606a"
LINE_CHART, BAR_CHART, HISTOGRAM = "line", "bars", "histogram"
"""Which macro of ``charts.svg.j2`` draws a :class:`Chart`."""


@dataclass
class Series:
    """One line: its label, its y values by x (epoch), and how it is drawn."""

    label: str
    points: list[tuple[float, float]]
    dashed: bool = False
    colour: str = ""


@dataclass
class Frame:
    """The plotting area and the data ranges it maps."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    width: int = WIDTH
    height: int = HEIGHT

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        inner = self.width - MARGIN_LEFT - MARGIN_RIGHT
        return round(MARGIN_LEFT + (value - self.x_min) / span * inner, 1)

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        inner = self.height - MARGIN_TOP - MARGIN_BOTTOM
        return round(self.height - MARGIN_BOTTOM - (value - self.y_min) / span * inner, 1)


@dataclass
class Chart:
    """One chart, laid out: its frame, its axes and what is drawn in them."""

    kind: str
    """:data:`LINE_CHART`, :data:`BAR_CHART` or :data:`HISTOGRAM`."""
    title: str
    frame: Frame
    axes: dict[str, Any] | None = None
    """The axis lines, the y ticks as ``(y, label)`` and the x title (:func:`_axes`)."""
    marks: list[dict[str, Any]] = field(default_factory=list)
    """What the kind draws, one dict per line, bar or bin."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Placed text of the kind (the line chart's y label)."""


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _axes(frame: Frame, y_ticks: list[float], y_format: str, x_title: str) -> dict[str, Any]:
    left, bottom = MARGIN_LEFT, frame.height - MARGIN_BOTTOM
    right = frame.width - MARGIN_RIGHT
    return {
        "left": left,
        "right": right,
        "top": MARGIN_TOP,
        "bottom": bottom,
        "ticks": [(frame.y(t), frame.y(t) + 4, format(t, y_format)) for t in y_ticks],
        "label_x": left - 4,
        "title": x_title,
        "title_x": (left + right) / 2,
        "title_y": frame.height - 6,
    }


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    step = (high - low) / count or 1.0
    return [round(low + i * step, 6) for i in range(count + 1)]


def line_chart(title: str, series: list[Series], y_label: str, unit_interval: bool) -> Chart | None:
    """Curves over epochs; ``unit_interval`` fixes the y axis to 0..1 (accuracies)."""
    xs = _finite([x for s in series for x, _ in s.points])
    ys = _finite([y for s in series for _, y in s.points])
    if not xs or not ys:
        return None
    y_min, y_max = (0.0, 1.0) if unit_interval else (0.0, max(ys) * 1.1 or 1.0)
    frame = Frame(min(xs), max(max(xs), min(xs) + 1), y_min, y_max)
    axes = _axes(frame, _ticks(y_min, y_max), ".0%" if unit_interval else ".2f", "epoch")
    legend_x = MARGIN_LEFT + 8
    lines = []
    for index, line in enumerate(series):
        points = [(x, y) for x, y in line.points if math.isfinite(x) and math.isfinite(y)]
        placed = [(frame.x(x), frame.y(min(max(y, y_min), y_max))) for x, y in points]
        legend_y = MARGIN_TOP + 12 + 14 * index
        lines.append(
            {
                "label": line.label,
                "colour": line.colour or PALETTE[index % len(PALETTE)],
                "dashed": line.dashed,
                "points": " ".join(f"{x},{y}" for x, y in placed),
                "dots": placed,
                "legend": (legend_x, legend_y - 4, legend_x + 18, legend_x + 22, legend_y),
            }
        )
    label = {"x": 12, "y": MARGIN_TOP + 2, "text": y_label}
    return Chart(LINE_CHART, title, frame, axes, lines, {"y_label": label})


def bar_chart(title: str, bars: list[tuple[str, float | None]]) -> Chart | None:
    """Horizontal bars for figures between 0 and 1; a missing figure is labelled as such."""
    if not any(value is not None for _, value in bars):
        return None
    row = 26
    frame = Frame(0.0, 1.0, 0.0, 1.0, height=MARGIN_TOP + row * len(bars) + 24)
    marks = []
    for index, (label, value) in enumerate(bars):
        y = MARGIN_TOP + index * row
        length = None
        if value is not None:
            length = round(max(0.0, min(1.0, value)) * (frame.width - MARGIN_LEFT - 130), 1)
        colour = REFERENCE_COLOUR if "eference" in label else PALETTE[index % len(PALETTE)]
        marks.append(
            {
                "label": label,
                "label_x": MARGIN_LEFT + 60,
                "bar_x": MARGIN_LEFT + 66,
                "y": y,
                "colour": colour,
                "length": length,
                "value_x": MARGIN_LEFT + 70 + (length or 0),
                "value": f"{value:.1%}" if value is not None else "",
            }
        )
    return Chart(BAR_CHART, title, frame, marks=marks)


def histogram(title: str, values: list[float], maximum: float, bins: int = 10) -> Chart | None:
    """Counts of ``values`` in ``bins`` equal bins from 0 to ``maximum``."""
    values = _finite(values)
    if not values or maximum <= 0:
        return None
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value / maximum * bins)))] += 1
    top = max(counts)
    frame = Frame(0.0, float(bins), 0.0, float(top))
    axes = _axes(frame, _ticks(0, top, min(top, 4) or 1), ".0f", "score")
    width = frame.x(1) - frame.x(0)
    marks = [
        {
            "x": frame.x(index) + 1,
            "y": frame.y(count),
            "width": width - 2,
            "height": round(frame.y(0) - frame.y(count), 1),
            "colour": PALETTE[0],
            "count": count,
            "low": f"{index * maximum / bins:g}",
            "high": f"{(index + 1) * maximum / bins:g}",
        }
        for index, count in enumerate(counts)
        if count
    ]
    labels = [
        (frame.x(index), frame.height - MARGIN_BOTTOM + 14, f"{index * maximum / bins:g}")
        for index in range(0, bins + 1, 2)
    ]
    return Chart(HISTOGRAM, title, frame, axes, marks, {"x_labels": labels})


def curve_series(
    training: list[dict], metrics: tuple[str, ...], reference: list[dict] | None = None
) -> list[Series]:
    """One series per training phase and metric (epochs continue across phases), then the
    reference's validation curve (or its first metric), dashed."""
    series = [line for metric in metrics for line in _phases(training, metric, "")]
    if reference:
        metric = next((m for m in metrics if m.startswith("val_")), metrics[0])
        for line in _phases(reference, metric, "reference "):
            line.dashed, line.colour = True, REFERENCE_COLOUR
            series.append(line)
    return series


def _phases(training: list[dict], metric: str, prefix: str) -> list[Series]:
    series, offset = [], 0
    for number, phase in enumerate(training, start=1):
        history = phase.get("history") if isinstance(phase, dict) else None
        values = history.get(metric) if isinstance(history, dict) else None
        if not isinstance(values, list) or not values:
            continue
        name = "feature extraction" if number == 1 else "fine-tuning"
        points = [(float(offset + i + 1), float(v)) for i, v in enumerate(values)
                  if isinstance(v, (int, float))]  # fmt: skip
        series.append(Series(label=f"{prefix}{name}: {metric}", points=points))
        offset += len(values)
    return series

"""Inline SVG charts for the reports: no scripts, no external assets, printable.

Every chart is a string of SVG markup built from numbers; the only text in it (series
labels, axis titles) is escaped here, so a student-controlled name can never become
markup. Templates insert the result with ``|safe``: it is grader's own markup.

* :func:`line_chart`: training curves (per epoch, one series per phase, the reference's
  dashed beside them);
* :func:`bar_chart`: measured vs reference vs self-reported accuracy;
* :func:`histogram`: the class's score distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 480, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 46, 12, 14, 40
PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#0a7e8c")
REFERENCE_COLOUR = "#57606a"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


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


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _svg(frame: Frame, title: str, body: list[str]) -> str:
    label = escape(title, quote=True)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {frame.width} {frame.height}" '
        f'role="img" aria-label="{label}" class="chart"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _axes(frame: Frame, y_ticks: list[float], y_format: str, x_title: str) -> list[str]:
    left, bottom = MARGIN_LEFT, frame.height - MARGIN_BOTTOM
    right = frame.width - MARGIN_RIGHT
    parts = [
        f'<line x1="{left}" y1="{MARGIN_TOP}" x2="{left}" y2="{bottom}" stroke="#8c959f"/>',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#8c959f"/>',
    ]
    for tick in y_ticks:
        y = frame.y(tick)
        parts.append(
            f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="#eaeef2"/>'
            f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" {FONT}>'
            f"{format(tick, y_format)}</text>"
        )
    parts.append(
        f'<text x="{(left + right) / 2}" y="{frame.height - 6}" text-anchor="middle" {FONT}>'
        f"{escape(x_title)}</text>"
    )
    return parts


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    step = (high - low) / count or 1.0
    return [round(low + i * step, 6) for i in range(count + 1)]


def line_chart(title: str, series: list[Series], y_label: str, unit_interval: bool) -> str:
    """Curves over epochs; ``unit_interval`` fixes the y axis to 0..1 (accuracies)."""
    xs = _finite([x for s in series for x, _ in s.points])
    ys = _finite([y for s in series for _, y in s.points])
    if not xs or not ys:
        return ""
    y_min, y_max = (0.0, 1.0) if unit_interval else (0.0, max(ys) * 1.1 or 1.0)
    frame = Frame(min(xs), max(max(xs), min(xs) + 1), y_min, y_max)
    body = _axes(frame, _ticks(y_min, y_max), ".0%" if unit_interval else ".2f", "epoch")
    body.append(
        f'<text x="12" y="{MARGIN_TOP + 2}" {FONT} transform="rotate(-90 12 {MARGIN_TOP + 2})" '
        f'text-anchor="end">{escape(y_label)}</text>'
    )
    legend_x = MARGIN_LEFT + 8
    for index, line in enumerate(series):
        colour = line.colour or PALETTE[index % len(PALETTE)]
        points = [(x, y) for x, y in line.points if math.isfinite(x) and math.isfinite(y)]
        coords = " ".join(f"{frame.x(x)},{frame.y(min(max(y, y_min), y_max))}" for x, y in points)
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        body.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        body += [
            f'<circle cx="{frame.x(x)}" cy="{frame.y(min(max(y, y_min), y_max))}" r="2.5" '
            f'fill="{colour}"/>'
            for x, y in points
        ]
        legend_y = MARGIN_TOP + 12 + 14 * index
        body.append(
            f'<line x1="{legend_x}" y1="{legend_y - 4}" x2="{legend_x + 18}" y2="{legend_y - 4}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{legend_x + 22}" y="{legend_y}" {FONT}>{escape(line.label)}</text>'
        )
    return _svg(frame, title, body)


def bar_chart(title: str, bars: list[tuple[str, float | None]]) -> str:
    """Horizontal bars for figures between 0 and 1; a missing figure is labelled as such."""
    known = [(label, value) for label, value in bars if value is not None]
    if not known:
        return ""
    row = 26
    frame = Frame(0.0, 1.0, 0.0, 1.0, height=MARGIN_TOP + row * len(bars) + 24)
    body = []
    for index, (label, value) in enumerate(bars):
        y = MARGIN_TOP + index * row
        colour = REFERENCE_COLOUR if "eference" in label else PALETTE[index % len(PALETTE)]
        body.append(
            f'<text x="{MARGIN_LEFT + 60}" y="{y + 15}" text-anchor="end" {FONT}>'
            f"{escape(label)}</text>"
        )
        if value is None:
            body.append(f'<text x="{MARGIN_LEFT + 66}" y="{y + 15}" {FONT}>not known</text>')
            continue
        length = round(max(0.0, min(1.0, value)) * (frame.width - MARGIN_LEFT - 130), 1)
        body.append(
            f'<rect x="{MARGIN_LEFT + 66}" y="{y + 4}" width="{length}" height="16" '
            f'fill="{colour}"/>'
            f'<text x="{MARGIN_LEFT + 70 + length}" y="{y + 16}" {FONT}>{value:.1%}</text>'
        )
    return _svg(frame, title, body)


def histogram(title: str, values: list[float], maximum: float, bins: int = 10) -> str:
    """Counts of ``values`` in ``bins`` equal bins from 0 to ``maximum``."""
    values = _finite(values)
    if not values or maximum <= 0:
        return ""
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value / maximum * bins)))] += 1
    top = max(counts)
    frame = Frame(0.0, float(bins), 0.0, float(top))
    body = _axes(frame, _ticks(0, top, min(top, 4) or 1), ".0f", "score")
    width = frame.x(1) - frame.x(0)
    for index, count in enumerate(counts):
        if count:
            y = frame.y(count)
            body.append(
                f'<rect x="{frame.x(index) + 1}" y="{y}" width="{width - 2}" '
                f'height="{round(frame.y(0) - y, 1)}" fill="{PALETTE[0]}">'
                f"<title>{count} between {index * maximum / bins:g} and "
                f"{(index + 1) * maximum / bins:g}</title></rect>"
            )
    for index in range(0, bins + 1, 2):
        body.append(
            f'<text x="{frame.x(index)}" y="{frame.height - MARGIN_BOTTOM + 14}" '
            f'text-anchor="middle" {FONT}>{index * maximum / bins:g}</text>'
        )
    return _svg(frame, title, body)


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

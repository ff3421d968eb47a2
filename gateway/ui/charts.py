"""Charts as inline SVG, built on the server (pure: data in, escaped markup out).

:func:`temperature_chart` draws a reefer's readings over time: the measured temperature as a
line, the set point as a dashed step line, and marked spans (the alert engine's excursion
episodes) as shaded bands with their own ``<title>``, so a screen reader and a mouse pointer
both name them. No script and no inline style: colours come from the stylesheet's classes
(``chart-*``), which keeps the page under its strict CSP. The chart is an image
(``role=img`` with a title and description); the page shows the readings as a table beside it
for those who cannot see it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

e = html.escape

WIDTH, HEIGHT = 640, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 12, 12, 30


@dataclass(frozen=True)
class Point:
    """One reading: a time (Unix seconds), the measured value and the set point (or None)."""

    time: int
    value: float | None
    setpoint: float | None = None


@dataclass(frozen=True)
class Span:
    """A marked stretch of time (an excursion) and what its ``<title>`` says."""

    start: int
    end: int
    label: str


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``low``..``high``."""
    span = max(high - low, 1e-9)
    raw = span / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks: list[float] = []
    value = first
    while value <= high + step / 2 and len(ticks) < 12:
        ticks.append(round(value, 6))
        value += step
    return ticks


def temperature_chart(points: Sequence[Point], spans: Sequence[Span], *, title: str,
                      description: str, time_label: Callable[[int], str], unit: str = "°C") -> str:
    """The SVG of ``points`` with ``spans`` shaded (empty string when there is nothing to draw).
    ``time_label(seconds)`` writes the x axis's first and last times."""
    drawn = [p for p in points if p.value is not None]
    if not drawn:
        return ""
    values = [p.value for p in drawn if p.value is not None]
    values += [p.setpoint for p in drawn if p.setpoint is not None]
    ticks = _ticks(min(values) - 0.5, max(values) + 0.5)
    low, high = ticks[0], ticks[-1]
    t0 = min(p.time for p in drawn)
    t1 = max(max(p.time for p in drawn), t0 + 60)
    width, height = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(moment: int) -> float:
        return _LEFT + width * (min(max(moment, t0), t1) - t0) / (t1 - t0)

    def y(value: float) -> float:
        return _TOP + height * (high - value) / (high - low)

    parts = [f'<svg class=chart viewBox="0 0 {WIDTH} {HEIGHT}" role=img '
             f'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
             f'<title id=chart-title>{e(title)}</title><desc id=chart-desc>{e(description)}'
             "</desc>"]
    for span in spans:
        if span.end < t0 or span.start > t1:
            continue
        left, right = x(span.start), x(span.end)
        parts.append(f'<rect class=chart-excursion x="{left:.1f}" y="{_TOP}" '
                     f'width="{max(right - left, 2):.1f}" height="{height}">'
                     f"<title>{e(span.label)}</title></rect>")
    for tick in ticks:
        parts.append(f'<line class=chart-grid x1="{_LEFT}" x2="{WIDTH - _RIGHT}" '
                     f'y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                     f'<text class=chart-label x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" '
                     f'text-anchor=end>{e(f"{tick:g}")}</text>')
    setpoints = [(p.time, p.setpoint) for p in drawn if p.setpoint is not None]
    if setpoints:
        steps = []
        previous: float | None = None
        for moment, value in setpoints:
            if previous is not None and value != previous:
                steps.append(f"{x(moment):.1f},{y(previous):.1f}")
            steps.append(f"{x(moment):.1f},{y(value):.1f}")
            previous = value
        parts.append(f'<polyline class=chart-setpoint points="{" ".join(steps)}"/>')
    line = " ".join(f"{x(p.time):.1f},{y(p.value):.1f}" for p in drawn if p.value is not None)
    parts.append(f'<polyline class=chart-line points="{line}"/>')
    parts.append(f'<text class=chart-label x="{_LEFT}" y="{HEIGHT - 8}">{e(time_label(t0))}</text>'
                 f'<text class=chart-label x="{WIDTH - _RIGHT}" y="{HEIGHT - 8}" '
                 f'text-anchor=end>{e(time_label(t1))}</text>'
                 f'<text class=chart-label x="4" y="{_TOP + 10}">{e(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


"""Server-side SVG line charts: charts that need no JavaScript and no outside assets.

:func:`line_chart` turns named series into the coordinates a template draws
(``templates/_charts.html``); the numbers stay in a table beside the chart for
screen readers and for people who would rather read.
"""

from __future__ import annotations

from dataclasses import dataclass

PALETTE = ("#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828", "#00838f")


@dataclass
class Series:
    name: str
    points: str  # "x,y x,y …" for an SVG polyline
    colour: str
    last: int


@dataclass
class Chart:
    width: int
    height: int
    pad: int
    series: list[Series]
    y_ticks: list[tuple[float, int]]  # (y position, value)
    x_labels: list[tuple[float, str]]  # (x position, label)


def line_chart(
    series: dict[str, list[int]],
    labels: list[str],
    *,
    width: int = 720,
    height: int = 240,
    pad: int = 40,
    x_label_count: int = 6,
) -> Chart:
    """Lay out ``series`` (equal lengths, one value per label) on a shared y axis from 0."""
    count = max((len(v) for v in series.values()), default=0)
    top = max((max(v) for v in series.values() if v), default=0) or 1
    inner_w, inner_h = width - 2 * pad, height - 2 * pad

    def x(i: int) -> float:
        return pad + (inner_w * i / (count - 1) if count > 1 else inner_w / 2)

    def y(value: int) -> float:
        return pad + inner_h - inner_h * value / top

    drawn = [
        Series(
            name=name,
            points=" ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values)),
            colour=PALETTE[n % len(PALETTE)],
            last=values[-1] if values else 0,
        )
        for n, (name, values) in enumerate(series.items())
    ]
    ticks = sorted({round(top * k / 4) for k in range(5)})
    step = max(1, (count - 1) // max(1, x_label_count - 1))
    x_labels = [(x(i), labels[i]) for i in range(0, count, step)] if count else []
    return Chart(width, height, pad, drawn, [(y(t), t) for t in ticks], x_labels)

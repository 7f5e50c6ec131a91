"""The benchmark's headline comparison as an SVG bar chart (standard library only).

Times span 10 ms to a minute, so bars use a log scale; each bar is labelled with its value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import NamedTuple


class Bar(NamedTuple):
    label: str
    value: float
    text: str
    ours: bool


class Panel(NamedTuple):
    title: str
    bars: Sequence[Bar]


WIDTH = 760
LABEL_W = 250
BAR_H = 22
GAP = 8
PANEL_GAP = 26
OURS = "#2a7ab0"
THEIRS = "#b0b0b0"


def _x(value: float, low: float, high: float) -> float:
    """Bar length on a log scale from `low` (a sliver) to `high` (the full width)."""
    span = WIDTH - LABEL_W - 110
    share = (math.log10(max(value, low)) - math.log10(low)) / (math.log10(high) - math.log10(low))
    return max(2.0, span * share)


def svg(title: str, panels: Sequence[Panel], note: str) -> str:
    """One chart: a title, panels of labelled bars (log scale within a panel), a note."""
    rows = [
        f'<text x="0" y="18" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    y = 36
    for panel in panels:
        values = [bar.value for bar in panel.bars if bar.value > 0]
        low = min(values) / 3 if values else 1.0
        high = max(values) if values else 10.0
        rows.append(f'<text x="0" y="{y + 12}" font-size="13">{escape(panel.title)}</text>')
        y += 20
        for bar in panel.bars:
            length = _x(bar.value, low, high)
            colour = OURS if bar.ours else THEIRS
            rows.append(
                f'<text x="{LABEL_W - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
                f"{escape(bar.label)}</text>"
            )
            rows.append(
                f'<rect x="{LABEL_W}" y="{y}" width="{length:.1f}" height="{BAR_H}" '
                f'fill="{colour}"/>'
            )
            rows.append(
                f'<text x="{LABEL_W + length + 6:.1f}" y="{y + 15}" font-size="12">'
                f"{escape(bar.text)}</text>"
            )
            y += BAR_H + GAP
        y += PANEL_GAP - GAP
    rows.append(f'<text x="0" y="{y + 8}" font-size="11" fill="#555">{escape(note)}</text>')
    height = y + 20
    body = "\n  ".join(rows)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">\n'
        f'  <rect width="100%" height="100%" fill="white"/>\n  {body}\n</svg>\n'
    )


def _text(panel: str, value: float) -> str:
    if "bytes" in panel:
        return f"{value:.0f} B"
    return f"{value / 1000:+.1f} s" if abs(value) >= 10_000 else f"{value:+.0f} ms"


def from_rows(rows: Sequence[object], note: str) -> str:
    """The chart of every row that carries `chart = (panel, bar, value)`, panels in order."""
    panels: dict[str, list[Bar]] = {}
    for row in rows:
        chart = getattr(row, "chart", None)
        if chart is None:
            continue
        panel, label, value = chart
        ours = "visivo-telemetry" in label or "guide" in label or "gzip" in label
        panels.setdefault(panel, []).append(Bar(label, max(value, 0.5), _text(panel, value), ours))
    title = "visivo-telemetry against Visivo 2.2.1's own PostHog client"
    return svg(title, [Panel(name, bars) for name, bars in panels.items()], note)

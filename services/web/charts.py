"""Charts as inline SVG drawn on the server (no scripts in the browser); text is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

BAR_COLOUR = "#1d70b8"
LINE_COLOURS = ("#1d70b8", "#d4351c", "#00703c")


def bar_chart(title: str, items: Sequence[tuple[str, int]], width: int = 560) -> str:
    """Horizontal bars, one per (label, value)."""
    row_h, label_w, pad = 24, 200, 8
    height = pad * 2 + row_h * max(1, len(items)) + 20
    top = max((v for _, v in items), default=0) or 1
    bar_w = width - label_w - 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, value) in enumerate(items):
        y = pad + 20 + i * row_h
        w = round(bar_w * value / top)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row_h - 8}" fill="{BAR_COLOUR}"/>'
            f'<text x="{label_w + w + 4}" y="{y + 15}" font-size="12">{value}</text>'
        )
    if not items:
        parts.append(f'<text x="{pad}" y="{pad + 32}" font-size="12">No children in this group.</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]]) -> str:
    """One line per named series over the same x labels (e.g. months)."""
    width, height, left, bottom, top_pad = 640, 260, 40, 40, 30
    n = max(1, len(labels))
    top = max((v for _, values in series for v in values), default=0) or 1
    plot_w, plot_h = width - left - 20, height - bottom - top_pad

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: int) -> float:
        return top_pad + plot_h - plot_h * v / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
        'stroke="#555"/>',
        f'<text x="4" y="{top_pad + 4}" font-size="11">{top}</text>',
        f'<text x="4" y="{top_pad + plot_h}" font-size="11">0</text>',
    ]
    for i, label in enumerate(labels):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="10" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    for s, (name, values) in enumerate(series):
        colour = LINE_COLOURS[s % len(LINE_COLOURS)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{left + 10 + 170 * s}" y="16" font-size="12" fill="{colour}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)

"""WCAG 2.2 A and AA checks of a page in the browser tests, with axe-core (vendored in tests/support/axe)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

AXE = Path(__file__).parent / "axe" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@cache
def _axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


def violations(page: Any) -> list[str]:
    """axe's WCAG 2.2 A/AA violations on the page as it is now: one line per rule, with the first few nodes.

    Evaluated through the browser's debugging protocol, which the page's Content-Security-Policy (no
    scripts) does not apply to: the page itself still runs no script."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source())
    result = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))",
        WCAG_TAGS,
    )
    return [f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['nodes'])}" for v in result]

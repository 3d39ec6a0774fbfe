"""A bar showing how much of a limit is used, coloured by the spec's thresholds."""

from __future__ import annotations

from textual.content import Content

from widgets.formatting import level, percent

LEVEL_COLOURS = {"ok": "$success", "warn": "$warning", "danger": "$error"}


def bar_level(used: float | None) -> str | None:
    """The bar's colour level (ok, warn, danger), or None without a limit."""
    return None if used is None else level(used)


def limit_bar(used: float | None, width: int) -> Content:
    """`████████░░░░  71%` in `width` cells: the filled part is the share of the limit used
    (capped at the full bar), coloured by its level."""
    label = f" {percent(used):>5}"
    cells = max(0, width - len(label))
    if used is None:
        return Content.styled("·" * cells + "     —", "dim")
    colour = LEVEL_COLOURS[level(used)]
    filled = min(cells, round(max(0.0, min(used, 1.0)) * cells))
    return Content.assemble(
        ("█" * filled, colour),
        ("░" * (cells - filled), f"dim {colour}"),
        (label, f"bold {colour}"),
    )

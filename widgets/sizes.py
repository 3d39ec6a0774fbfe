"""Sizes a widget can read without asking the compositor."""

from __future__ import annotations

from textual.widget import Widget


def content_width(widget: Widget) -> int:
    """The width inside a widget's border and padding, from the size of its last layout.

    `Widget.size` asks the compositor for the widget's region, and the compositor rebuilds its
    map of the whole screen (every widget, every tab) for that when anything off screen was
    repainted since the last paint: in an update path that is a full layout pass.
    """
    return max(0, widget.outer_size.width - widget.styles.gutter.width)

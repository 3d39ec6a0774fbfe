"""A bar showing how much of a limit is used, coloured by the spec's thresholds."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from widgets.formatting import level, percent

LEVELS = ("ok", "warn", "danger")


class LimitBar(Widget):
    """`████████░░░░  71%`: the filled part is the share of the limit used (capped at the full
    bar); the widget carries the class `-ok`, `-warn` or `-danger` for its colour."""

    DEFAULT_CSS = """
    LimitBar {
        height: 1;
        width: 1fr;
        min-width: 10;
    }
    """

    used: reactive[float | None] = reactive(None)

    def watch_used(self, used: float | None) -> None:
        current = level(used)
        for name in LEVELS:
            self.set_class(name == current and used is not None, f"-{name}")

    def render(self) -> Content:
        used = self.used
        label = f" {percent(used):>5}"
        width = max(0, self.size.width - len(label))
        if used is None:
            return Content.styled("·" * width + "     —", "dim")
        filled = min(width, round(max(0.0, min(used, 1.0)) * width))
        return Content.assemble("█" * filled, ("░" * (width - filled), "dim"), (label, "bold"))

"""The rows of the live tables (positions, working orders, rules, enforcement log), and
`KeyedTable`, a `DataTable` kept in step by row key for the admin screens' tables (which change
rarely: the trader's tables, which change many times a second, are `LiveTable`s)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from rich.text import Text
from textual.app import App
from textual.widgets import DataTable

from riskman.core.views import AccountView, EnforcementRecord
from widgets.formatting import contract_label, level, local_times, money, percent, price, span
from widgets.live_table import Row

Cell = Text | str


@dataclass(frozen=True, slots=True)
class Palette:
    """Theme colours for table cells (DataTable cells are Rich text, which cannot read CSS
    variables): taken from the running theme, so a theme switch recolours every cell."""

    success: str
    warning: str
    error: str

    @classmethod
    def of(cls, app: App[Any]) -> Palette:
        variables = app.theme_variables
        return cls(variables["success"], variables["warning"], variables["error"])

    def for_level(self, used: float | None) -> str:
        return {"ok": self.success, "warn": self.warning, "danger": self.error}[level(used)]

    def signed(self, amount: Any) -> str:
        if amount is None or amount == 0:
            return ""
        return self.error if amount < 0 else self.success


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """A time cell that sorts by the instant and shows the local time of day."""

    at: datetime
    text: str = field(compare=False)

    def __rich__(self) -> Text:
        return Text(self.text)


def usage_bar(used: float | None, palette: Palette, width: int = 10) -> Text:
    if used is None:
        return Text("—", style="dim")
    filled = min(width, round(max(0.0, min(used, 1.0)) * width))
    colour = palette.for_level(used)
    text = Text("█" * filled, style=colour)
    text.append("░" * (width - filled), style="dim")
    text.append(f" {percent(used):>5}", style=f"bold {colour}")
    return text


class KeyedTable(DataTable[Any]):
    """A DataTable whose rows are replaced by `sync(rows)`: keyed diffing, never `clear()`."""

    def __init__(
        self,
        columns: Sequence[tuple[str, str] | tuple[str, str, int]],
        *,
        id: str | None = None,
        classes: str | None = None,
        wrap: bool = False,
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._row_height: int | None = None if wrap else 1
        """With `wrap`, a row is as tall as its longest cell (rows must then not change)."""
        self._spec = tuple((column[0], column[1]) for column in columns)
        self._widths = {column[0]: column[2] for column in columns if len(column) == 3}
        self._rows: dict[str, tuple[Any, ...]] = {}

    def on_mount(self) -> None:
        for key, label in self._spec:
            self.add_column(label, key=key, width=self._widths.get(key))

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def cells(self, key: str) -> tuple[Any, ...]:
        return self._rows[key]

    def sync(self, rows: Sequence[Row], *, sort_by: str | None = None) -> bool:
        """Make the table show exactly `rows`; returns whether anything changed.

        With `sort_by` (a column key) rows are kept in descending order of that column; new
        rows are otherwise appended.
        """
        wanted = dict(rows)
        changed = False
        added = False
        with self.app.batch_update():
            for key in [key for key in self._rows if key not in wanted]:
                self.remove_row(key)
                del self._rows[key]
                changed = True
            for key, cells in rows:
                old = self._rows.get(key)
                if old is None:
                    self.add_row(*cells, key=key, height=self._row_height)
                    added = changed = True
                elif old != cells:
                    for (column, _), before, after in zip(self._spec, old, cells, strict=True):
                        if before != after:
                            self.update_cell(key, column, after)
                    changed = True
                self._rows[key] = cells
            if added and sort_by is not None:
                self.sort(sort_by, reverse=True)
        return changed


# --- rows of each table -----------------------------------------------------------------------

POSITION_COLUMNS = (
    ("account", "Account"),
    ("symbol", "Symbol"),
    ("side", "Side"),
    ("size", "Size"),
    ("average", "Average"),
    ("last", "Last"),
    ("pnl", "Open P&L"),
    ("age", "Age"),
    ("stop", "Stop"),
)


def position_rows(view: AccountView, now: datetime, palette: Palette) -> list[Row]:
    """One account's rows of the positions table."""
    rows: list[Row] = []
    for pos in view.positions:
        side_style = palette.success if pos.side == "LONG" else palette.error
        last = Text(price(pos.last))
        if pos.stale:
            last = Text(f"{price(pos.last)} stale", style=f"bold {palette.error}")
        elif pos.price_source == "rest":
            # The market feed is silent: the price comes from 1-minute bars over REST.
            last = Text(f"{price(pos.last)} REST", style=f"bold {palette.warning}")
        pnl = Text(money(pos.open_pnl), style=f"bold {palette.signed(pos.open_pnl)}".strip())
        stop = (
            Text("✓ stop", style=palette.success)
            if pos.has_stop
            else Text("NO STOP", style=f"bold {palette.warning}")
        )
        rows.append(
            (
                f"{pos.account_id}|{pos.contract_id}",
                (
                    view.name,
                    Text(pos.symbol, style="bold"),
                    Text(pos.side, style=side_style),
                    Text(str(pos.size), justify="right"),
                    Text(price(pos.average), justify="right"),
                    last,
                    pnl,
                    span((now - pos.opened).total_seconds()),
                    stop,
                ),
            )
        )
    return rows


ORDER_COLUMNS = (
    ("account", "Account"),
    ("order", "Order"),
    ("symbol", "Symbol"),
    ("type", "Type"),
    ("side", "Side"),
    ("size", "Size"),
    ("limit", "Limit"),
    ("stop", "Stop"),
    ("role", "Role"),
)


def order_rows(view: AccountView, palette: Palette) -> list[Row]:
    """One account's rows of the working-orders table."""
    rows: list[Row] = []
    for item in view.orders:
        order = item.order
        role = (
            Text("protective stop", style=palette.success)
            if item.protective
            else Text("entry / exit", style="dim")
        )
        rows.append(
            (
                f"{order.account_id}|{order.id}",
                (
                    view.name,
                    str(order.id),
                    Text(item.symbol, style="bold"),
                    order.type.name.replace("_", " "),
                    order.side.label,
                    Text(str(order.size), justify="right"),
                    price(order.limit_price) if order.limit_price is not None else "—",
                    price(order.stop_price) if order.stop_price is not None else "—",
                    role,
                ),
            )
        )
    return rows


RULE_COLUMNS = (
    ("account", "Account"),
    ("rule", "Rule"),
    ("title", "Name"),
    ("state", "State"),
    ("limit", "Limit"),
    ("value", "Current"),
    ("used", "Used"),
    ("detail", "Detail"),
)


def rule_rows(view: AccountView, palette: Palette) -> list[Row]:
    """One account's rows of the rules table."""
    rows: list[Row] = []
    for rule in view.rules:
        status = rule.status
        if not rule.enabled:
            cells: tuple[Any, ...] = (
                view.name,
                Text(rule.id, style="dim"),
                Text(rule.title, style="dim"),
                Text("off", style="dim"),
                "",
                "",
                "",
                "",
            )
        else:
            value = Text(status.value if status else "—")
            if status is not None and status.stale:
                value.append(" (stale quote)", style=f"bold {palette.error}")
            cells = (
                view.name,
                Text(rule.id, style="bold"),
                rule.title,
                Text("on", style=palette.success),
                status.limit if status else "",
                value,
                usage_bar(status.used if status else None, palette),
                Text(status.detail if status else "", style="dim"),
            )
        rows.append((f"{view.account_id}|{rule.id}", cells))
    return rows


# Fixed widths for the long free-text columns, so the result and latency stay on a 160-column
# screen (the full text is in the database and the headless log).
LOG_COLUMNS = (
    ("time", "Time"),
    ("account", "Account"),
    ("rule", "Rule"),
    ("action", "Action"),
    ("target", "Target", 13),
    ("reason", "Reason", 52),
    ("result", "Result", 34),
    ("latency", "Latency"),
)


def log_cells(
    record: EnforcementRecord, zone: tzinfo, palette: Palette, names: Mapping[int, str]
) -> tuple[Any, ...]:
    """The cells of one enforcement-log row."""
    result = Text(record.result, style=palette.success if record.ok else f"bold {palette.error}")
    if record.detail:
        result.append(f" ({local_times(record.detail, zone)})", style="dim")
    latency = "—" if record.latency_ms is None else f"{record.latency_ms:.0f} ms"
    return (
        Stamp(record.ts, record.ts.astimezone(zone).strftime("%H:%M:%S")),
        names.get(record.account_id, str(record.account_id)),
        Text(record.rule, style="bold"),
        record.action,
        contract_label(record.target),
        record.reason,
        result,
        Text(latency, justify="right"),
    )

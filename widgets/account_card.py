"""One account on the dashboard: status, balance, the day's P&L against the loss limit, an
intraday sparkline, trade-frequency counters, and every lock with its countdown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from decimal import Decimal

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Label, Sparkline

from riskman.engine.snapshot import AccountView
from widgets.countdowns import LockList
from widgets.formatting import money
from widgets.limit_bar import LimitBar

STATUS_CLASSES = {"OK": "-ok", "COOLDOWN": "-cooldown", "LOCKED": "-locked"}
_WINDOWS = ("minute", "hour", "session")


def loss_share(amount: Decimal, limit: Decimal | None) -> float | None:
    """How much of the daily loss limit a loss uses (0 when it is a gain)."""
    if limit is None or limit <= 0:
        return None
    return max(0.0, float(-amount / limit))


def trade_counts(view: AccountView) -> Content:
    parts: list[Content | str | tuple[str, str]] = [Content.styled("Trades", "bold")]
    values = (view.counts.minute, view.counts.hour, view.counts.session)
    for name, count, limit in zip(_WINDOWS, values, view.count_limits, strict=True):
        if limit is None:
            text, style = f"{count}", ""
        else:
            text = f"{count}/{limit}"
            style = "bold $error" if count > limit else ("bold $warning" if count == limit else "")
        parts += ["   ", (f"{name} ", "dim"), (text, style) if style else text]
    return Content.assemble(*parts)


class AccountCard(Widget):
    """Call `show(view)` with each new snapshot of the account."""

    DEFAULT_CSS = """
    AccountCard {
        height: auto;
        layout: vertical;
    }
    AccountCard Horizontal { height: auto; }
    AccountCard Vertical { height: auto; }
    """

    def __init__(self, view: AccountView, now: Callable[[], datetime], zone: tzinfo = UTC) -> None:
        super().__init__(id=f"account-{view.account_id}")
        self.account_id = view.account_id
        self._now = now
        self._zone = zone
        self._shown: dict[str, object] = {}
        self.view = view
        self._ready = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="card-head"):
            yield Label("", id="status")
            yield Label("", id="reason")
            yield Label("", id="balance")
        # Right under the status: when the account is held, what holds it and for how long.
        yield LockList(self._now, self._zone, id="locks")
        with Horizontal(classes="card-body"):
            with Vertical(classes="card-pnl"):
                for key, title in (("realized", "Realized"), ("open", "Open"), ("total", "Total")):
                    with Horizontal(classes="pnl-row"):
                        yield Label(title, classes="pnl-name")
                        yield Label("", id=f"{key}-amount", classes="pnl-amount")
                        yield LimitBar(id=f"{key}-bar")
                yield Label("", id="limit-note")
            with Vertical(classes="card-side"):
                yield Label("", id="trades")
                with Horizontal(classes="spark-row"):
                    yield Label("P&L today", classes="spark-name")
                    yield Sparkline([], id="spark")
                yield Label("", id="spark-range")

    def on_mount(self) -> None:
        self._ready = True
        self.show(self.view)

    def show(self, view: AccountView, zone: tzinfo | None = None) -> None:
        if zone is not None:
            self._zone = zone
        self.view = view
        if not self._ready:
            return  # on_mount shows the latest view
        self.border_title = f"{view.name} · {view.account_id}"
        for status, css in STATUS_CLASSES.items():
            self.set_class(view.status == status, css)
        self._label("status", f" {view.status} ")
        # What holds the account (rule, reason, countdown) is the lock list right below.
        self._label(
            "reason",
            "the gateway says this account cannot trade" if view.can_trade is False else "",
        )
        self._label(
            "balance",
            Content.assemble(("Balance ", "dim"), (money(view.balance), "bold")),
        )
        partial = "" if view.open_complete else "*"
        for key, amount, used in (
            ("realized", view.realized, loss_share(view.realized, view.loss_limit)),
            ("open", view.open_pnl, loss_share(view.open_pnl, view.loss_limit)),
            ("total", view.total, view.loss_used),
        ):
            style = "$error" if amount < 0 else ("$success" if amount > 0 else "")
            text = money(amount) + (partial if key != "realized" else "")
            self._label(f"{key}-amount", Content.styled(text, f"bold {style}".strip()))
            bar = self.query_one(f"#{key}-bar", LimitBar)
            if bar.used != used:
                bar.used = used
        self._label("limit-note", self._limit_note(view))
        self._label("trades", trade_counts(view))
        history = view.pnl_history
        if self._shown.get("spark") != history:
            self._shown["spark"] = history
            spark = self.query_one("#spark", Sparkline)
            # A flat line would draw as full bars: show the sparkline once P&L has moved.
            spark.display = len(set(history)) > 1
            spark.data = list(history)
        if len(set(history)) > 1:
            low, high = (money(Decimal(str(value))) for value in (min(history), max(history)))
            note = f"low {low} · high {high}"
        else:
            note = "no movement yet"
        self._label("spark-range", Content.styled(note, "dim"))
        self.query_one(LockList).set_locks(view.locks, self._zone)

    def _limit_note(self, view: AccountView) -> Content:
        parts: list[str | tuple[str, str]] = []
        if view.loss_limit is None:
            parts.append(("No daily loss limit (RULE-003 off)", "dim"))
        else:
            parts.append(("bars: share of the daily loss limit ", "dim"))
            parts.append((money(view.loss_limit), "bold"))
        if view.profit_target is not None:
            parts += [("  ·  profit target ", "dim"), (money(view.profit_target), "bold")]
        if not view.open_complete:
            parts.append(("  ·  * a position has no fresh quote", "$warning"))
        return Content.assemble(*parts)

    def _label(self, widget_id: str, content: Content | str) -> None:
        if self._shown.get(widget_id) == content:
            return
        self._shown[widget_id] = content
        self.query_one(f"#{widget_id}", Label).update(content)

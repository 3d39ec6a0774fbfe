"""The top of every trader screen: is riskman enforcing, are the hubs connected, how old is the
last quote, when is the next reset; and a loud banner when the feed cannot be trusted."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import cast

from rich.cells import cell_len
from textual.content import Content
from textual.css.styles import RulesMap
from textual.widgets import Static

from riskman.core.views import EngineSnapshot, FeedHealth
from widgets.formatting import age, clock_time, contract_label, countdown, span
from widgets.sizes import content_width


def _hub(name: str, health: FeedHealth | None) -> Content:
    if health is None:
        return Content.assemble((f"{name} ", "dim"), ("○ not connected", "$error"))
    style = "$success" if health.trusted else "bold $error"
    mark = "●" if health.trusted else "○"
    return Content.assemble((f"{name} ", "dim"), (f"{mark} {health.state.value}", style))


def quote_age(snapshot: EngineSnapshot, now: datetime) -> float | None:
    """The last quote's age now (the snapshot's figure plus the time since it was taken)."""
    if snapshot.last_quote_age is None:
        return None
    return snapshot.last_quote_age + max(0.0, (now - snapshot.at).total_seconds())


def status_lines(
    snapshot: EngineSnapshot,
    zone: tzinfo,
    now: datetime,
    *,
    mode: str = "",
    lost: str | None = None,
) -> Content:
    """The strip's lines; `mode` (a third line) says which riskman this is, `lost` that the
    engine stopped answering (the snapshot is then the last one it sent)."""
    if lost is not None:
        armed = Content.styled(" ✕ NOT GUARDED ", "bold reverse $error")
    elif snapshot.armed and any(not view.guarded for view in snapshot.accounts):
        # Never one ENFORCING over an account riskman does not watch (issue 13).
        unguarded = sum(1 for view in snapshot.accounts if not view.guarded)
        guarded = len(snapshot.accounts) - unguarded
        armed = Content.styled(
            f" ● ENFORCING {guarded} of {len(snapshot.accounts)} · {unguarded} NOT GUARDED ",
            "bold reverse $warning",
        )
    elif snapshot.armed:
        armed = Content.styled(" ● ENFORCING ", "bold reverse $success")
    else:
        armed = Content.styled(" ○ NOT ENFORCING FROM THE STREAM ", "bold reverse $error")
    quote = quote_age(snapshot, now)
    holding = any(view.positions for view in snapshot.accounts)
    if snapshot.stale_contracts:
        quote_part = Content.styled(f"last quote {age(quote)} — STALE", "bold $error")
    elif holding:
        quote_part = Content.assemble(("last quote ", "dim"), age(quote))
    else:
        quote_part = Content.styled(f"last quote {age(quote)} (flat: none needed)", "dim")
    first = Content.assemble(
        armed,
        "   ",
        _hub("user hub", snapshot.user_feed),
        "   ",
        _hub("market hub", snapshot.market_feed),
        "   ",
        quote_part,
    )
    reset_in = (snapshot.next_reset - now).total_seconds()
    parts: list[Content | str | tuple[str, str]] = [
        ("trading day ", "dim"),
        snapshot.trading_day.isoformat(),
        ("   next daily reset ", "dim"),
        clock_time(snapshot.next_reset, zone),
        ("  in ", "dim"),
        (countdown(reset_in) if reset_in < 86400 else span(reset_in), "bold"),
        ("   session ", "dim"),
    ]
    if snapshot.session_open is None:
        parts.append(("no session rule", "dim"))
    elif snapshot.session_open:
        parts.append(("OPEN", "bold $success"))
        if snapshot.session_change is not None:
            parts += [("  closes ", "dim"), clock_time(snapshot.session_change, zone)]
    else:
        parts.append(("CLOSED", "bold $warning"))
        if snapshot.session_change is not None:
            left = (snapshot.session_change - now).total_seconds()
            parts += [
                ("  opens ", "dim"),
                clock_time(snapshot.session_change, zone),
                ("  in ", "dim"),
                span(left),
            ]
    lines = [first, Content.assemble(*parts)]
    if mode:
        lines.append(Content.styled(mode, "dim"))
    return Content("\n").join(lines)


def lost_lines(why: str) -> list[str]:
    """The banner while the engine this terminal attached to does not answer."""
    return [
        f"NOT GUARDED — {why}. Nothing here shows what riskman does now, and nothing may be "
        "enforcing your rules.",
        "Trying to attach again… (q detaches)",
    ]


def banner_lines(snapshot: EngineSnapshot) -> list[str]:
    """What the trader must not miss: an untrusted feed, stale quotes."""
    lines = []
    user = snapshot.user_feed
    if user is None or not user.trusted:
        state = "NOT CONNECTED" if user is None else user.state.value.upper()
        lines.append(
            f"USER FEED {state} — FEED STALE: riskman re-reads positions and orders over REST "
            "until the stream is trusted again"
        )
    market = snapshot.market_feed
    if market is not None and not market.trusted:
        lines.append(f"MARKET FEED {market.state.value.upper()} — open P&L may be out of date")
    if snapshot.stale_contracts:
        names = ", ".join(contract_label(c) for c in snapshot.stale_contracts)
        lines.append(
            f"STALE QUOTES for {names} — open P&L is not current (a stale quote never "
            "triggers a close)"
        )
    if snapshot.rest_priced:
        names = ", ".join(contract_label(c) for c in snapshot.rest_priced)
        lines.append(
            f"NO LIVE QUOTES for {names} — priced from 1-minute bars over REST until the "
            "market feed resumes"
        )
    return lines


class StatusStrip(Static):
    """Two lines at the top of the trader screens."""

    DEFAULT_CSS = """
    StatusStrip {
        height: auto;
    }
    """

    _shown: Content | None = None
    _shape: tuple[int, int] = (-1, -1)
    """The width the content was measured at, and its height there."""

    def show(
        self,
        snapshot: EngineSnapshot,
        zone: tzinfo,
        now: datetime,
        *,
        mode: str = "",
        lost: str | None = None,
    ) -> None:
        self._put(status_lines(snapshot, zone, now, mode=mode, lost=lost))

    def show_text(self, text: str) -> None:
        self._put(Content(text))

    def _put(self, content: Content) -> None:
        # The strip changes with every redraw (quote age, countdown to the reset), but its
        # height only when a line wraps differently: repaint it in place, and ask for a layout
        # of the screen (which arranges every widget on it) only when the height changes.
        if self._shown is not None and content.is_same(self._shown):
            return
        width = content_width(self)
        lines = content.plain.split("\n")
        if width and all(cell_len(line) <= width for line in lines):
            height = len(lines)  # nothing wraps (the usual case): no need to wrap to know
        elif width:
            # The styles as Textual itself passes them to `get_height` (they answer `.get`).
            height = content.get_height(cast("RulesMap", self.styles), width)
        else:
            height = -1
        shape = (width, height)
        self._shown = content
        self.update(content, layout=shape != self._shape or not width)
        self._shape = shape


class Banner(Static):
    """A loud full-width warning, hidden when there is nothing to say."""

    DEFAULT_CSS = """
    Banner {
        height: auto;
        display: none;
    }
    Banner.-shown {
        display: block;
    }
    """

    _said = ""

    def say(self, lines: list[str], level: str = "error") -> None:
        text = "\n".join(lines)
        self.set_class(bool(lines), "-shown")
        for name in ("error", "warning", "info"):
            self.set_class(name == level, f"-{name}")
        if text != self._said:
            self._said = text
            self.update(Content(text))

    @property
    def text(self) -> str:
        return self._said

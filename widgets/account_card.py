"""One account on the dashboard: status, balance, the day's P&L against the loss limit, an
intraday sparkline, trade-frequency counters, and every lock with its countdown.

The card is a single widget that lays out and draws its own lines. A card built from ~25
child widgets cost ~1.2 MB and made every layout pass arrange all of them (with 50 accounts a
pass took ~200 ms on the event loop the engine shares). Here a new snapshot of the account
repaints only the lines that changed; the card asks for a layout only when its height changes
(a lock appears or ends). Countdowns repaint from the card's own 1 s interval, paused while no
lock has a deadline, and are computed from the deadline each time (late ticks are harmless).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import ClassVar

from rich.color import Color as RichColor
from rich.console import Console
from rich.segment import Segment
from textual.color import Color
from textual.containers import VerticalScroll
from textual.content import Content
from textual.geometry import Region, Size
from textual.renderables.sparkline import Sparkline
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style
from textual.timer import Timer
from textual.visual import Visual
from textual.widget import Widget

from riskman.core.views import AccountView, EngineSnapshot
from widgets.countdowns import live, lock_lines
from widgets.formatting import money
from widgets.limit_bar import bar_level, limit_bar
from widgets.sizes import content_width

STATUS_CLASSES = {"OK": "-ok", "COOLDOWN": "-cooldown", "LOCKED": "-locked"}
NARROW = 120
"""Below this many terminal columns the card stacks its two panels."""
MUTED = ".account-card--muted"
"""Content style of names and hints (a component class: `$text-muted` needs the background)."""
_WINDOWS = ("minute", "hour", "session")
_PNL_NAMES = {"realized": "Realized", "open": "Open", "total": "Total"}
_NAME_WIDTH = 10
_AMOUNT_WIDTH = 12
_AMOUNT_GAP = 2
_BAR_MIN = 10
_SIDE_GAP = 3

Now = Callable[[], datetime]


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


def limit_note(view: AccountView) -> Content:
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


def moving(history: Sequence[float]) -> bool:
    """Whether P&L has moved today (a flat line would draw as full bars: no sparkline then)."""
    return len(set(history)) > 1


# --- laying out lines -------------------------------------------------------------------------


def fit(content: Content, width: int, align: str = "left") -> list[Content]:
    """`content` wrapped to `width` cells (as a label of that width would), each line padded to
    exactly `width`."""
    if width <= 0:
        return []
    if content.cell_length <= width and "\n" not in content.plain:
        lines = [content.right(width) if align == "right" else content]
    else:
        lines = content.wrap(width, align="right" if align == "right" else "left")
    return [line.truncate(width, pad=True) for line in lines] or [Content.blank(width)]


def side_by_side(*columns: tuple[list[Content], int]) -> list[Content]:
    """Columns of lines (each with its width) joined into rows, the shorter padded."""
    height = max((len(lines) for lines, _ in columns), default=0)
    rows = []
    for y in range(height):
        row = Content("")
        for lines, width in columns:
            row += lines[y] if y < len(lines) else Content.blank(width)
        rows.append(row)
    return rows


def pad_left(lines: list[Content], cells: int) -> list[Content]:
    return [line.pad_left(cells) for line in lines]


class AccountCard(Widget):
    """Call `show(view)` with each new snapshot of the account."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"account-card--muted"}

    DEFAULT_CSS = """
    AccountCard {
        height: auto;
    }
    """

    def __init__(self, view: AccountView, now: Now, zone: tzinfo = UTC) -> None:
        super().__init__(id=f"account-{view.account_id}")
        self.account_id = view.account_id
        self.view = view
        self._now = now
        self._zone = zone
        self._parts: dict[str, Content] = {}
        """What each part of the card shows (status, balance, amounts, ...), for the tests."""
        self._used: dict[str, float | None] = {}
        self._lines: list[Content] = []
        self._laid_out_for = -1
        """The width `_lines` were laid out for (-1: not yet, or stale)."""
        self._shown_as: tuple[object, ...] = ()
        """What `_lines` were laid out from (see `_shown_key`)."""
        self._strips: dict[int, Strip] = {}
        self._spark: tuple[tuple[float, ...], int, str, list[Content]] | None = None
        self._timer: Timer | None = None
        self._ticking = False
        self._stale = True
        """A snapshot (or a second of countdown) not drawn yet: the card was out of view."""
        self.in_view = True
        """Set by `AccountList`: cards scrolled out of view are not drawn again until they
        scroll back into view."""

    # --- what the tests (and the trader) read ----------------------------------------------

    @property
    def ticking(self) -> bool:
        """Whether the 1 s countdown interval runs (some shown lock has a deadline)."""
        return self._ticking

    def part(self, name: str) -> str:
        """The text of one part: status, reason, balance, locks, realized-amount,
        open-amount, total-amount, limit-note, trades, spark-range."""
        return self._parts[name].plain

    def used(self, bar: str) -> float | None:
        """The share of the loss limit a bar (realized, open, total) shows."""
        return self._used[bar]

    def level(self, bar: str) -> str | None:
        """A bar's colour level: ok, warn, danger (None without a limit)."""
        return bar_level(self._used[bar])

    @property
    def text(self) -> str:
        """Every line of the card, as plain text."""
        return "\n".join(line.plain.rstrip() for line in self._lines)

    # --- updates -------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self._timer = self.set_interval(1.0, self._tick, pause=True)
        self._update()

    def show(self, view: AccountView, zone: tzinfo | None = None) -> None:
        """Take a new snapshot of the account; repaint what changed if the card is in view
        (else when it scrolls into view: see `AccountList`)."""
        if zone is not None and zone != self._zone:
            self._zone = zone
            self._stale = True
        if view is self.view and not self._stale:
            return
        self.view = view
        self._stale = True
        if self.in_view:
            self._update()

    def bring_up_to_date(self) -> None:
        if self._stale or self._laid_out_for < 0:
            self._update()

    def _update(self) -> None:
        self._stale = False
        view = self.view
        title = f"{view.name} · {view.account_id}"
        if self.border_title != title:
            self.border_title = title
        for status, css in STATUS_CLASSES.items():
            self.set_class(view.status == status, css)
        self._relayout()

    def _tick(self) -> None:
        if self.in_view:
            self._relayout(tick=True)
        else:
            self._stale = True

    def _shown_key(self, width: int) -> tuple[object, ...]:
        """Everything `_layout` draws from, but the clock (the countdowns tick on their own)."""
        view = self.view
        return (
            width,
            self.app.size.width < NARROW,
            self._zone,
            self.app.theme,
            view.name,
            view.status,
            view.can_trade,
            view.balance,
            view.realized,
            view.open_pnl,
            view.open_complete,
            view.total,
            view.loss_limit,
            view.profit_target,
            view.counts,
            view.count_limits,
            view.locks,
            view.pnl_history,
        )

    def _arm(self) -> None:
        if self._timer is None:
            return
        ticking = any(lock.until is not None for lock in live(self.view.locks, self._now()))
        if ticking != self._ticking:
            self._ticking = ticking
            if ticking:
                self._timer.resume()
            else:
                self._timer.pause()

    def _relayout(self, *, tick: bool = False) -> None:
        """Lay the lines out again; repaint the changed ones, or ask for a layout when the
        card's height changed. A new snapshot that changes nothing the card shows (most of
        them: a position's size, an order) costs a comparison, not a layout."""
        self._arm()
        width = content_width(self)
        if width <= 0:
            return  # laid out when the card gets its size (get_content_height)
        shown = self._shown_key(width)
        if not tick and shown == self._shown_as:
            return
        self._shown_as = shown
        old = self._lines
        self._lines = self._layout(width)
        self._laid_out_for = width
        if len(old) != len(self._lines):
            self._strips.clear()
            self.refresh(layout=True)
            return
        changed = [
            y for y, (a, b) in enumerate(zip(old, self._lines, strict=True)) if not a.is_same(b)
        ]
        if changed:
            for y in changed:
                self._strips.pop(y, None)
            first, last = changed[0], changed[-1]
            self.refresh(Region(0, first, width, last - first + 1))

    def notify_style_update(self) -> None:
        # A new theme or stylesheet: every line is drawn again with the new colours.
        super().notify_style_update()
        self._strips.clear()
        self._spark = None
        self._laid_out_for = -1
        self._shown_as = ()

    def on_resize(self) -> None:
        self._strips.clear()
        if self._laid_out_for != content_width(self):
            self._relayout()

    # --- drawing -------------------------------------------------------------------------------

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width != self._laid_out_for:
            self._lines = self._layout(width)
            self._laid_out_for = width
            self._strips.clear()
        return len(self._lines)

    def render_line(self, y: int) -> Strip:
        width = content_width(self)
        if width != self._laid_out_for:
            self._lines = self._layout(width)
            self._laid_out_for = width
            self._strips.clear()
        strip = self._strips.get(y)
        if strip is None:
            if y < len(self._lines):
                # Drawn below `y` empty lines, so that its cells carry their place in the card
                # (text selection reads it) and an active selection is highlighted.
                line = Content("\n" * y) + self._lines[y] if y else self._lines[y]
                strip = Visual.to_strips(self, line, width, y + 1, self.visual_style)[-1]
            else:
                strip = Strip.blank(width, self.visual_style.rich_style)
            self._strips[y] = strip
        return strip

    def render(self) -> Content:
        # What text selection copies from (painting goes through `render_line`).
        return Content("\n").join(self._lines)

    def selection_updated(self, selection: Selection | None) -> None:
        self._strips.clear()
        super().selection_updated(selection)

    def _layout(self, width: int) -> list[Content]:
        """The card's lines at `width` cells, laid out as the dashboard's CSS used to: a head
        row, the locks, then the P&L panel beside (or, narrow, above) the trades panel. Also
        notes what each part shows (`part`, `used`)."""
        view = self.view
        now = self._now()
        narrow = self.app.size.width < NARROW
        parts = self._parts
        # Two cells either side: the badge is drawn as it was as a padded label.
        status = Content.styled(f"  {view.status}  ", self._status_style(view.status))
        reason_style = {"COOLDOWN": "bold $warning", "LOCKED": "bold $error"}.get(view.status, "")
        reason = Content.styled(
            "the gateway says this account cannot trade" if view.can_trade is False else "",
            reason_style,
        )
        balance = Content.assemble(("Balance ", "dim"), (money(view.balance), "bold"))
        locks = lock_lines(view.locks, now, self._zone, MUTED)
        parts.update(status=status, reason=reason, balance=balance, locks=Content("\n").join(locks))
        reason_width = max(0, width - status.cell_length - balance.cell_length)
        lines = side_by_side(
            (fit(status, status.cell_length), status.cell_length),
            ([line.pad(1, 1) for line in fit(reason, reason_width - 2)], reason_width),
            (fit(balance, balance.cell_length), balance.cell_length),
        )
        lines.append(Content.blank(width))
        for lock in locks:
            lines += pad_left(fit(lock, width - 1), 1)
        lines.append(Content.blank(width))
        if narrow:
            pnl_width = side_width = width
        else:
            pnl_width = width // 2
            side_width = width - pnl_width - _SIDE_GAP
        pnl = self._pnl_lines(view, pnl_width)
        side = self._side_lines(view, side_width)
        if narrow:
            lines += [*pnl, Content.blank(width), *side]
        else:
            lines += side_by_side((pnl, pnl_width), (pad_left(side, _SIDE_GAP), width - pnl_width))
        return [line.truncate(width, pad=True) for line in lines]

    def _pnl_lines(self, view: AccountView, width: int) -> list[Content]:
        partial = "" if view.open_complete else "*"
        bar_width = max(_BAR_MIN, width - _NAME_WIDTH - _AMOUNT_WIDTH - _AMOUNT_GAP)
        lines: list[Content] = []
        for key, amount, used in (
            ("realized", view.realized, loss_share(view.realized, view.loss_limit)),
            ("open", view.open_pnl, loss_share(view.open_pnl, view.loss_limit)),
            ("total", view.total, view.loss_used),
        ):
            style = "$error" if amount < 0 else ("$success" if amount > 0 else "")
            text = money(amount) + (partial if key != "realized" else "")
            shown = Content.styled(text, f"bold {style}".strip())
            self._parts[f"{key}-amount"] = shown
            self._used[key] = used
            lines += side_by_side(
                (fit(Content.styled(_PNL_NAMES[key], MUTED), _NAME_WIDTH), _NAME_WIDTH),
                (fit(shown, _AMOUNT_WIDTH, "right"), _AMOUNT_WIDTH),
                ([Content.blank(_AMOUNT_GAP)], _AMOUNT_GAP),
                ([limit_bar(used, bar_width)], bar_width),
            )
        note = limit_note(view)
        self._parts["limit-note"] = note
        return lines + fit(note, width)

    def _side_lines(self, view: AccountView, width: int) -> list[Content]:
        trades = trade_counts(view)
        history = view.pnl_history
        if moving(history):
            low, high = (money(Decimal(str(value))) for value in (min(history), max(history)))
            note = Content.styled(f"low {low} · high {high}", "dim")
        else:
            note = Content.styled("no movement yet", "dim")
        self._parts.update(trades=trades, **{"spark-range": note})
        name = fit(Content.styled("P&L today", MUTED), _NAME_WIDTH)
        spark_width = width - _NAME_WIDTH
        spark = self._sparkline(history, spark_width) if moving(history) else []
        return [
            *fit(trades, width),
            Content.blank(width),
            *side_by_side((name, _NAME_WIDTH), (spark, spark_width)),
            *pad_left(fit(note, spark_width), _NAME_WIDTH),
        ]

    def _status_style(self, status: str) -> str:
        # Text on the badge in the CSS's colours: the background colour on success and
        # warning, the theme's text colour (an alpha of the contrasting colour) on error.
        if status == "OK":
            return "bold $background on $success"
        if status == "COOLDOWN":
            return "bold $background on $warning"
        error = Color.parse(self.app.theme_variables["error"])
        text = error + error.get_contrast_text(0.87)
        return f"bold {text.hex} on $error"

    def _sparkline(self, history: tuple[float, ...], width: int) -> list[Content]:
        """The P&L sparkline, two lines tall, from green (high) to red (low); drawn again only
        when the history, the width or the theme changes."""
        theme = self.app.theme
        cached = self._spark
        if cached is not None and cached[:3] == (history, width, theme):
            return cached[3]
        variables = self.app.theme_variables
        renderable = Sparkline(
            list(history),
            width=width,
            height=2,
            min_color=Color.parse(variables["error"]).rich_color,
            max_color=Color.parse(variables["success"]).rich_color,
        )
        console: Console = self.app.console
        options = console.options.update(width=width, height=2)
        lines = [
            _segments_content(line)
            for line in console.render_lines(renderable, options, pad=True, new_lines=False)
        ]
        self._spark = (history, width, theme, lines)
        return lines


def _segments_content(segments: Sequence[Segment]) -> Content:
    parts: list[str | tuple[str, str | Style]] = []
    for segment in segments:
        colour: RichColor | None = segment.style.color if segment.style else None
        if colour is None:
            parts.append(segment.text)
        else:
            parts.append((segment.text, Color.from_rich_color(colour).hex))
    return Content.assemble(*parts)


class AccountList(VerticalScroll):
    """The dashboard's cards, one per account, in a scrolling column.

    Only the cards in view are drawn again with each snapshot (at 160x48 that is 2-3 of them,
    whatever the number of accounts); the others keep the snapshot and are brought up to date
    the moment they scroll into view, before they are painted.
    """

    def __init__(self, now: Now, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._now = now
        self._cards: dict[int, AccountCard] = {}
        self._shown = True

    def set_shown(self, shown: bool) -> None:
        """Whether the list is on screen at all (its tab is the active one): hidden, no card
        is drawn again, not even a countdown; shown again, the cards in view are brought up
        to date at once."""
        self._shown = shown
        for card in self._mark_in_view():
            card.bring_up_to_date()

    def show(self, snapshot: EngineSnapshot, zone: tzinfo) -> None:
        cards = self._cards
        present = {view.account_id for view in snapshot.accounts}
        for account_id in [a for a in cards if a not in present]:
            cards.pop(account_id).remove()
        self._mark_in_view()
        new = []
        for view in snapshot.accounts:
            card = cards.get(view.account_id)
            if card is None:
                card = cards[view.account_id] = AccountCard(view, self._now, zone)
                new.append(card)
            else:
                card.show(view, zone)
        if new:
            self.mount_all(new)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        for card in self._mark_in_view():
            card.bring_up_to_date()

    def on_resize(self) -> None:
        for card in self._mark_in_view():
            card.bring_up_to_date()

    def _mark_in_view(self) -> list[AccountCard]:
        """Flag each card in or out of view, from the heights of the last layout (no region
        lookups); returns the cards in view."""
        top = self.scroll_y
        bottom = top + max(0, self.outer_size.height - self.styles.gutter.height)
        shown = []
        y = 0
        below = 0
        for card in self._cards.values():
            margin = card.styles.margin
            y += max(below, margin.top)
            height = card.outer_size.height
            # A card not laid out yet has no height: count it in view so it is drawn.
            card.in_view = self._shown and (height == 0 or (y < bottom and y + height > top))
            if card.in_view:
                shown.append(card)
            y += height
            below = margin.bottom
        return shown

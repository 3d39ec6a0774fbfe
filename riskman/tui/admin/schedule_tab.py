"""Admin · Schedule: the daily reset, the timezone, and the holiday calendar."""

from __future__ import annotations

from datetime import date, time

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from riskman.control.interface import ControlError, Holiday, SchedulePut, ScheduleState
from riskman.tui.admin.base import AdminTab
from widgets.tables import KeyedTable

HOLIDAY_COLUMNS = (("date", "Date"), ("kind", "Kind"), ("time", "Closes at"), ("name", "Name"))


class ScheduleTab(AdminTab):
    def __init__(self, state: ScheduleState) -> None:
        super().__init__("Schedule", id="admin-schedule")
        self.state = state
        self._holidays: list[Holiday] = list(state.holidays)

    def compose(self) -> ComposeResult:
        state = self.state
        with VerticalScroll(classes="admin-pane", can_focus=False):
            with Horizontal(classes="field-row"):
                yield Label('daily_reset  (time of day "HH:MM")', classes="field-name")
                yield Input(state.daily_reset, id="daily-reset")
            with Horizontal(classes="field-row"):
                yield Label("timezone  (IANA, e.g. America/Chicago)", classes="field-name")
                yield Input(state.timezone, id="timezone")
            yield Label(f"Holidays ({state.holidays_file})", classes="section")
            yield KeyedTable(HOLIDAY_COLUMNS, id="holiday-table")
            with Horizontal(classes="field-row"):
                yield Input(placeholder="YYYY-MM-DD", id="holiday-date")
                yield Input(placeholder="HH:MM (early close)", id="holiday-time")
                yield Input(placeholder="name", id="holiday-name")
            with Horizontal(classes="buttons"):
                yield Button("Add closed day (f8)", id="add-closed")
                yield Button("Add early close (f8 with a time)", id="add-early")
                yield Button("Remove selected (f9)", id="remove-holiday")
            yield Static("", id="schedule-problems", classes="problems")
            with Horizontal(classes="buttons"):
                yield Button(
                    "Save schedule and holidays (ctrl+s)", id="save-schedule", variant="primary"
                )

    def on_mount(self) -> None:
        self._show_holidays()

    def _show_holidays(self) -> None:
        rows = [
            (
                h.day.isoformat(),
                (
                    h.day.isoformat(),
                    "closed" if h.close is None else "early close",
                    h.close or "",
                    h.name,
                ),
            )
            for h in sorted(self._holidays, key=lambda h: (h.day, h.name, h.close or ""))
        ]
        self.query_one("#holiday-table", KeyedTable).sync(rows)

    def add_holiday(self, *, early: bool | None = None) -> None:
        """f8: an early close when a closing time is given, else a full closure."""
        if early is None:
            early = bool(self.query_one("#holiday-time", Input).value.strip())
        problems = self.query_one("#schedule-problems", Static)
        text = self.query_one("#holiday-date", Input).value.strip()
        name = self.query_one("#holiday-name", Input).value.strip() or "holiday"
        try:
            day = date.fromisoformat(text)
        except ValueError:
            problems.update(f"{text!r} is not a date YYYY-MM-DD.")
            return
        close = None
        if early:
            raw = self.query_one("#holiday-time", Input).value.strip()
            try:
                close = time.fromisoformat(raw).strftime("%H:%M")
            except ValueError:
                problems.update(f"{raw!r} is not a time HH:MM (the early close).")
                return
        self._holidays = [h for h in self._holidays if h.day != day] + [
            Holiday(day=day, name=name, close=close)
        ]
        problems.update(f"{day} added: save to write it.")
        self._show_holidays()

    def remove_holiday(self) -> None:
        table = self.query_one("#holiday-table", KeyedTable)
        if table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self._holidays = [h for h in self._holidays if h.day.isoformat() != key]
        self.query_one("#schedule-problems", Static).update(f"{key} removed: save to write it.")
        self._show_holidays()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        if button == "save-schedule":
            event.stop()
            await self.save()
        elif button in ("add-closed", "add-early"):
            event.stop()
            self.add_holiday(early=button == "add-early")
        elif button == "remove-holiday":
            event.stop()
            self.remove_holiday()

    async def save(self) -> None:
        problems = self.query_one("#schedule-problems", Static)
        request = SchedulePut(
            daily_reset=self.query_one("#daily-reset", Input).value.strip(),
            timezone=self.query_one("#timezone", Input).value.strip(),
            holidays=self._holidays,
        )
        try:
            result = await self.control.put_schedule(self.session, request)
        except ControlError as exc:
            self.admin.refused(exc, problems)
            return
        problems.update("")
        await self.admin.saved(result, unchanged="Nothing to save.")

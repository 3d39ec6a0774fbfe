"""The breach report of one enforcement-log entry (enter on the log): what triggered it, what
the rule saw, the prices used, every gateway call and the state afterwards."""

from __future__ import annotations

import json
from datetime import tzinfo
from typing import ClassVar
from zoneinfo import ZoneInfo

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static

from riskman.control.interface import Control, ControlError, ReportQuery
from riskman.core.views import BreachReport, EnforcementRecord
from riskman.report import breach_lines
from widgets.formatting import local_times


class BreachReportModal(ModalScreen[None]):
    DEFAULT_CSS = """
    BreachReportModal { align: center middle; }
    BreachReportModal #report-dialog { width: 90%; height: auto; max-height: 90%; }
    BreachReportModal VerticalScroll { height: auto; max-height: 30; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close"),
    ]

    def __init__(self, record: EnforcementRecord, control: Control, zone: tzinfo) -> None:
        super().__init__()
        self.record = record
        self.control = control
        self.zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo("UTC")
        self.report: BreachReport | None = None

    def compose(self) -> ComposeResult:
        record = self.record
        with Vertical(id="report-dialog", classes="dialog-box"):
            yield Label(
                f"Breach report · account {record.account_id} · {record.rule}", classes="title"
            )
            with VerticalScroll():
                yield Static("Looking up the report…", id="report-body")
        yield Footer()

    async def on_mount(self) -> None:
        body = self.query_one("#report-body", Static)
        record = self.record
        try:
            answer = await self.control.breach_report(
                ReportQuery(account_id=record.account_id, rule=record.rule, at=record.ts)
            )
        except ControlError as exc:
            body.update(f"{exc}\n\n`riskman report` prints every report of the day.")
            return
        if answer.report is not None:
            self.report = BreachReport.from_json(json.dumps(answer.report))
        if self.report is None:
            body.update(
                f"{self.record.action} {self.record.target}: {self.record.result}\n"
                f"{local_times(self.record.reason, self.zone)}\n\nNo breach report was kept for "
                "this entry (it was made before riskman kept reports)."
            )
            return
        body.update("\n".join(breach_lines(self.report, self.zone)))

    def action_close(self) -> None:
        self.dismiss(None)

"""Admin · Audit: every admin change, newest first."""

from __future__ import annotations

from textual.app import ComposeResult

from riskman.control.interface import ControlError
from riskman.tui.admin.base import AdminTab
from widgets.tables import KeyedTable, Stamp

AUDIT_COLUMNS = (
    ("time", "Time"),
    ("action", "Action"),
    ("target", "What"),
    ("old", "Old"),
    ("new", "New"),
    ("reason", "Reason"),
)
AUDIT_ROWS = 200


class AuditTab(AdminTab):
    def __init__(self) -> None:
        super().__init__("Audit", id="admin-audit")

    def compose(self) -> ComposeResult:
        yield KeyedTable(AUDIT_COLUMNS, id="audit-table")

    async def load(self) -> None:
        try:
            entries = await self.control.audit(self.session, AUDIT_ROWS)
        except ControlError:
            return  # the session ended: the screen locks itself
        zone = self.riskman.settings.zone
        rows = []
        for entry in entries:
            at = entry.at
            stamp = (
                Stamp(at, at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"))
                if at is not None
                else ""
            )
            rows.append(
                (
                    str(entry.id),
                    (stamp, entry.action, entry.target, entry.old, entry.new, entry.reason),
                )
            )
        self.query_one("#audit-table", KeyedTable).sync(rows, sort_by="time")

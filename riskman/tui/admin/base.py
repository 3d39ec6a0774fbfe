"""What every admin tab shares: the screen it sits on, the interface, saving."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.widgets import TabPane

from riskman.control.interface import Control, Session

if TYPE_CHECKING:
    from riskman.tui.admin.screen import AdminScreen
    from riskman.tui.app import RiskmanApp


class AdminTab(TabPane):
    """One tab of the admin screen. Its widgets and handlers live in the tab; `save()` is
    what ctrl+s does while the tab is shown."""

    @property
    def admin(self) -> AdminScreen:
        from riskman.tui.admin.screen import AdminScreen

        return cast(AdminScreen, self.screen)

    @property
    def riskman(self) -> RiskmanApp:
        return self.admin.riskman

    @property
    def control(self) -> Control:
        return self.admin.control

    @property
    def session(self) -> Session:
        return self.admin.session

    async def save(self) -> None:
        """ctrl+s on this tab (nothing by default)."""

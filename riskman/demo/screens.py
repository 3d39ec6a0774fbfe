"""`riskman demo`'s screens: the trader screen with the trader's side of the demo below it
(what his broker's platform would do) and its keys. The production terminal knows nothing of
this: `DemoApp` is the app with this screen as its first one."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from riskman.config import Settings
from riskman.control.interface import Control
from riskman.core.enums import OrderSide
from riskman.demo.desk import INSTRUMENTS, DemoDesk
from riskman.tui.app import RiskmanApp
from riskman.tui.trader import TraderScreen


class DemoPanel(Static):
    """What the demo keys do, which instrument they trade, and what happened last."""

    DEFAULT_CSS = """
    DemoPanel {
        height: auto;
        border: round $accent;
        border-title-color: $accent;
        border-title-style: bold;
        padding: 0 1;
    }
    """

    def __init__(self, desk: DemoDesk, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.desk = desk

    def on_mount(self) -> None:
        self.border_title = "DEMO · you are the trader · riskman is the guard"
        self.desk.on_news = self.show
        self.show()

    def on_unmount(self) -> None:
        self.desk.on_news = lambda: None

    def show(self) -> None:
        desk = self.desk
        instruments: list[Content | str | tuple[str, str]] = []
        for item in INSTRUMENTS:
            if item == desk.instrument:
                instruments.append((f"[{item.symbol}]", "bold reverse $accent"))
            else:
                instruments.append((f" {item.symbol} ", "dim"))
            instruments.append(" ")
        script = ("ON", "bold $warning") if desk.scripted else ("off", "dim")
        password = (
            (desk.password, "bold") if desk.password else ("the one set for this folder", "dim")
        )
        self.update(
            Content("\n").join(
                [
                    Content.assemble(
                        ("Account ", "dim"),
                        (f"{desk.account_name} ({desk.account_id})", "bold"),
                        ("   instrument ", "dim"),
                        *instruments,
                        ("  scripted trader ", "dim"),
                        script,
                        ("   admin password ", "dim"),
                        password,
                    ),
                    Content.assemble(
                        ("b", "bold $accent"),
                        " buy 1   ",
                        ("s", "bold $accent"),
                        " sell 1   ",
                        ("i", "bold $accent"),
                        " next instrument   ",
                        ("f", "bold $accent"),
                        " flatten   ",
                        ("t", "bold $accent"),
                        " scripted trader on/off   ",
                        (
                            "Try: press b four times quickly (4 trades in a minute: a cooldown).",
                            "italic dim",
                        ),
                    ),
                    Content.assemble(("Last: ", "dim"), desk.last),
                ]
            )
        )


class DemoScreen(TraderScreen):
    """The trader screen, plus the demo panel and the trader's keys at his broker."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "demo_order('buy')", "Buy 1", tooltip="Demo: buy 1 contract at the broker"),
        Binding("s", "demo_order('sell')", "Sell 1", tooltip="Demo: sell 1 contract"),
        Binding("i", "demo_instrument", "Instrument", tooltip="Demo: trade the next instrument"),
        Binding("f", "demo_flatten", "Flatten", tooltip="Demo: close everything at the broker"),
        Binding("t", "demo_script", "Scripted trader", tooltip="Demo: a trader on tilt"),
    ]

    def __init__(self, desk: DemoDesk, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.desk = desk

    def compose(self) -> ComposeResult:
        yield from self.compose_body()
        yield DemoPanel(self.desk, id="demo")
        yield Footer()

    def action_demo_order(self, side: str) -> None:
        self.run_worker(self.desk.order(OrderSide.BID if side == "buy" else OrderSide.ASK))

    def action_demo_instrument(self) -> None:
        self.desk.next_instrument()

    def action_demo_flatten(self) -> None:
        self.run_worker(self.desk.flatten())

    def action_demo_script(self) -> None:
        self.desk.toggle_script()


class DemoApp(RiskmanApp):
    """The terminal of `riskman demo`: the demo screen first, the desk stopped first."""

    def __init__(
        self, settings: Settings, config_path: Path, control: Control, desk: DemoDesk, **kw: Any
    ) -> None:
        super().__init__(settings, config_path, control, **kw)
        self.demo = desk

    def get_default_screen(self) -> Screen[Any]:
        return DemoScreen(self.demo, id="trader")

    async def before_stop(self) -> None:
        await self.demo.stop()

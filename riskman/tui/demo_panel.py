"""The demo panel: the trader's side of `riskman demo` (what his broker's platform would do)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.content import Content
from textual.widgets import Static

from riskman.demo import INSTRUMENTS

if TYPE_CHECKING:
    from riskman.demo import DemoDesk


class DemoPanel(Static):
    """What the demo keys do, which instrument they trade, and what happened last."""

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

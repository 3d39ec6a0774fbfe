"""Reusable Textual widgets of the trader terminal. They depend only on the engine's read-only
view types (`riskman.core.views`), never on the engine itself."""

from widgets.account_card import AccountCard, AccountList
from widgets.health import Banner, StatusStrip
from widgets.live_table import LiveTable
from widgets.tables import KeyedTable, Palette

__all__ = [
    "AccountCard",
    "AccountList",
    "Banner",
    "KeyedTable",
    "LiveTable",
    "Palette",
    "StatusStrip",
]

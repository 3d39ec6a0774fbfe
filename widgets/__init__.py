"""Reusable Textual widgets of the trader terminal. They depend only on the engine's read-only
snapshot types (`riskman.engine.snapshot`), never on the engine itself."""

from widgets.account_card import AccountCard
from widgets.countdowns import LockList
from widgets.health import Banner, StatusStrip
from widgets.limit_bar import LimitBar
from widgets.tables import KeyedTable, Palette

__all__ = ["AccountCard", "Banner", "KeyedTable", "LimitBar", "LockList", "Palette", "StatusStrip"]

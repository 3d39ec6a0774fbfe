"""The dashboard with many accounts: only the cards in view are drawn again with a snapshot,
and a card scrolled into view is brought up to date before it is painted."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from textual.app import App, ComposeResult

from riskman.core.views import AccountView, EngineSnapshot, TradeCounts
from tests.fakes import T0
from widgets.account_card import AccountCard, AccountList

CHICAGO = ZoneInfo("America/Chicago")
ACCOUNTS = 12


def view(account_id: int, realized: str = "0") -> AccountView:
    amount = Decimal(realized)
    return AccountView(
        account_id=account_id,
        name=f"ACC-{account_id}",
        balance=Decimal("50000"),
        can_trade=True,
        status="OK",
        status_reason="",
        realized=amount,
        open_pnl=Decimal(0),
        open_complete=True,
        total=amount,
        loss_limit=Decimal(300),
        profit_target=None,
        counts=TradeCounts(0, 0, 0),
        count_limits=(3, 10, 50),
        locks=(),
        positions=(),
        orders=(),
        rules=(),
        pnl_history=(),
    )


def snapshot(views: tuple[AccountView, ...]) -> EngineSnapshot:
    return EngineSnapshot(
        at=T0,
        trading_day=date(2026, 11, 18),
        next_reset=T0 + timedelta(hours=8),
        session_open=None,
        session_change=None,
        accounts=views,
        user_feed=None,
        market_feed=None,
        last_quote_age=None,
        stale_contracts=(),
        log=(),
        armed=True,
    )


class ListApp(App[None]):
    def compose(self) -> ComposeResult:
        yield AccountList(lambda: T0, id="accounts")


async def test_only_the_cards_in_view_are_drawn_again_and_the_rest_on_scrolling() -> None:
    app = ListApp()
    async with app.run_test(size=(160, 48)) as pilot:
        accounts = app.query_one(AccountList)
        views = tuple(view(1000 + n) for n in range(ACCOUNTS))
        accounts.show(snapshot(views), CHICAGO)
        await pilot.pause()
        cards = list(accounts.query(AccountCard).results())
        assert len(cards) == ACCOUNTS
        # Every account loses $150: only the cards on screen (the first few) are redrawn.
        accounts.show(snapshot(tuple(replace(v, realized=Decimal(-150)) for v in views)), CHICAGO)
        drawn = [card.part("realized-amount") == "-$150.00" for card in cards]
        assert drawn == [card.in_view for card in cards]
        assert drawn[0] and not drawn[-1]
        # Scrolled to the end, the last card is brought up to date.
        accounts.scroll_end(animate=False)
        await pilot.pause()
        assert cards[-1].part("realized-amount") == "-$150.00"
        assert cards[-1].in_view and not cards[0].in_view


async def test_a_hidden_dashboard_draws_no_card_until_it_is_shown_again() -> None:
    app = ListApp()
    async with app.run_test(size=(160, 48)) as pilot:
        accounts = app.query_one(AccountList)
        accounts.show(snapshot((view(1),)), CHICAGO)
        await pilot.pause()
        card = accounts.query_one(AccountCard)
        accounts.set_shown(False)
        accounts.show(snapshot((view(1, "-20"),)), CHICAGO)
        assert card.part("realized-amount") == "$0.00"
        accounts.set_shown(True)
        assert card.part("realized-amount") == "-$20.00"

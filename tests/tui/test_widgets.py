"""The status line and the banner, from hand-made snapshots."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from riskman.core.views import EngineSnapshot, FeedHealth, FeedState
from tests.fakes import T0
from widgets.health import banner_lines, status_lines

CHICAGO = ZoneInfo("America/Chicago")
UP = FeedHealth("user", FeedState.CONNECTED)


def snapshot(**changes: object) -> EngineSnapshot:
    base = EngineSnapshot(
        at=T0,
        trading_day=date(2026, 11, 18),
        next_reset=T0 + timedelta(hours=8),
        session_open=None,
        session_change=None,
        accounts=(),
        user_feed=UP,
        market_feed=FeedHealth("market", FeedState.CONNECTED),
        last_quote_age=0.5,
        stale_contracts=(),
        log=(),
        armed=True,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_status_line_says_whether_the_session_is_open_and_when_it_changes() -> None:
    opened = str(
        status_lines(
            snapshot(session_open=True, session_change=T0 + timedelta(hours=6, minutes=10)),
            CHICAGO,
            T0,
        )
    )
    assert "session OPEN  closes 15:10 CST" in opened
    closed = str(
        status_lines(
            snapshot(session_open=False, session_change=T0 + timedelta(hours=2)), CHICAGO, T0
        )
    )
    assert "session CLOSED  opens 11:00 CST  in 2h 00m" in closed
    assert "next daily reset 17:00 CST  in 8:00:00" in closed


def test_the_quote_age_grows_between_snapshots() -> None:
    text = str(status_lines(snapshot(), CHICAGO, T0 + timedelta(seconds=3)))
    assert "last quote 3.5s" in text


def test_stale_quotes_and_a_down_feed_are_said_loudly() -> None:
    assert banner_lines(snapshot()) == []
    stale = banner_lines(snapshot(stale_contracts=("CON.F.US.EP.Z26",)))
    assert len(stale) == 1 and stale[0].startswith("STALE QUOTES for ES Z26 —")
    down = banner_lines(snapshot(user_feed=FeedHealth("user", FeedState.RECONNECTING), armed=False))
    assert down[0].startswith("USER FEED RECONNECTING — FEED STALE")
    assert "NOT ENFORCING" in str(status_lines(snapshot(armed=False), CHICAGO, T0))


def test_banner_says_when_prices_come_from_rest() -> None:
    lines = banner_lines(snapshot(rest_priced=("CON.F.US.EP.Z26",)))
    assert len(lines) == 1 and lines[0].startswith("NO LIVE QUOTES for ES")


def test_a_position_priced_over_rest_says_so_in_its_last_price() -> None:
    from decimal import Decimal

    from riskman.core.views import AccountView, PositionView, TradeCounts
    from widgets.tables import Palette, position_rows

    pos = PositionView(
        account_id=7,
        contract_id="CON.F.US.EP.Z26",
        symbol="ES",
        side="LONG",
        size=1,
        average=Decimal(5000),
        last=Decimal("5001.25"),
        open_pnl=Decimal("62.5"),
        opened=T0,
        has_stop=True,
        stale=False,
        quote_age=1.0,
        price_source="rest",
    )
    view = AccountView(
        account_id=7,
        name="ACC",
        balance=None,
        can_trade=True,
        status="OK",
        status_reason="",
        realized=Decimal(0),
        open_pnl=Decimal("62.5"),
        open_complete=True,
        total=Decimal("62.5"),
        loss_limit=None,
        profit_target=None,
        counts=TradeCounts(0, 0, 0),
        count_limits=(None, None, None),
        locks=(),
        positions=(pos,),
        orders=(),
        rules=(),
        pnl_history=(),
    )
    row = position_rows(view, T0, Palette("green", "yellow", "red"))[0]
    assert any("5,001.25 REST" in str(cell) or "5001.25 REST" in str(cell) for cell in row[1])

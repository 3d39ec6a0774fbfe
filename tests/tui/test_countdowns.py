"""Countdowns follow the engine's clock (the FakeClock here): they tick down each second, end
on time, and their timer sleeps while nothing counts down."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from riskman.core.locks import Unlock
from riskman.core.views import LockView
from riskman.tui.app import RiskmanApp
from tests.fakes import T0
from tests.tui.conftest import ACC_A, ACC_B, SIZE, running, until
from widgets.account_card import AccountCard
from widgets.countdowns import live
from widgets.formatting import countdown, money, span
from widgets.health import StatusStrip


def card(app: RiskmanApp, account_id: int) -> AccountCard:
    return app.screen.query_one(f"#account-{account_id}", AccountCard)


def locks_text(app: RiskmanApp, account_id: int) -> str:
    return card(app, account_id).part("locks")


async def test_a_cooldown_counts_down_with_the_clock_and_disappears_when_it_ends(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        clock = app.clock
        assert "ends in 0:45" in locks_text(app, ACC_A)
        await clock.advance(10)  # type: ignore[attr-defined]
        await until(pilot, lambda: "ends in 0:35" in locks_text(app, ACC_A))
        await clock.advance(34.5)  # type: ignore[attr-defined]
        await until(pilot, lambda: "ends in 0:01" in locks_text(app, ACC_A))
        await clock.advance(0.5)  # type: ignore[attr-defined]
        await until(pilot, lambda: "COOLDOWN" not in locks_text(app, ACC_A))
        assert "No lockout or cooldown" in locks_text(app, ACC_A)
        a = card(app, ACC_A)
        await until(pilot, lambda: a.has_class("-ok"))
        assert a.part("status").strip() == "OK"
        # B's daily-loss lock is still there, counting down to the reset (at its next tick).
        await until(pilot, lambda: "until the daily reset in 7:58:33" in locks_text(app, ACC_B))


async def test_the_countdown_timer_runs_only_while_a_deadline_is_shown(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        a = card(app, ACC_A)
        assert a.ticking
        admin_only = LockView(7, "RULE-014", "lockout", "max loss", None, None, Unlock.ADMIN.value)
        a.show(replace(a.view, locks=(admin_only,)))
        assert not a.ticking
        assert "until an admin clears it" in a.part("locks")
        a.show(replace(a.view, locks=()))
        assert not a.ticking
        assert a.part("locks") == "No lockout or cooldown."


async def test_the_next_reset_counts_down_in_the_status_line(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        strip = app.screen.query_one(StatusStrip)
        assert "next daily reset 17:00 CST  in 7:59:18" in str(strip.render())
        await app.clock.advance(3600)  # type: ignore[attr-defined]
        await until(pilot, lambda: "in 6:59:18" in str(strip.render()))


def test_live_drops_a_lock_at_its_deadline() -> None:
    lock = LockView(1, "RULE-006", "cooldown", "x", None, T0 + timedelta(seconds=5), "time")
    assert live([lock], T0 + timedelta(seconds=4.9)) == [lock]
    assert live([lock], T0 + timedelta(seconds=5)) == []


def test_countdown_rounds_up_so_the_last_second_shows_until_the_end() -> None:
    assert countdown(0.2) == "0:01"
    assert countdown(59.0) == "0:59"
    assert countdown(60.01) == "1:01"
    assert countdown(3600) == "1:00:00"
    assert countdown(-3) == "0:00"
    assert span(45) == "45s" and span(3 * 3600 + 300) == "3h 05m"


def test_money_is_dollars_and_cents_with_the_sign_first() -> None:
    assert money(Decimal("-312.5")) == "-$312.50"
    assert money(Decimal("49687.5")) == "$49,687.50"
    assert money(Decimal("-0.001")) == "$0.00"
    assert money(Decimal("12"), signed=True) == "+$12.00"
    assert money(None) == "—"

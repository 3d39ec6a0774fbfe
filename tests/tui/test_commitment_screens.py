"""Issue 13 on the trader's screens: `x` locks the trader out (a confirmation that says it
cannot be undone); an admin unlock shows its countdown; pending changes say when they apply;
an account riskman does not guard is NOT GUARDED, never under a plain ENFORCING."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from riskman.config import Settings
from riskman.engine.engine import SELF_LOCK
from riskman.tui.app import RiskmanApp
from riskman.tui.modals import LockMeOut
from tests.fakes import account
from tests.tui.conftest import ACC_A, ACC_B, SIZE, engine_of, running, until


def _strip(app: RiskmanApp) -> str:
    return str(app.screen.query_one("#commitment", Static).content)


async def test_x_asks_first_then_flattens_and_locks_every_account(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, LockMeOut))
        assert "CANNOT BE UNDONE" in str(app.screen.query_one(".message", Static).content)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, LockMeOut))
        engine = engine_of(app)
        assert not any(k.rule == SELF_LOCK for k in engine.lockouts.all_active())

        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, LockMeOut))
        await pilot.click("#lock-30m")
        await until(
            pilot,
            lambda: (
                {k.account_id for k in engine.lockouts.all_active() if k.rule == SELF_LOCK}
                == {ACC_A, ACC_B}
            ),
        )
        # A's MNQ position is closed by the lockout gate.
        await until(pilot, lambda: engine.state.get_all_positions(ACC_A) == [])


async def test_an_admin_unlock_shows_its_countdown_and_that_the_lock_comes_back(
    app: RiskmanApp,
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        await engine.request_unlock(ACC_B, "coach approved: data error")
        await until(pilot, lambda: "unlock in 30:00" in _strip(app))
        # B is still past its daily loss limit: the lock comes straight back.
        assert "the lock will come straight back" in _strip(app)
        await app.clock.advance(60)  # type: ignore[attr-defined]
        await until(pilot, lambda: "unlock in 29:00" in _strip(app))


async def test_pending_changes_show_when_they_take_effect(
    app: RiskmanApp, settings: Settings, config_path: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        looser = settings.model_copy(deep=True)
        looser.rules.daily_realized_loss.limit = looser.rules.daily_realized_loss.limit * 3
        await engine.apply_settings(looser)
        await pilot.press("r")
        await until(
            pilot, lambda: "PENDING rules.daily_realized_loss.limit 300 → 900" in _strip(app)
        )
        assert "takes effect at the daily reset at 17:00" in _strip(app)


async def test_an_account_riskman_does_not_guard_is_not_guarded(app: RiskmanApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await running(pilot)
        engine = engine_of(app)
        engine.guarded = {ACC_A, ACC_B}
        engine.note_reported([account(ACC_A), account(ACC_B), account(1003)])
        await until(pilot, lambda: "NOT GUARDED" in _strip(app))
        view = engine.snapshot().account(1003)
        assert view is not None and view.status == "NOT GUARDED" and not view.guarded
        strip = str(app.screen.query_one("#status", Static).render())
        assert "ENFORCING 2 of 3 · 1 NOT GUARDED" in strip

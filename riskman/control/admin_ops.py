"""The admin verbs the control API offers, done on the running engine: write the config file
(validated, atomic, comments kept), apply it live, and audit every change.

Each verb raises OpError (status + problems) for anything the caller can fix; the file and
the engine are then unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import date, time
from pathlib import Path
from typing import Any

from riskman.admin import PasswordError, PasswordStore
from riskman.calendar import HolidayCalendar
from riskman.config import ConfigError, read_yaml
from riskman.config_writer import KeyPath, update_config, update_holidays
from riskman.engine.engine import Engine


class OpError(Exception):
    def __init__(self, status: int, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.problems = list(problems)


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _leaves(data: Mapping[str, Any], prefix: KeyPath) -> dict[KeyPath, Any]:
    """{"a": {"b": 1}} -> {(*prefix, "a", "b"): 1}: a partial object as key-path edits."""
    out: dict[KeyPath, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_leaves(value, (*prefix, str(key))))
        else:
            out[(*prefix, str(key))] = value
    return out


class AdminOps:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- reads ---------------------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        """Rule changes waiting for the daily reset (none until commitment exists)."""
        return []

    def rules(self) -> dict[str, Any]:
        settings = self.engine.settings
        return {
            "rules": settings.rules.model_dump(mode="json"),
            "accounts": {
                str(entry.id): entry.rules.model_dump(mode="json")
                for entry in settings.accounts
                if entry.rules is not None
            },
        }

    async def accounts(self) -> dict[str, Any]:
        engine = self.engine
        configured = engine.settings.account_ids
        listed: dict[int, str] = {}
        problem = ""
        try:
            for account in await engine.gateway.search_accounts(only_active=False):
                listed[account.id] = account.name
        except Exception as exc:  # the gateway may be down: the configured ids still show
            problem = f"could not list the accounts from the gateway: {exc}"
        for account in engine.state.accounts():
            listed.setdefault(account.id, account.name)
        for account_id in configured:
            listed.setdefault(account_id, "(not listed by the gateway)")
        return {
            "guard_all": not configured,
            "configured": configured,
            "accounts": [
                {"id": i, "name": name, "guarded": engine.is_guarded(i)}
                for i, name in sorted(listed.items())
            ],
            "problem": problem,
        }

    def lockouts(self) -> list[dict[str, Any]]:
        return [
            {
                "id": lock.id,
                "account": lock.account_id,
                "rule": lock.rule,
                "kind": lock.kind.value,
                "reason": lock.reason,
                "symbol": lock.symbol,
                "until": None if lock.until is None else lock.until.isoformat(),
                "ends": lock.unlock.value,
            }
            for lock in self.engine.lockouts.all_active()
        ]

    def schedule(self) -> dict[str, Any]:
        settings = self.engine.settings
        return {
            "daily_reset": settings.daily_reset.strftime("%H:%M"),
            "timezone": settings.timezone,
            "holidays": [
                {
                    "date": h.day.isoformat(),
                    "name": h.name,
                    "time": None if h.early_close is None else h.early_close.strftime("%H:%M"),
                }
                for h in self.engine.calendar
            ],
        }

    # --- writes --------------------------------------------------------------------------

    def _config_path(self) -> Path:
        path = type(self.engine.settings).config_path
        if path is None:
            raise OpError(409, "this engine was not started from a config file")
        return path

    async def _write(self, changes: Mapping[KeyPath, Any]) -> list[str]:
        path = self._config_path()
        try:
            settings, applied = await asyncio.to_thread(update_config, path, changes)
        except ConfigError as exc:
            raise OpError(422, "not saved (the file is unchanged)", exc.problems) from None
        except OSError as exc:
            raise OpError(409, f"not saved: cannot write {path}: {exc.strerror}") from None
        await self.engine.apply_settings(settings)
        for change in applied:
            await self.engine.audit(
                "config", change.key, old=_text(change.old), new=_text(change.new)
            )
        return [change.key for change in applied]

    async def set_rules(self, rules: Mapping[str, Any], *, account: int | None) -> list[str]:
        if not rules:
            raise OpError(400, "no rule given")
        if account is None:
            return await self._write(_leaves(rules, ("rules",)))
        raw = read_yaml(self._config_path()).get("accounts") or []
        for index, entry in enumerate(raw):
            entry_id = entry.get("id") if isinstance(entry, Mapping) else entry
            if str(entry_id) == str(account):
                return await self._write(_leaves(rules, ("accounts", index, "rules")))
        raise OpError(404, f"account {account} is not listed in the config's accounts")

    async def set_accounts(self, accounts: Sequence[int]) -> list[str]:
        raw = read_yaml(self._config_path()).get("accounts") or []
        entries: dict[int, Any] = {}
        for entry in raw:
            entry_id: Any = entry.get("id") if isinstance(entry, Mapping) else entry
            try:
                entries[int(entry_id)] = entry
            except (TypeError, ValueError):
                continue
        # Keep each kept account's own entry (it may carry its own rules).
        wanted = [entries.get(account_id, account_id) for account_id in sorted(set(accounts))]
        return await self._write({("accounts",): wanted})

    async def set_schedule(
        self,
        *,
        daily_reset: str | None,
        timezone: str | None,
        holidays: Sequence[tuple[str, str, str | None]] | None,
    ) -> list[str]:
        changes: dict[KeyPath, Any] = {}
        if daily_reset is not None:
            changes[("daily_reset",)] = daily_reset
        if timezone is not None:
            changes[("timezone",)] = timezone
        parsed: list[tuple[date, str, time | None]] = []
        for day, name, close in holidays or ():
            try:
                parsed.append(
                    (
                        date.fromisoformat(day),
                        name,
                        None if close is None else time.fromisoformat(close),
                    )
                )
            except ValueError as exc:
                raise OpError(422, f"holiday {day!r}: {exc}") from None
        if not changes and holidays is None:
            raise OpError(400, "nothing to change: give daily_reset, timezone or holidays")
        changed = await self._write(changes) if changes else []
        if holidays is not None:
            changed += await self._write_holidays(parsed)
        return changed

    async def _write_holidays(self, holidays: list[tuple[date, str, time | None]]) -> list[str]:
        engine = self.engine
        path = engine.settings.holidays_file
        before = HolidayCalendar.load(path)
        old = {(h.day, h.name, h.early_close) for h in before}
        if old == set(holidays):
            return []
        closed = [{"date": d, "name": n} for d, n, t in holidays if t is None]
        early = [{"date": d, "time": t, "name": n} for d, n, t in holidays if t is not None]
        try:
            await asyncio.to_thread(update_holidays, path, closed, early)
        except ConfigError as exc:
            raise OpError(422, "holidays not saved (file unchanged)", exc.problems) from None
        except OSError as exc:
            raise OpError(409, f"not saved: cannot write {path}: {exc.strerror}") from None
        engine.reload_calendar()
        added = sorted(set(holidays) - old)
        removed = sorted(old - set(holidays))
        await engine.audit(
            "holidays",
            path.name,
            old="; ".join(f"{d} {n}" for d, n, _ in removed) or "-",
            new="; ".join(f"{d} {n}" for d, n, _ in added) or "-",
        )
        return ["holidays"]

    async def clear_lockout(self, lock_id: int, reason: str) -> list[int]:
        if not reason.strip():
            raise OpError(422, "a reason is required to clear a lock (it goes to the audit)")
        lock = next((x for x in self.engine.lockouts.all_active() if x.id == lock_id), None)
        if lock is None:
            raise OpError(404, f"no active lock with id {lock_id}")
        return await self.engine.clear_lockout(lock.account_id, reason, lock_id=lock_id)

    async def set_password(self, password: str) -> None:
        store = PasswordStore(self.engine.settings.password_file)
        try:
            await asyncio.to_thread(store.set, password)
        except PasswordError as exc:
            raise OpError(422, f"not changed: {exc}") from None
        except OSError as exc:
            raise OpError(409, f"not changed: {exc.strerror}") from None
        await self.engine.audit("password", "admin password", old=None, new="changed")

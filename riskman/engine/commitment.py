"""Commitment: during a trading day the rules only get stricter (issue 13, SPEC.md §9).

Whatever proposes rules (the admin screens, the control API, the YAML file, `RISKMAN_*`
variables, a new database), the engine compares the proposal with the rules in force, field
by field. Each field says which of two values is stricter (`riskman.config.Loosens` in its
type's metadata): a stricter value applies at once, a looser one is *pending* until the next
daily reset. The rules in force are stored in the database with their history, and mirrored
in a small file beside the config file, so a new database does not lift them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from riskman.calendar import ResetSchedule
from riskman.config import (
    UNTIL_RESET,
    AccountEntry,
    AdminConfig,
    Loosens,
    Rules,
    Settings,
    loosens,
)
from riskman.core.files import write_private
from riskman.core.views import Pending
from riskman.storage.db import Database, from_db_time, to_db_time
from riskman.yamlfile import parse_hhmm, parse_zone

log = logging.getLogger(__name__)

ANCHOR_NAME = "riskman.commit.json"
OUTSIDE = "changed outside riskman"


# --- comparing two values ---------------------------------------------------------------------


def _number(value: Any) -> Any:
    if value == UNTIL_RESET:
        return math.inf  # a cooldown until the reset is the longest
    if isinstance(value, time):
        return value.hour * 60 + value.minute
    return value


def _looser(marker: Loosens, old: Any, new: Any) -> bool:
    """True when `new` is looser than `old` (they differ)."""
    if new is None:
        return True  # no limit / not set is the loosest value
    if old is None:
        return False
    way = marker.way
    if isinstance(old, dict) and isinstance(new, dict):
        if set(old) != set(new):
            return True
        return any(_looser(marker, old[k], new[k]) for k in old if old[k] != new[k])
    if way == "higher":
        return bool(_number(new) > _number(old))
    if way == "lower":
        return bool(_number(new) < _number(old))
    if way == "off":
        return not new
    if way == "on":
        return bool(new)
    if way == "fewer":  # (entries may be models: containment, not sets)
        return not all(item in new for item in old)
    if way == "more":
        return not all(item in old for item in new)
    if way == "order":
        return marker.order.index(new) < marker.order.index(old)
    return True  # "any": every change waits


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value == int(value):
        return int(value)
    return value


def _model_looser(old: BaseModel, new: BaseModel) -> bool:
    """A whole model (one entry of a list): looser if any of its fields is."""
    return bool(merge_model(old, new, "")[1])


def _list_looser(old: list[Any], new: list[Any]) -> bool:
    """A list of models: adding entries is stricter; else compared entry by entry."""
    if all(item in new for item in old):
        return False
    if len(old) != len(new):
        return True
    return any(_model_looser(a, b) for a, b in zip(old, new, strict=True) if a != b)


M = TypeVar("M", bound=BaseModel)


def merge_model(old: M, new: M, path: str) -> tuple[M, list[tuple[str, Any, Any]]]:
    """The stricter-now merge of two versions of a model: (in force, [(key, from, to)]).

    Every field takes the new value if it is stricter and keeps the old one if it is looser
    (that change is returned as pending). If the mix of old and new values is not a valid
    model (e.g. a drawdown above a lowered starting balance), the old model stays whole and
    every change of it is pending.
    """
    cls = type(old)
    values: dict[str, Any] = {}
    pending: list[tuple[str, Any, Any]] = []
    changes: list[tuple[str, Any, Any]] = []
    for name, field in cls.model_fields.items():
        a, b = getattr(old, name), getattr(new, name)
        key = f"{path}.{name}" if path else name
        if a == b:
            values[name] = b
            continue
        changes.append((key, _plain(a), _plain(b)))
        marker = loosens(field)
        model = _model_of(field.annotation) if marker is None else None
        if model is not None and isinstance(a, BaseModel) and isinstance(b, BaseModel):
            values[name], inner = merge_model(a, b, key)
            pending.extend(inner)
            continue
        if model is not None and get_origin(field.annotation) is list:
            looser = _list_looser(a, b)
        elif model is not None:
            looser = b is None  # an optional part switched off is looser; on is stricter
        else:
            looser = _looser(marker or Loosens("any"), a, b)
        if looser:
            values[name] = a
            pending.append((key, _plain(a), _plain(b)))
        else:
            values[name] = b
    # A model can say that a mix of fields is looser than its parts (`looser_than`).
    check = getattr(new, "looser_than", None)
    if not pending:
        return (old, changes) if check is not None and check(old) else (new, [])
    try:
        merged = cls.model_validate(values)
    except ValidationError:
        return old, changes
    if check is not None and getattr(merged, "looser_than")(old):  # noqa: B009
        return old, changes
    return merged, pending


# --- the committed part of the settings -------------------------------------------------------


def committed_part(settings: Settings) -> dict[str, Any]:
    """What riskman commits to for the trading day, as plain JSON data."""
    return {
        "rules": settings.rules.model_dump(mode="json"),
        "accounts": [
            {
                "id": entry.id,
                "rules": None if entry.rules is None else entry.rules.model_dump(mode="json"),
            }
            for entry in settings.accounts
        ],
        "daily_reset": settings.daily_reset.strftime("%H:%M"),
        "timezone": settings.timezone,
        "unlock_delay": settings.admin.unlock_delay,
    }


def with_committed(base: Settings, part: dict[str, Any]) -> Settings:
    """`base` with the committed keys taken from `part` (validated; raises ValueError)."""
    try:
        rules = Rules.model_validate(part["rules"])
        accounts = [AccountEntry.model_validate(entry) for entry in part["accounts"]]
        admin = AdminConfig.model_validate({"unlock_delay": part["unlock_delay"]})
        daily_reset = parse_hhmm(part["daily_reset"])
        timezone = parse_zone(part["timezone"])
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"the stored rules in force cannot be read: {exc}") from None
    return _copy(
        base,
        rules=rules,
        accounts=accounts,
        daily_reset=daily_reset,
        timezone=timezone,
        unlock_delay=admin.unlock_delay,
    )


def _copy(
    base: Settings,
    *,
    rules: Rules,
    accounts: Sequence[AccountEntry],
    daily_reset: time,
    timezone: str,
    unlock_delay: float,
) -> Settings:
    admin = base.admin.model_copy(update={"unlock_delay": unlock_delay})
    return base.model_copy(
        update={
            "rules": rules,
            "accounts": list(accounts),
            "daily_reset": daily_reset,
            "timezone": timezone,
            "admin": admin,
        }
    )


def commit(in_force: Settings, desired: Settings) -> tuple[Settings, list[Pending]]:
    """The settings to use now, and what waits for the reset, when `desired` is proposed.

    The result is `desired` with every looser value replaced by the one in force: a stricter
    value applies at once. An account no longer listed stays guarded (with its rules) until
    the reset; `accounts: []` guards every account, the strictest choice.
    """
    pending: list[Pending] = []
    rules, global_pending = merge_model(in_force.rules, desired.rules, "rules")
    pending += [Pending(None, key, old, new) for key, old, new in global_pending]

    old_ids, new_ids = in_force.account_ids, desired.account_ids
    if not old_ids:
        ids: list[int] = []
        if new_ids:
            pending.append(Pending(None, "accounts", [], list(new_ids)))
    elif not new_ids:
        ids = []
    else:
        ids = list(dict.fromkeys([*new_ids, *old_ids]))
        for dropped in (i for i in old_ids if i not in new_ids):
            pending.append(Pending(dropped, "accounts", "guarded", "not guarded"))
    own_old = {e.id for e in in_force.accounts if e.rules is not None}
    own_new = {e.id for e in desired.accounts if e.rules is not None}
    accounts: list[AccountEntry] = []
    for account_id in ids:
        old_rules = in_force.rules_for(account_id) if account_id in old_ids else rules
        new_rules = desired.rules_for(account_id) if account_id in new_ids else old_rules
        if account_id not in own_old | own_new:
            accounts.append(AccountEntry(id=account_id))
            continue
        merged, inner = merge_model(old_rules, new_rules, "rules")
        pending += [Pending(account_id, key, old, new) for key, old, new in inner]
        accounts.append(AccountEntry(id=account_id, rules=merged))

    daily_reset, timezone = desired.daily_reset, desired.timezone
    if (daily_reset, timezone) != (in_force.daily_reset, in_force.timezone):
        # Moving the reset would move today's losses into "yesterday": it waits.
        if daily_reset != in_force.daily_reset:
            pending.append(
                Pending(
                    None,
                    "daily_reset",
                    in_force.daily_reset.strftime("%H:%M"),
                    daily_reset.strftime("%H:%M"),
                )
            )
        if timezone != in_force.timezone:
            pending.append(Pending(None, "timezone", in_force.timezone, timezone))
        daily_reset, timezone = in_force.daily_reset, in_force.timezone
    unlock_delay = desired.admin.unlock_delay
    if unlock_delay < in_force.admin.unlock_delay:
        pending.append(
            Pending(
                None,
                "admin.unlock_delay",
                _plain(in_force.admin.unlock_delay),
                _plain(unlock_delay),
            )
        )
        unlock_delay = in_force.admin.unlock_delay
    effective = _copy(
        desired,
        rules=rules,
        accounts=accounts if ids else [],
        daily_reset=daily_reset,
        timezone=timezone,
        unlock_delay=unlock_delay,
    )
    return effective, pending


def without_pending(
    desired: Settings, in_force: Settings, account: int | None, key: str
) -> Settings:
    """`desired` with one pending change given up: that key takes its value in force."""
    wanted = committed_part(desired)
    held = committed_part(in_force)
    if key == "accounts":
        if account is None:
            wanted["accounts"] = held["accounts"]
        else:
            entry = next((e for e in held["accounts"] if e["id"] == account), {"id": account})
            if wanted["accounts"]:
                wanted["accounts"] = [*wanted["accounts"], entry]
    elif key in ("daily_reset", "timezone"):
        wanted[key] = held[key]
    elif key == "admin.unlock_delay":
        wanted["unlock_delay"] = held["unlock_delay"]
    else:
        parts = key.split(".")
        if parts[0] != "rules":
            raise ValueError(f"{key} is not a committed key")
        if account is None:
            source, target = held["rules"], wanted["rules"]
        else:
            source = _account_rules(held, account)
            target_entry = next((e for e in wanted["accounts"] if e["id"] == account), None)
            if target_entry is None:
                raise ValueError(f"account {account} has no rules of its own")
            if target_entry["rules"] is None:
                target_entry["rules"] = json.loads(json.dumps(wanted["rules"]))
            target = target_entry["rules"]
        for part in parts[1:-1]:
            source, target = source[part], target[part]
        target[parts[-1]] = source[parts[-1]]
    return with_committed(desired, wanted)


def _account_rules(part: dict[str, Any], account: int) -> dict[str, Any]:
    entry = next((e for e in part["accounts"] if e["id"] == account), None)
    if entry is None or entry["rules"] is None:
        rules: dict[str, Any] = part["rules"]
        return rules
    found: dict[str, Any] = entry["rules"]
    return found


# --- storage ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    at: datetime
    trading_day: date
    in_force: dict[str, Any]
    desired: dict[str, Any]
    where: str
    """'database' or the anchor file's path."""


class CommitmentStore:
    """The rules in force: a history in the database, the latest also in an anchor file.

    The anchor lives beside the config file (not beside the database), so pointing riskman at
    a new database does not forget what it committed to today. The anchor also remembers that
    an admin password has existed.
    """

    def __init__(self, db: Database, anchor: Path | None) -> None:
        self._db = db
        self.anchor = anchor

    async def latest(self) -> Stored | None:
        """The newest of the database's last row and the anchor file."""
        row = await self._db.fetchone(
            "SELECT ts, trading_day, in_force, desired FROM rules_in_force ORDER BY id DESC LIMIT 1"
        )
        found: list[Stored] = []
        if row is not None:
            found.append(
                Stored(
                    from_db_time(row["ts"]) or datetime.min.replace(tzinfo=UTC),
                    date.fromisoformat(row["trading_day"]),
                    json.loads(row["in_force"]),
                    json.loads(row["desired"]),
                    "database",
                )
            )
        anchor = self.read_anchor()
        if anchor is not None and "in_force" in anchor:
            try:
                found.append(
                    Stored(
                        datetime.fromisoformat(anchor["at"]),
                        date.fromisoformat(anchor["trading_day"]),
                        anchor["in_force"],
                        anchor.get("desired", anchor["in_force"]),
                        str(self.anchor),
                    )
                )
            except (KeyError, ValueError, TypeError):
                log.warning("%s is not readable; ignored", self.anchor)
        return max(found, key=lambda s: s.at) if found else None

    async def has_rows(self) -> bool:
        return await self._db.fetchone("SELECT 1 FROM rules_in_force LIMIT 1") is not None

    async def save(
        self, at: datetime, day: date, in_force: Settings, desired: Settings, why: str
    ) -> None:
        part, wanted = committed_part(in_force), committed_part(desired)
        await self._db.execute(
            "INSERT INTO rules_in_force (ts, trading_day, in_force, desired, why) "
            "VALUES (?, ?, ?, ?, ?)",
            (to_db_time(at), day.isoformat(), json.dumps(part), json.dumps(wanted), why),
        )
        self.write_anchor(
            {
                "at": at.isoformat(),
                "trading_day": day.isoformat(),
                "in_force": part,
                "desired": wanted,
            }
        )

    def read_anchor(self) -> dict[str, Any] | None:
        return None if self.anchor is None else read_anchor(self.anchor)

    def write_anchor(self, update: dict[str, Any]) -> None:
        if self.anchor is not None:
            update_anchor(self.anchor, update)


def read_anchor(path: Path) -> dict[str, Any] | None:
    """The anchor file's data (None when it is missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); ignored", path, exc)
        return None
    return data if isinstance(data, dict) else None


def update_anchor(path: Path, update: dict[str, Any]) -> None:
    """Merge `update` into the anchor file, atomically; a failure is logged, not fatal."""
    data = {**(read_anchor(path) or {}), **update}
    try:
        write_private(path, json.dumps(data, indent=1))
    except OSError as exc:
        log.warning(
            "cannot write %s (%s): the database alone holds the rules in force",
            path,
            exc.strerror,
        )


def schedule_of(part: dict[str, Any]) -> ResetSchedule:
    from zoneinfo import ZoneInfo

    hour, minute = (int(x) for x in str(part["daily_reset"]).split(":"))
    return ResetSchedule(time(hour, minute), ZoneInfo(part["timezone"]))

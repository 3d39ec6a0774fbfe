"""What a rule (or the lockout gate) wants done. Rules return intents; MOD-001 acts on them.

Intents from one event are merged into a plan: ordered as SPEC.md §3 says (lockouts first,
then closes, then reductions, then cooldowns) and de-duplicated so one breach never causes two
gateway calls for the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import IntEnum

from riskman.core.enums import OrderSide
from riskman.core.locks import LockKind, Unlock


class Category(IntEnum):
    """Evaluation order when several rules breach on one event."""

    LOCKOUT = 0
    CLOSE = 1
    REDUCE = 2
    COOLDOWN = 3
    AUTOMATION = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Intent:
    rule: str
    account_id: int
    reason: str
    category: Category = Category.CLOSE


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock(Intent):
    """Lock the account (or one symbol) until `until` / the unlock condition."""

    until: datetime | None
    unlock: Unlock
    kind: LockKind = LockKind.LOCKOUT
    symbol: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearLock(Intent):
    """End the issuing rule's own lock on the account (or on one symbol): its unlock condition
    came true (e.g. RULE-010: the gateway reports `canTrade` true again). A rule can only ever
    clear a lock it set itself."""

    symbol: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseAll(Intent):
    """Flatten the account: cancel every working order and close every position."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosePosition(Intent):
    contract_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReducePosition(Intent):
    """Partially close a position down to `target_size` contracts."""

    contract_id: str
    target_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrders(Intent):
    """Cancel working orders: of one symbol root (or all), only entries or all of them."""

    symbol: str | None = None
    entries_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder(Intent):
    order_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ModifyStop(Intent):
    order_id: int
    stop_price: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceStop(Intent):
    contract_id: str
    side: OrderSide
    size: int
    stop_price: Decimal


GatewayIntent = (
    CloseAll | ClosePosition | ReducePosition | CancelOrders | CancelOrder | ModifyStop | PlaceStop
)


@dataclass
class Plan:
    locks: list[Lock] = field(default_factory=list)
    actions: list[GatewayIntent] = field(default_factory=list)
    clears: list[ClearLock] = field(default_factory=list)
    """Applied before `locks`, so a lock set on the same event is never cleared by it."""

    def __bool__(self) -> bool:
        return bool(self.locks or self.actions or self.clears)


def _kind_rank(intent: Intent) -> int:
    order = (Lock, CloseAll, ClosePosition, CancelOrders, CancelOrder, ReducePosition)
    for rank, kind in enumerate(order):
        if isinstance(intent, kind):
            return rank
    return len(order)


def plan(intents: Iterable[Intent]) -> Plan:
    """Order and de-duplicate the intents of one event."""
    ordered = sorted(intents, key=lambda i: (i.category, _kind_rank(i)))
    result = Plan()
    flattened: set[int] = set()
    closing: set[tuple[int, str]] = set()
    reductions: dict[tuple[int, str], ReducePosition] = {}
    cancels: set[tuple[int, str | None, bool]] = set()
    single_cancels: set[tuple[int, int]] = set()
    locks: dict[tuple[int, str | None, str], Lock] = {}
    clears: dict[tuple[int, str | None, str], ClearLock] = {}
    for intent in ordered:
        account = intent.account_id
        if isinstance(intent, ClearLock):
            clears.setdefault((account, intent.symbol, intent.rule), intent)
        elif isinstance(intent, Lock):
            key = (account, intent.symbol, intent.rule)
            held = locks.get(key)
            if held is None or _longer(intent, held):
                locks[key] = intent
        elif isinstance(intent, CloseAll):
            if account not in flattened:
                flattened.add(account)
                result.actions.append(intent)
        elif isinstance(intent, ClosePosition):
            key2 = (account, intent.contract_id)
            if account not in flattened and key2 not in closing:
                closing.add(key2)
                result.actions.append(intent)
        elif isinstance(intent, ReducePosition):
            key2 = (account, intent.contract_id)
            if account in flattened or key2 in closing:
                continue
            held_reduce = reductions.get(key2)
            if held_reduce is None or intent.target_size < held_reduce.target_size:
                reductions[key2] = intent
        elif isinstance(intent, CancelOrders):
            key3 = (account, intent.symbol, intent.entries_only)
            covered = account in flattened or (account, None, False) in cancels
            if not covered and key3 not in cancels:
                cancels.add(key3)
                result.actions.append(intent)
        elif isinstance(intent, CancelOrder):
            key4 = (account, intent.order_id)
            if account in flattened or (account, None, False) in cancels or key4 in single_cancels:
                continue
            single_cancels.add(key4)
            result.actions.append(intent)
        elif isinstance(intent, ModifyStop | PlaceStop) and account not in flattened:
            result.actions.append(intent)
    result.actions.extend(reductions.values())
    result.locks = list(locks.values())
    result.clears = list(clears.values())
    return result


def _longer(candidate: Lock, held: Lock) -> bool:
    if candidate.until is None:
        return held.until is not None
    return held.until is not None and candidate.until > held.until

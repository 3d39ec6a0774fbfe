"""Versioned schema. Add a migration as the next number; never edit a released one.

Money is stored as decimal text (exact), times as ISO-8601 UTC text, trading days as
YYYY-MM-DD (the local date the trading day ends on).
"""

from __future__ import annotations

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE trades (
    account_id   INTEGER NOT NULL,
    trade_id     INTEGER NOT NULL,
    contract_id  TEXT    NOT NULL,
    ts           TEXT    NOT NULL,
    trading_day  TEXT    NOT NULL,
    price        TEXT    NOT NULL,
    pnl          TEXT,
    fees         TEXT    NOT NULL,
    side         INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    voided       INTEGER NOT NULL DEFAULT 0,
    order_id     INTEGER NOT NULL,
    PRIMARY KEY (account_id, trade_id)
);
CREATE INDEX trades_by_day ON trades (account_id, trading_day);

CREATE TABLE daily_pnl (
    account_id   INTEGER NOT NULL,
    trading_day  TEXT    NOT NULL,
    realized     TEXT    NOT NULL,
    gross        TEXT    NOT NULL,
    fees         TEXT    NOT NULL,
    fills        INTEGER NOT NULL,
    updated      TEXT    NOT NULL,
    PRIMARY KEY (account_id, trading_day)
);

CREATE TABLE lockouts (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL,
    symbol       TEXT    NOT NULL DEFAULT '',
    rule         TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('lockout', 'cooldown')),
    reason       TEXT    NOT NULL,
    unlock       TEXT    NOT NULL,
    until        TEXT,
    created      TEXT    NOT NULL,
    cleared      TEXT,
    cleared_by   TEXT,
    clear_reason TEXT
);
CREATE UNIQUE INDEX lockouts_active ON lockouts (account_id, symbol, rule) WHERE cleared IS NULL;

CREATE TABLE trade_counter (
    account_id    INTEGER PRIMARY KEY,
    session_start TEXT NOT NULL
);

CREATE TABLE contracts (
    contract_id  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    tick_size    TEXT NOT NULL,
    tick_value   TEXT NOT NULL,
    symbol_id    TEXT NOT NULL,
    active       INTEGER NOT NULL,
    cached       TEXT NOT NULL
);

CREATE TABLE positions (
    account_id   INTEGER NOT NULL,
    contract_id  TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    opened       TEXT    NOT NULL,
    grown        TEXT    NOT NULL,
    PRIMARY KEY (account_id, contract_id)
);

CREATE TABLE orders (
    order_id     INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL,
    payload      TEXT    NOT NULL
);

CREATE TABLE accounts (
    account_id   INTEGER PRIMARY KEY,
    payload      TEXT    NOT NULL,
    updated      TEXT    NOT NULL
);

CREATE TABLE enforcement_log (
    id           INTEGER PRIMARY KEY,
    ts           TEXT    NOT NULL,
    account_id   INTEGER NOT NULL,
    rule         TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    result       TEXT    NOT NULL,
    detail       TEXT    NOT NULL DEFAULT '',
    latency_ms   REAL
);
CREATE INDEX enforcement_by_time ON enforcement_log (ts);

CREATE TABLE reset_log (
    trading_day  TEXT PRIMARY KEY,
    fired        TEXT NOT NULL,
    how          TEXT NOT NULL
);

CREATE TABLE rule_state (
    rule         TEXT    NOT NULL,
    account_id   INTEGER NOT NULL,
    payload      TEXT    NOT NULL,
    updated      TEXT    NOT NULL,
    PRIMARY KEY (rule, account_id)
);

CREATE TABLE admin_audit (
    id           INTEGER PRIMARY KEY,
    ts           TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    old_value    TEXT,
    new_value    TEXT,
    reason       TEXT NOT NULL DEFAULT ''
);

CREATE TABLE admin_throttle (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    failures     INTEGER NOT NULL,
    locked_until TEXT
);
""",
    # Fills riskman caused (its own closes) do not count as the trader's trades (RULE-006).
    2: """
ALTER TABLE trades ADD COLUMN by_riskman INTEGER NOT NULL DEFAULT 0;
""",
    # Who made an admin change: the uid of the local process (the control API's caller).
    3: """
ALTER TABLE admin_audit ADD COLUMN uid INTEGER;
""",
    # Warnings before a limit (fired once per day), breach reports, the daily history.
    4: """
CREATE TABLE limit_warnings (
    trading_day  TEXT    NOT NULL,
    account_id   INTEGER NOT NULL,
    rule         TEXT    NOT NULL,
    threshold    INTEGER NOT NULL,
    ts           TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    PRIMARY KEY (trading_day, account_id, rule, threshold)
);

CREATE TABLE breach_reports (
    id           INTEGER PRIMARY KEY,
    ts           TEXT    NOT NULL,
    trading_day  TEXT    NOT NULL,
    account_id   INTEGER NOT NULL,
    rule         TEXT    NOT NULL,
    payload      TEXT    NOT NULL
);
CREATE INDEX breach_reports_by_day ON breach_reports (trading_day, account_id);

CREATE TABLE daily_history (
    account_id   INTEGER NOT NULL,
    trading_day  TEXT    NOT NULL,
    realized     TEXT    NOT NULL,
    fees         TEXT    NOT NULL,
    trades       INTEGER NOT NULL,
    breaches     INTEGER NOT NULL,
    locks        INTEGER NOT NULL,
    actions      INTEGER NOT NULL,
    balance      TEXT,
    stored       TEXT    NOT NULL,
    PRIMARY KEY (account_id, trading_day)
);
""",
    # Commitment (issue 13): the rules in force with their history, and delayed unlocks.
    5: """
CREATE TABLE rules_in_force (
    id           INTEGER PRIMARY KEY,
    ts           TEXT NOT NULL,
    trading_day  TEXT NOT NULL,
    in_force     TEXT NOT NULL,
    desired      TEXT NOT NULL,
    why          TEXT NOT NULL
);

CREATE TABLE unlock_requests (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL,
    lock_id      INTEGER,
    reason       TEXT NOT NULL,
    asked        TEXT NOT NULL,
    due          TEXT NOT NULL,
    actor        TEXT NOT NULL,
    done         TEXT,
    outcome      TEXT
);
""",
}

SCHEMA_VERSION = max(MIGRATIONS)

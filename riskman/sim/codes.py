"""Per-endpoint error codes, exactly as the gateway numbers them (PROJECTX_API.md §1-§2).

The same integer means different things on different endpoints (§2.14), so each endpoint gets
its own enum and the simulator never passes a bare number between them.
"""

from __future__ import annotations

from enum import IntEnum


class LoginCode(IntEnum):
    SUCCESS = 0
    USER_NOT_FOUND = 1
    PASSWORD_VERIFICATION_FAILED = 2
    INVALID_CREDENTIALS = 3
    APP_NOT_FOUND = 4
    APP_VERIFICATION_FAILED = 5
    INVALID_DEVICE = 6
    AGREEMENTS_NOT_SIGNED = 7
    UNKNOWN_ERROR = 8
    API_SUBSCRIPTION_NOT_FOUND = 9
    API_KEY_AUTHENTICATION_DISABLED = 10


class ValidateCode(IntEnum):
    SUCCESS = 0
    INVALID_SESSION = 1
    SESSION_NOT_FOUND = 2
    EXPIRED_TOKEN = 3
    UNKNOWN_ERROR = 4


class LogoutCode(IntEnum):
    SUCCESS = 0
    INVALID_SESSION = 1
    UNKNOWN_ERROR = 2


class AccountSearchCode(IntEnum):
    SUCCESS = 0


class PositionSearchCode(IntEnum):
    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1


class CloseCode(IntEnum):
    """`Position/closeContract`."""

    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1
    POSITION_NOT_FOUND = 2
    CONTRACT_NOT_FOUND = 3
    CONTRACT_NOT_ACTIVE = 4
    ORDER_REJECTED = 5
    ORDER_PENDING = 6
    UNKNOWN_ERROR = 7
    ACCOUNT_REJECTED = 8


class PartialCloseCode(IntEnum):
    """`Position/partialCloseContract`: shifted by one against closeContract from 5 on."""

    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1
    POSITION_NOT_FOUND = 2
    CONTRACT_NOT_FOUND = 3
    CONTRACT_NOT_ACTIVE = 4
    INVALID_CLOSE_SIZE = 5
    ORDER_REJECTED = 6
    ORDER_PENDING = 7
    UNKNOWN_ERROR = 8
    ACCOUNT_REJECTED = 9


class PlaceCode(IntEnum):
    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1
    ORDER_REJECTED = 2
    INSUFFICIENT_FUNDS = 3
    ACCOUNT_VIOLATION = 4
    OUTSIDE_TRADING_HOURS = 5
    ORDER_PENDING = 6
    UNKNOWN_ERROR = 7
    CONTRACT_NOT_FOUND = 8
    CONTRACT_NOT_ACTIVE = 9
    ACCOUNT_REJECTED = 10


class ModifyCode(IntEnum):
    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1
    ORDER_NOT_FOUND = 2
    REJECTED = 3
    PENDING = 4
    UNKNOWN_ERROR = 5
    ACCOUNT_REJECTED = 6
    CONTRACT_NOT_FOUND = 7


class CancelCode(IntEnum):
    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1
    ORDER_NOT_FOUND = 2
    REJECTED = 3
    PENDING = 4
    UNKNOWN_ERROR = 5
    ACCOUNT_REJECTED = 6


class OrderSearchCode(IntEnum):
    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1


class TradeSearchCode(IntEnum):
    SUCCESS = 0
    ACCOUNT_NOT_FOUND = 1


class ContractCode(IntEnum):
    SUCCESS = 0
    CONTRACT_NOT_FOUND = 1


class BarsCode(IntEnum):
    SUCCESS = 0
    CONTRACT_NOT_FOUND = 1
    UNIT_INVALID = 2
    UNIT_NUMBER_INVALID = 3
    LIMIT_INVALID = 4


# Documented code-2 messages of Order/place (PROJECTX_API.md §2.5).
BRACKETS_NEED_AUTO_OCO = (
    "Brackets cannot be used with Position Brackets. You must enable Auto OCO Brackets."
)
TRAIL_DISTANCE_NOT_SET = "Trail Distance not set."
TRAIL_PRICE_NOT_ALIGNED = "Invalid trail price. Price is not aligned to tick size."
TRAIL_DISTANCE_TOO_LARGE = "Trail Distance exceeds maximum (1000)"

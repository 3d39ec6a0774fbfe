"""Per-endpoint error codes of the ProjectX Gateway, named as its documentation names them.

The same integer means different things on different endpoints (PROJECTX_API.md §2.14), so each
endpoint has its own enum. The client maps them to typed errors; the simulator answers with them.
"""

from __future__ import annotations

from enum import IntEnum


class LoginErrorCode(IntEnum):
    Success = 0
    UserNotFound = 1
    PasswordVerificationFailed = 2
    InvalidCredentials = 3
    AppNotFound = 4
    AppVerificationFailed = 5
    InvalidDevice = 6
    AgreementsNotSigned = 7
    UnknownError = 8
    ApiSubscriptionNotFound = 9
    ApiKeyAuthenticationDisabled = 10


class ValidateErrorCode(IntEnum):
    Success = 0
    InvalidSession = 1
    SessionNotFound = 2
    ExpiredToken = 3
    UnknownError = 4


class SearchAccountErrorCode(IntEnum):
    Success = 0


class SearchPositionErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1


class ClosePositionErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1
    PositionNotFound = 2
    ContractNotFound = 3
    ContractNotActive = 4
    OrderRejected = 5
    OrderPending = 6
    UnknownError = 7
    AccountRejected = 8


class PartialClosePositionErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1
    PositionNotFound = 2
    ContractNotFound = 3
    ContractNotActive = 4
    InvalidCloseSize = 5
    OrderRejected = 6
    OrderPending = 7
    UnknownError = 8
    AccountRejected = 9


class PlaceOrderErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1
    OrderRejected = 2
    InsufficientFunds = 3
    AccountViolation = 4
    OutsideTradingHours = 5
    OrderPending = 6
    UnknownError = 7
    ContractNotFound = 8
    ContractNotActive = 9
    AccountRejected = 10


class ModifyOrderErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1
    OrderNotFound = 2
    Rejected = 3
    Pending = 4
    UnknownError = 5
    AccountRejected = 6
    ContractNotFound = 7


class CancelOrderErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1
    OrderNotFound = 2
    Rejected = 3
    Pending = 4
    UnknownError = 5
    AccountRejected = 6


class SearchOrderErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1


class SearchTradeErrorCode(IntEnum):
    Success = 0
    AccountNotFound = 1


class SearchContractErrorCode(IntEnum):
    Success = 0


class SearchContractByIdErrorCode(IntEnum):
    Success = 0
    ContractNotFound = 1


class RetrieveBarErrorCode(IntEnum):
    Success = 0
    ContractNotFound = 1
    UnitInvalid = 2
    UnitNumberInvalid = 3
    LimitInvalid = 4


class LogoutErrorCode(IntEnum):
    Success = 0
    InvalidSession = 1
    UnknownError = 2


# Documented code-2 messages of Order/place (PROJECTX_API.md §2.5).
BRACKETS_NEED_AUTO_OCO = (
    "Brackets cannot be used with Position Brackets. You must enable Auto OCO Brackets."
)
TRAIL_DISTANCE_NOT_SET = "Trail Distance not set."
TRAIL_PRICE_NOT_ALIGNED = "Invalid trail price. Price is not aligned to tick size."
TRAIL_DISTANCE_TOO_LARGE = "Trail Distance exceeds maximum (1000)"

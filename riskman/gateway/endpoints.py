"""The gateway's REST endpoints (PROJECTX_API.md §2): each with its error codes, whether it
changes anything (a mutation is never retried blindly), whether it may jump the rate limiter's
queue (enforcement calls) and what a refusal means."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from riskman.gateway.codes import (
    CancelOrderErrorCode,
    ClosePositionErrorCode,
    LoginErrorCode,
    ModifyOrderErrorCode,
    PartialClosePositionErrorCode,
    PlaceOrderErrorCode,
    RetrieveBarErrorCode,
    SearchAccountErrorCode,
    SearchContractByIdErrorCode,
    SearchContractErrorCode,
    SearchOrderErrorCode,
    SearchPositionErrorCode,
    SearchTradeErrorCode,
    ValidateErrorCode,
)
from riskman.gateway.errors import (
    AuthError,
    GatewayError,
    GatewayRejected,
    MarketClosed,
    NotFound,
    Pending,
)


class BarUnit(IntEnum):
    SECOND = 1
    MINUTE = 2
    HOUR = 3
    DAY = 4
    WEEK = 5
    MONTH = 6


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST endpoint: its path, its error-code enum, and how failures are classified."""

    path: str
    codes: type[IntEnum]
    mutation: bool = False
    urgent: bool = False
    """Enforcement calls: always jump the limiter's queue."""
    auth: bool = True
    bars: bool = False
    """Also counted against the 50 / 30 s History bucket."""
    errors: Mapping[int, type[GatewayError]] = field(default_factory=dict)
    refusal: type[GatewayError] = GatewayRejected
    """The error for a code with no entry in `errors`."""

    def error_for(self, code: int, message: str) -> GatewayError:
        try:
            name = self.codes(code).name
        except ValueError:
            name = f"UnknownCode{code}"
        kind = self.errors.get(code, self.refusal)
        return kind(self.path, message, code=code, code_name=name)


LOGIN = Endpoint("Auth/loginKey", LoginErrorCode, auth=False, urgent=True, refusal=AuthError)
VALIDATE = Endpoint("Auth/validate", ValidateErrorCode, urgent=True, refusal=AuthError)
ACCOUNT_SEARCH = Endpoint("Account/search", SearchAccountErrorCode)
POSITION_SEARCH_OPEN = Endpoint(
    "Position/searchOpen",
    SearchPositionErrorCode,
    errors={SearchPositionErrorCode.AccountNotFound: NotFound},
)
POSITION_CLOSE = Endpoint(
    "Position/closeContract",
    ClosePositionErrorCode,
    mutation=True,
    urgent=True,
    errors={
        ClosePositionErrorCode.AccountNotFound: NotFound,
        ClosePositionErrorCode.PositionNotFound: NotFound,
        ClosePositionErrorCode.ContractNotFound: NotFound,
        # Close code 5 is the market being closed/halted or having no price (§2.3, §7.2.5).
        ClosePositionErrorCode.OrderRejected: MarketClosed,
        ClosePositionErrorCode.OrderPending: Pending,
    },
)
POSITION_PARTIAL_CLOSE = Endpoint(
    "Position/partialCloseContract",
    PartialClosePositionErrorCode,
    mutation=True,
    urgent=True,
    errors={
        PartialClosePositionErrorCode.AccountNotFound: NotFound,
        PartialClosePositionErrorCode.PositionNotFound: NotFound,
        PartialClosePositionErrorCode.ContractNotFound: NotFound,
        PartialClosePositionErrorCode.OrderRejected: MarketClosed,
        PartialClosePositionErrorCode.OrderPending: Pending,
    },
)
ORDER_PLACE = Endpoint(
    "Order/place",
    PlaceOrderErrorCode,
    mutation=True,
    errors={
        PlaceOrderErrorCode.AccountNotFound: NotFound,
        PlaceOrderErrorCode.ContractNotFound: NotFound,
        PlaceOrderErrorCode.OutsideTradingHours: MarketClosed,
        PlaceOrderErrorCode.OrderPending: Pending,
    },
)
ORDER_MODIFY = Endpoint(
    "Order/modify",
    ModifyOrderErrorCode,
    mutation=True,
    errors={
        ModifyOrderErrorCode.AccountNotFound: NotFound,
        ModifyOrderErrorCode.OrderNotFound: NotFound,
        ModifyOrderErrorCode.ContractNotFound: NotFound,
        ModifyOrderErrorCode.Pending: Pending,
    },
)
ORDER_CANCEL = Endpoint(
    "Order/cancel",
    CancelOrderErrorCode,
    mutation=True,
    urgent=True,
    errors={
        CancelOrderErrorCode.AccountNotFound: NotFound,
        CancelOrderErrorCode.OrderNotFound: NotFound,
        CancelOrderErrorCode.Pending: Pending,
    },
)
ORDER_SEARCH = Endpoint(
    "Order/search", SearchOrderErrorCode, errors={SearchOrderErrorCode.AccountNotFound: NotFound}
)
ORDER_SEARCH_OPEN = Endpoint(
    "Order/searchOpen",
    SearchOrderErrorCode,
    errors={SearchOrderErrorCode.AccountNotFound: NotFound},
)
TRADE_SEARCH = Endpoint(
    "Trade/search", SearchTradeErrorCode, errors={SearchTradeErrorCode.AccountNotFound: NotFound}
)
CONTRACT_SEARCH = Endpoint("Contract/search", SearchContractErrorCode)
CONTRACT_SEARCH_BY_ID = Endpoint(
    "Contract/searchById",
    SearchContractByIdErrorCode,
    errors={SearchContractByIdErrorCode.ContractNotFound: NotFound},
)
HISTORY_BARS = Endpoint(
    "History/retrieveBars",
    RetrieveBarErrorCode,
    bars=True,
    errors={RetrieveBarErrorCode.ContractNotFound: NotFound},
)

ENDPOINTS: Final = (
    LOGIN,
    VALIDATE,
    ACCOUNT_SEARCH,
    POSITION_SEARCH_OPEN,
    POSITION_CLOSE,
    POSITION_PARTIAL_CLOSE,
    ORDER_PLACE,
    ORDER_MODIFY,
    ORDER_CANCEL,
    ORDER_SEARCH,
    ORDER_SEARCH_OPEN,
    TRADE_SEARCH,
    CONTRACT_SEARCH,
    CONTRACT_SEARCH_BY_ID,
    HISTORY_BARS,
)

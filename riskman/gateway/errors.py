"""Typed gateway errors. The engine reacts to the kind of failure, never to a code number.

Error-code integers are per endpoint (PROJECTX_API.md §2.14): the REST client maps each
endpoint's code to a name and to one of these classes. Messages never carry a token or key.
"""

from __future__ import annotations


class GatewayError(Exception):
    """A gateway call failed."""

    def __init__(
        self,
        endpoint: str,
        message: str,
        *,
        code: int | None = None,
        code_name: str | None = None,
        http_status: int | None = None,
    ) -> None:
        detail = message
        if code_name:
            detail = f"{code_name} ({code}): {message}" if message else f"{code_name} ({code})"
        elif http_status is not None:
            detail = f"HTTP {http_status}: {message}" if message else f"HTTP {http_status}"
        super().__init__(f"{endpoint}: {detail}")
        self.endpoint = endpoint
        self.code = code
        self.code_name = code_name
        self.http_status = http_status
        self.message = message


class GatewayRejected(GatewayError):
    """The gateway answered `success: false` (a definite answer: nothing was done)."""


class NotFound(GatewayRejected):
    """The position, order, account or contract does not exist (a close of a flat position)."""


class MarketClosed(GatewayRejected):
    """The order was rejected because the market is closed, halted or has no price."""


class Pending(GatewayRejected):
    """An order for this is already pending at the gateway."""


class AuthError(GatewayError):
    """Login or token refresh failed (bad credentials, expired token that cannot be renewed)."""


class RateLimited(GatewayError):
    """HTTP 429: over 200 requests / 60 s."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached or answered 5xx: nothing is known to have happened."""


class OutcomeUnknown(GatewayError):
    """A mutating call timed out or the connection broke after it was sent.

    The gateway may or may not have acted: re-read the state before deciding what to do next.
    """


class ProtocolError(GatewayError):
    """The gateway answered something that is not the documented envelope."""

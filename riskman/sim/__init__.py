"""The embedded ProjectX gateway simulator (SPEC.md §7): REST and SignalR hubs on loopback."""

from __future__ import annotations

from .contracts import DEFAULT_CONTRACTS, ContractSpec
from .faults import Faults
from .rest import RecordedRequest
from .simulator import DEFAULT_API_KEY, DEFAULT_USERNAME, SimRejected, Simulator, default_accounts

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_CONTRACTS",
    "DEFAULT_USERNAME",
    "ContractSpec",
    "Faults",
    "RecordedRequest",
    "SimRejected",
    "Simulator",
    "default_accounts",
]

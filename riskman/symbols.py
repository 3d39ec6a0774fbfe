"""Contract ids and symbol roots: the gateway's roots, the tickers traders know, and the root of
a contract id. Standard library only: the configuration, the models and the screens use it.
"""

from __future__ import annotations

import functools

# --- contract ids and symbols ---------------------------------------------------------------

# ProjectX roots differ from the exchange tickers for several products (PROJECTX_API.md §4.2).
TICKER_TO_ROOT: dict[str, str] = {
    "ES": "EP",
    "NQ": "ENQ",
    "CL": "CLE",
    "MCL": "MCLE",
    "GC": "GCE",
    "SI": "SIE",
    "HG": "CPE",
    "NG": "NGE",
}
ROOT_TO_TICKER: dict[str, str] = {root: ticker for ticker, root in TICKER_TO_ROOT.items()}


def normalize_root(symbol: str) -> str:
    """Canonical (gateway) root for a symbol written either way: `es`, `ES`, `EP` -> `EP`."""
    upper = symbol.strip().upper()
    return TICKER_TO_ROOT.get(upper, upper)


def display_symbol(root: str) -> str:
    """The ticker a trader knows for a gateway root: `EP` -> `ES`."""
    return ROOT_TO_TICKER.get(root, root)


@functools.lru_cache(maxsize=4096)
def root_of(contract_id: str) -> str:
    """Symbol root of a contract id (`CON.F.US.EP.Z26` -> `EP`) or symbol id (`F.US.EP`).

    Memoized: the rules ask for roots a dozen times per event, and a trader's contract ids
    are a handful of strings.
    """
    parts = contract_id.split(".")
    if parts and parts[0] == "CON" and len(parts) >= 5:
        return parts[-2].upper()
    if len(parts) >= 3 and parts[0] == "F":
        return parts[2].upper()
    if len(parts) >= 2:
        return parts[-2].upper()
    return contract_id.upper()

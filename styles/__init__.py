"""Textual CSS of the trader terminal (`riskman.tcss`)."""

from pathlib import Path

STYLES = Path(__file__).resolve().parent
APP_CSS = STYLES / "riskman.tcss"

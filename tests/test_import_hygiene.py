"""The engine and the headless entry never load Textual (STYLE.md: the split)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded(module: str, roots: set[str]) -> list[str]:
    code = (
        f"import sys, {module}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {roots!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [name for name in result.stdout.strip().split(",") if name]


@pytest.mark.parametrize("module", ["riskman.engine.engine", "riskman.rules"])
def test_engine_loads_neither_textual_nor_rich(module: str) -> None:
    assert _loaded(module, {"textual", "rich"}) == []


@pytest.mark.parametrize("module", ["riskman.headless", "riskman.cli"])
def test_headless_entry_does_not_load_textual(module: str) -> None:
    # (httpx loads rich for its own command line when rich is installed; that is not ours.)
    assert _loaded(module, {"textual", "widgets", "styles"}) == []

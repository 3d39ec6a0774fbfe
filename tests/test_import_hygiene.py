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


def test_views_load_only_the_standard_library() -> None:
    # The read-only views are what a screen or an attached client imports: nothing of riskman
    # beyond the views, the gateway's enums and the lock types, and no third-party package at all.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import riskman.core.views\n"
        "new = sorted(set(sys.modules) - before)\n"
        "print(','.join(new))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    new = [name for name in result.stdout.strip().split(",") if name]
    ours = {name for name in new if name.split(".")[0] == "riskman"}
    assert ours == {
        "riskman",
        "riskman.core",
        "riskman.core.views",
        "riskman.core.enums",
        "riskman.core.locks",
    }
    stdlib = set(sys.stdlib_module_names)
    foreign = [name for name in new if name.split(".")[0] not in stdlib | {"riskman"}]
    assert foreign == []


def test_rules_load_no_engine_module() -> None:
    # The rules see the engine only through the leaf's query protocols.
    loaded = _loaded("riskman.rules", {"riskman"})
    assert "riskman.rules.max_contracts" in loaded
    assert [name for name in loaded if name.startswith("riskman.engine")] == []

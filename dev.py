#!/usr/bin/env python3
"""Set up riskman in a local virtualenv and run it, its tests or its benchmarks.

Usage:
    python3 dev.py demo            # the trader terminal on the embedded simulator
    python3 dev.py test [ARGS...]  # the whole test suite (ARGS go to pytest)
    python3 dev.py lint            # ruff, ruff format --check, mypy --strict, the layer contract
    python3 dev.py bench [NAME]    # the benchmarks (see benchmarks/README.md)
    python3 dev.py riskman ARGS    # any riskman command, e.g. `riskman sim`

Needs only Python 3.11+. The virtualenv lives in .venv beside this file and is
(re)installed whenever pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".riskman-stamp"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _python() -> Path:
    return BIN / ("python.exe" if os.name == "nt" else "python")


def ensure_venv(extras: tuple[str, ...] = ("test",)) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 the user has
        sys.exit(f"riskman needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not _python().exists():
        print(f"dev.py: creating virtualenv {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    # The stamp: the pyproject.toml digest, then the extras installed with it ("test" alone
    # when none are named, as older stamps were).
    stamp = STAMP.read_text().split() if STAMP.exists() else []
    have = set(stamp[1:] or ["test"]) if stamp and stamp[0] == digest else set()
    if set(extras) <= have:
        return
    wanted = sorted(have | set(extras))
    print(f"dev.py: installing riskman and its {', '.join(wanted)} tools into .venv", flush=True)
    cmd = [
        str(_python()),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-e",
        f"{ROOT}[{','.join(wanted)}]",
    ]
    if subprocess.call(cmd) != 0:
        sys.exit("dev.py: installation failed (see the pip output above)")
    STAMP.write_text(" ".join([digest, *wanted]))


def run(args: list[str]) -> int:
    return subprocess.call(args, cwd=ROOT)


_LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"
LINTS = (
    ("ruff check", ["-m", "ruff", "check", "."]),
    ("ruff format --check", ["-m", "ruff", "format", "--check", "."]),
    ("mypy --strict", ["-m", "mypy", "-p", "riskman", "-p", "widgets", "-p", "styles"]),
    ("import layers (lint-imports)", ["-c", _LINT_IMPORTS, "--no-cache"]),
)


def lint() -> int:
    """Every check, each reported; fails if any failed."""
    failed = []
    for name, args in LINTS:
        print(f"dev.py lint: {name}", flush=True)
        if run([str(_python()), *args]) != 0:
            failed.append(name)
    if failed:
        print(f"dev.py lint: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("dev.py lint: all checks passed")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    # Each command's tools: the checkers for `lint`, the benchmarks' extras for `bench`.
    extras = {"bench": ("test", "bench"), "lint": ("test", "lint")}
    ensure_venv(extras.get(command, ("test",)))
    if command == "demo":
        return run([str(BIN / "riskman"), "demo", *rest])
    if command == "riskman":
        return run([str(BIN / "riskman"), *rest])
    if command == "test":
        code = run([str(_python()), "-m", "pytest", *rest])
        if code == 5:  # pytest: no tests collected
            print("dev.py: no tests were collected")
            return 0
        return code
    if command == "lint":
        return lint()
    if command == "bench":
        return run([str(_python()), "-m", "benchmarks", *rest])
    print(f"dev.py: unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Fixtures of the reliability tests: the end-to-end harness (the real simulator, client and
engine: tests/e2e/conftest.py) and a multiprocessing fork server for the processes that get
killed."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import make_runtime, sim

__all__ = ["forkserver", "make_runtime", "sim"]


@pytest.fixture(scope="session")
def forkserver() -> Iterator[Any]:
    """A fork server that has imported riskman once: each killed process then starts in
    milliseconds instead of paying for a fresh interpreter."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.reliability.crash_worker"])
    yield context

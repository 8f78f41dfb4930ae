"""The suite's pytest plugin: measurements the checks record, kept per test for the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

MEASUREMENTS = pytest.StashKey[dict[str, dict[str, Any]]]()

Record = Callable[..., None]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[MEASUREMENTS] = {}


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """record(name, value, unit=""): a figure of this check (a number, a list of numbers, or a mapping),
    shown in the report; well-known names get plots: cold_ms and warm_ms (lists of latencies),
    eviction_timeline (a list of {"t_s", "model", "state"}), models_per_pod (pod -> count)."""
    store = request.config.stash[MEASUREMENTS].setdefault(request.node.nodeid, {})

    def add(name: str, value: Any, unit: str = "") -> None:
        store[name] = {"value": value, "unit": unit}

    return add

"""Every `make test` run ends with each tier's time: CI stops at 90 minutes, and a tier that grows shows here first.
A plugin of this repository's pytest configuration (pyproject's addopts `-p tests.tier_times`), so that the suite's
own runs (`mmgitops conform`, which reads no configuration) never load it.

A tier is the test's folder under tests/ (static, unit, mesh, reference, integration, package), or `conformance`
for the suite's own checks (tools/mmgitops/conformance/checks). Its time is the sum of its tests' setup, call and
teardown, which is its wall time: the tiers run one after another.
"""

from __future__ import annotations

from typing import Any

import pytest


def tier(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if parts[0] == "tests" and len(parts) > 2 else "conformance"


class TierTimes:
    """Registered per run: pytest_runtest_logreport gets no config to keep the times in."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = tier(report.nodeid)
        self.seconds[name] = self.seconds.get(name, 0.0) + report.duration

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.seconds:
            return
        parts = [f"{name} {seconds / 60:.1f} min" if seconds >= 60 else f"{name} {seconds:.0f} s"
                 for name, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])]
        terminalreporter.write_sep("-", "time per tier")
        terminalreporter.write_line(f"{' | '.join(parts)} | total {sum(self.seconds.values()) / 60:.1f} min")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(TierTimes(), "mmgitops-tier-times")

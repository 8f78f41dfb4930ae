"""Shared fixtures: the repository root, and the CLI run in-process with its output captured; and for every run, what
it will do and build and how long that takes (at the start), its lanes when run in two, and each tier's time (at the
end: CI stops at 90 minutes, and a tier that grows shows there first).

In-process, an exception escaping `main()` propagates into the test: it never prints a Traceback, so a test
about the process contract (exit code, one line on stderr, no Traceback) runs `mmgitops` as a subprocess
(`mmgitops_process`), and an in-process test asserts `Run.returned`: `main()` returned its exit code."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mmgitops.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    code: int
    out: str
    err: str
    returned: bool = True  # False: main() raised SystemExit (argparse refusing an option) instead of returning

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def at_repo_root() -> Iterator[None]:
    # Findings name files relative to the working directory, as a user at the repo root sees them.
    before = Path.cwd()
    os.chdir(ROOT)
    yield
    os.chdir(before)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    def run(*args: str) -> Run:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse refuses a bad option by exiting
            # As the interpreter reads it: None is 0, an int is the code, anything else is printed and is 1.
            captured = capsys.readouterr()
            if exit_.code is None or isinstance(exit_.code, int):
                return Run(exit_.code or 0, captured.out, captured.err, returned=False)
            return Run(1, captured.out, f"{captured.err}{exit_.code}\n", returned=False)
        assert isinstance(code, int), f"main({list(args)}) returned {code!r}, not an exit code"
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)
    return run


@pytest.fixture
def mmgitops_process() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`python -m mmgitops ARGS` from the repository root, as a user runs it: exit code, stdout, stderr."""
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mmgitops", *args], cwd=ROOT, capture_output=True, text=True,
                              env=None if env is None else {**os.environ, **env}, timeout=timeout)
    return run


# ---- the run's plan, its two lanes and the time per tier ----------------------------------------------------------
# A tier is the test's folder under tests/ (static, unit, mesh, reference, integration, package), or `conformance` for
# the suite's own checks (tools/mmgitops/conformance/checks). The suite's own runs (`mmgitops conform`) never load
# this file.
TIERS = ("static", "unit", "conformance", "mesh", "reference", "package", "integration")
# `make test` (pytest-xdist, `-n 2`; LANES=1 for one) runs two lanes side by side: the integration tier's clusters and
# the reference pods, and the other tiers; 27 min wall here instead of 38, since most of each lane's time is waiting
# (for loads, churn ages, reconciles, Argo CD). A lane runs whole in one worker process, so that its session fixtures
# (the shared cluster, the suite's mesh) start once: RepoRun hands xdist a scheduler whose scope is the lane.
LANES = {"integration": "heavy", "reference": "heavy"}
FULL_RUN = "make test"  # its key in the lab's timings (mmgitops.lab.binaries.BUILD_TIMES): the next run's estimate


def tier(nodeid: str) -> str:
    parts = nodeid.split("/")
    return parts[1] if parts[0] == "tests" and len(parts) > 2 else "conformance"


class RepoRun:
    """Registered per run, as a plugin object: a conftest's own hooks would see only the tests under tests/, and the
    suite's checks under tools/ are a tier too."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.monotonic()

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """What the run does first and how long it takes, from this machine's last full run and builds."""
        from mmgitops.lab import binaries, builds

        lanes = config.getoption("numprocesses", default=None)
        how = "in two lanes side by side (integration and reference | the others)" if lanes else "one after another"
        last = binaries.last_build_s(FULL_RUN)
        usual = f"the last full run here took {last / 60:.0f} min" if last is not None else "no full run here yet"
        built = builds.summary(builds.pending("cluster", "reference", "luahealth"))
        return [f"tiers: {', '.join(TIERS)}, {how}; {usual}"] + ([built] if built else [])

    @pytest.hookimpl(tryfirst=True, optionalhook=True)  # a hook of pytest-xdist, when it runs the session
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        # Not --dist loadgroup: it marks a test's group in its node id, which pytest 9 no longer lets a plugin change.
        from xdist.scheduler import LoadScopeScheduling

        class ByLane(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return LANES.get(tier(nodeid), "others")

        return ByLane(config, log)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = tier(report.nodeid)
        self.seconds[name] = self.seconds.get(name, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from mmgitops.lab import binaries

        if exitstatus == 0 and set(self.seconds) == set(TIERS) and not hasattr(session.config, "workerinput"):
            binaries.record_build(FULL_RUN, time.monotonic() - self.started)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.seconds:
            return
        parts = [f"{name} {seconds / 60:.1f} min" if seconds >= 60 else f"{name} {seconds:.0f} s"
                 for name, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])]
        terminalreporter.write_sep("-", "time per tier")
        terminalreporter.write_line(f"{' | '.join(parts)} | sum {sum(self.seconds.values()) / 60:.1f} min, "
                                    f"wall {(time.monotonic() - self.started) / 60:.1f} min")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(RepoRun(), "mmgitops-repo-run")

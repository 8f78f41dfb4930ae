"""The suite's pytest plugin (entry point `pytest11`): its options, its settings, its fixtures, the order of its
groups, and the measurements the checks record, kept per test for the report.

`pytest --pyargs mmgitops.conformance.checks [options]` runs the suite wherever mmgitops is installed (`mmgitops
conform` does that). Every pytest run in such an environment loads this module, so it imports only the standard
library, pytest and the suite's own settings at the top; the fixtures come only with the `conformance` extra, and
load their clients when a check asks for them.

With `--conformance-report DIR` it writes DIR/results.json (and DIR/report.html from it) at the end of the
session; whenever conformance checks ran it prints a per-group summary table after pytest's own summary.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mmgitops.conformance import settings, verdict
from mmgitops.conformance.groups import GROUPS, RUN_ORDER
from mmgitops.errors import Forbidden

MEASUREMENTS = pytest.StashKey[dict[str, dict[str, Any]]]()
RESULTS = pytest.StashKey[dict[str, dict[str, Any]]]()
GROUP_OF = pytest.StashKey[dict[str, str]]()
STARTED = pytest.StashKey[float]()
MISSING = pytest.StashKey[str]()
CHECKS_DIR = str(Path(__file__).resolve().parent / "checks")
# What the run ran on, as the session's target describes it (engine, reference commit, cluster server...).
TARGET_INFO = pytest.StashKey[dict[str, str]]()

SCHEMA = 1

Record = Callable[..., None]
TestStatus = tuple[str, str, tuple[str, dict[str, bool]]]  # category, letter, (word, markup)


def pytest_addoption(parser: pytest.Parser) -> None:
    settings.add_options(parser)
    parser.getgroup("conformance").addoption(
        "--conformance-report", dest="conformance_report", metavar="DIR", default=None,
        help="write DIR/results.json and DIR/report.html at the end of the session")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[settings.SETTINGS] = settings.from_config(config)
    for name, text in GROUPS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        from mmgitops.conformance import fixtures
    except ImportError as error:
        # A base install has no clients for the checks: pytest still runs a user's own tests, and the checks say
        # what is missing if they are collected.
        config.stash[MISSING] = f"{error}: the conformance checks need `pip install 'mmgitops[conformance]'`"
    else:
        if not config.pluginmanager.is_registered(fixtures):
            config.pluginmanager.register(fixtures, "mmgitops-conformance-fixtures")
    config.stash[MEASUREMENTS] = {}
    config.stash[RESULTS] = {}
    config.stash[GROUP_OF] = {}
    config.stash[STARTED] = time.time()
    config.stash[TARGET_INFO] = {}
    config.pluginmanager.register(_Outcomes(config), "conformance-outcomes")


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Record:
    """record(name, value, unit=""): a figure of this check (a number, a list of numbers, or a mapping),
    shown in the report; well-known names get plots: cold_ms and warm_ms (lists of latencies),
    eviction_timeline (a list of {"t_s", "model", "state"}), models_per_pod (pod -> count)."""
    store = request.config.stash[MEASUREMENTS].setdefault(request.node.nodeid, {})

    def add(name: str, value: Any, unit: str = "") -> None:
        store[name] = {"value": value, "unit": unit}

    return add


def group_of(item: pytest.Item) -> str:
    names = {mark.name for mark in item.iter_markers()}
    for group in GROUPS:
        if group in names:
            return group
    stem = item.path.stem.removeprefix("test_")
    # An unmarked module named like a group (tests/mesh/test_eviction.py) is not that group.
    return f"{item.path.parent.name}/{stem}" if stem in GROUPS else stem


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> None:
    if MISSING in parent.config.stash and str(file_path).startswith(CHECKS_DIR):
        pytest.exit(parent.config.stash[MISSING], returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Markers are read here, where the items are, because reports carry only keywords.
    config.stash[GROUP_OF].update({item.nodeid: group_of(item) for item in items})
    # A stable sort: checks of one group keep their order in the module; other tests keep theirs, after the suite's.
    items.sort(key=lambda item: RUN_ORDER.index(group) if (group := config.stash[GROUP_OF][item.nodeid]) in RUN_ORDER
               else len(RUN_ORDER))


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).splitlines()[0][:300] if crash.message else ""
    if isinstance(report.longrepr, tuple):  # a skip: (file, line, reason)
        return str(report.longrepr[2]).removeprefix("Skipped: ").removeprefix(verdict.PREFIX)
    return str(report.longrepr or "").strip().splitlines()[-1][:300] if report.longrepr else ""


class _Outcomes:
    """Registered per config: pytest_runtest_logreport gets no config of its own to keep results in."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.forbidden = ""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        if call.excinfo is not None and call.excinfo.errisinstance(verdict.NotReached):
            outcome.get_result().not_reached = True
        # A call the API server refuses the runner fails every check after it the same way: stop, exit 2, one line.
        if call.excinfo is not None and isinstance(call.excinfo.value, Forbidden) and not self.forbidden:
            self.forbidden = str(call.excinfo.value)
            item.session.shouldstop = f"forbidden: {self.forbidden}"

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.forbidden:
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
        elif session.exitstatus == pytest.ExitCode.OK and any(
                t["outcome"] == verdict.NOT_REACHED for t in self.config.stash[RESULTS].values()):
            session.exitstatus = verdict.INCOMPLETE  # a check not reached: not certified, though none failed

    def pytest_report_teststatus(self, report: pytest.TestReport) -> TestStatus | None:
        if getattr(report, "not_reached", False) and report.skipped:
            return verdict.NOT_REACHED, "N", ("NOT REACHED", {"yellow": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.config.stash[RESULTS].setdefault(report.nodeid, {
            "nodeid": report.nodeid, "group": self.config.stash[GROUP_OF].get(report.nodeid, ""),
            "outcome": "passed", "duration_s": 0.0, "call_s": 0.0, "skip_reason": "", "message": ""})
        # duration_s also counts fixtures: a module's first and last checks carry its setup and teardown.
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        if report.when == "call":
            entry["call_s"] = round(report.duration, 3)
        if hasattr(report, "wasxfail"):
            entry["outcome"] = "xfailed" if report.skipped else "xpassed"
            entry["message"] = str(report.wasxfail)
        elif report.skipped:
            entry["outcome"] = verdict.NOT_REACHED if getattr(report, "not_reached", False) else "skipped"
            entry["skip_reason"] = _message(report)
        elif report.failed:
            # A failing setup or teardown is an error of the check's environment, not a failed check.
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = entry["message"] or _message(report)


def results(config: pytest.Config, exitstatus: int = 0) -> dict[str, Any]:
    figures = config.stash[MEASUREMENTS]
    tests = [{**entry, "figures": figures.get(nodeid, {})} for nodeid, entry in config.stash[RESULTS].items()]
    counts: dict[str, int] = {}
    for test in tests:
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    word, line = verdict.verdict(t for t in tests if t["group"] in GROUPS)
    return {"schema": SCHEMA, "verdict": word, "verdict_line": line,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(config.stash[STARTED])),
            "duration_s": round(time.time() - config.stash[STARTED], 1), "exitstatus": int(exitstatus),
            "options": {"target": config.stash[settings.SETTINGS].target,
                        "endpoint": config.stash[settings.SETTINGS].endpoint,
                        "markexpr": str(config.getoption("markexpr", default="") or "")},
            "target": dict(config.stash[TARGET_INFO]),
            "counts": counts, "tests": tests}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # After junitxml's own sessionfinish has written the file.
    junit = session.config.getoption("xmlpath", default=None)
    missed = [n for n, t in session.config.stash[RESULTS].items() if t["outcome"] == verdict.NOT_REACHED]
    if junit and missed and Path(junit).is_file():
        verdict.mark_junit(Path(junit), missed)
    where = session.config.getoption("conformance_report", default=None)
    if not where:
        return
    from mmgitops.conformance import report

    out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    # session.exitstatus, not the argument: the outcomes' hook above may have made it INCOMPLETE.
    (out / "results.json").write_text(json.dumps(results(session.config, session.exitstatus), indent=2,
                                                 default=str), encoding="utf-8")
    report.render(out)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    # Every pytest run in the repository loads this plugin: the table has the conformance checks alone, and a
    # run without any gets none.
    tests = [t for t in results(config)["tests"] if t["group"] in GROUPS]
    if not tests:
        return
    from rich.console import Console

    from mmgitops.conformance import report

    buffer = io.StringIO()
    console = Console(file=buffer, width=terminalreporter._tw.fullwidth, force_terminal=terminalreporter.hasmarkup)
    console.print(report.summary_table(tests))
    terminalreporter.write_sep("=", "conformance summary")
    terminalreporter.write(buffer.getvalue())
    where = config.getoption("conformance_report", default=None)
    if where:
        terminalreporter.write_line(f"report: {Path(where) / 'report.html'}")
    word, line = verdict.verdict(tests)
    terminalreporter.write_line(f"conformance: {line}", bold=True, green=word == verdict.CERTIFIED,
                                red=word == verdict.FAILED, yellow=word == verdict.INCOMPLETE_WORD)

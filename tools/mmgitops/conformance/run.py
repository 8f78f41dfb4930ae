"""`mmgitops conform`: the conformance suite (the installed `mmgitops.conformance.checks`) run as pytest.

pytest runs as a child of this same interpreter: the suite's fixtures start subprocesses and keep module
state of their own, which an in-process pytest.main would share with the CLI. The child runs in a session of its
own, so that Ctrl-C reaches this process alone: it passes one SIGINT on and waits while the suite tears down what
it started, instead of the terminal interrupting the suite's teardown subprocesses too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import pytest

from mmgitops.conformance import settings, verdict
from mmgitops.conformance.settings import Settings
from mmgitops.errors import ToolError

SUITE = "mmgitops.conformance.checks"
# pytest's exit codes as the CLI's: 0 certified, 1 failed checks, 3 checks not reached (none failed), 130 interrupted,
# 2 for the rest (usage, internal).
PYTEST_TO_EXIT = {0: 0, 1: 1, 2: 130, verdict.INCOMPLETE: verdict.INCOMPLETE_CLI}
VERDICTS = {0: "certified: every applicable check passed", 1: "failed: a check failed",
            verdict.INCOMPLETE_CLI: "incomplete: checks not reached (listed above), none failed"}
NO_TESTS_COLLECTED = 5


# The suite's options `mmgitops conform` passes on, by dest name (settings.Settings); None or "" is "not given".
Flags = dict[str, object]


def suite_dir() -> Path:
    return Path(str(resources.files(SUITE)))


def pytest_args(flags: Flags, report: Path | None = None, markexpr: str = "", extra: Sequence[str] = ()) -> list[str]:
    # The checks' package is the rootdir and no ini file or conftest.py is read: a run gives the same node ids
    # wherever the package is installed, and a pytest configuration in the user's directory (pytest also loads
    # ./test*/conftest.py) does not change the suite.
    args = ["--pyargs", SUITE, "--rootdir", str(suite_dir().parent), "-c", os.devnull, "-p", "no:cacheprovider",
            "--noconftest"]
    for name, value in flags.items():
        if value is not None:  # "" as given: the suite's settings refuse an empty endpoint
            args += [f"--{name.replace('_', '-')}", str(value)]
    if markexpr:
        args += ["-m", markexpr]
    if report:
        args += ["--junitxml", str(report.resolve() / "junit.xml"), "--conformance-report", str(report.resolve())]
    return [*args, *extra]


def check(flags: Flags) -> Settings:
    """The suite's own Settings check, before pytest starts: a bad flag is one line of this CLI's, and exit 2."""
    try:
        return settings.from_values(flags)
    except pytest.UsageError as error:
        raise ToolError(str(error)) from None


def preflight(chosen: Settings) -> None:
    """What would stop the run at its first fixture, found before pytest starts so that it is one line and exit 2:
    a storage-config without the storage to use, a cluster that does not answer, endpoints that do not."""
    from mmgitops.conformance import mesh_target, staging

    if chosen.storage_config is not None:
        staging.choose(chosen.storage_config, chosen.storage_key)
    if chosen.cluster:
        from mmgitops.conformance.cluster import session

        session.api_client(chosen.kubeconfig, chosen.context)
    if chosen.given_pods:
        pods = [*mesh_target.given_pods(chosen.endpoint), *(mesh_target.given_pods(chosen.gpu_endpoint)
                                                             if chosen.gpu_endpoint else [])]
        unreachable = mesh_target.unreachable(pods)
        if unreachable:
            raise ToolError(f"--endpoint: nothing answers at {', '.join(unreachable)}")


def writable(report: Path) -> None:
    """The report directory, made and written to once before the run: a run of minutes must not end unable to keep
    its results."""
    if report.exists() and not report.is_dir():
        raise ToolError(f"--report {report}: not a directory")
    try:
        report.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=report):
            pass
    except OSError as error:
        raise ToolError(f"--report {report}: cannot write there: {error.strerror or error}") from None


def run(flags: Flags, report: Path | None = None, markexpr: str = "", extra: Sequence[str] = (),
        notice: Callable[[str], None] = lambda _: None) -> int:
    preflight(check(flags))
    if report:
        writable(report)
    code = run_pytest(pytest_args(flags, report, markexpr, extra), notice)
    if code == NO_TESTS_COLLECTED:
        raise ToolError(f"no conformance check matched{f' -m {markexpr!r}' if markexpr else ''}")
    exit_code = PYTEST_TO_EXIT.get(code, 2)
    if exit_code in VERDICTS:
        notice(f"{VERDICTS[exit_code]} (exit {exit_code})")
    return exit_code


def run_pytest(args: Sequence[str], notice: Callable[[str], None], cwd: Path | None = None) -> int:
    """pytest's exit code. On Ctrl-C, the suite gets one SIGINT per Ctrl-C and is waited for: its teardown stops
    every process and removes every object the run started."""
    child = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=cwd, start_new_session=True)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            notice("interrupted: the suite is removing what it started (Ctrl-C again interrupts that too)")
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGINT)

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mmgitops.errors import ToolError

SUITE = "mmgitops.conformance.checks"
# pytest's exit codes as the CLI's: 0 clean, 1 failed checks, 130 interrupted, 2 for the rest (usage, internal).
PYTEST_TO_EXIT = {0: 0, 1: 1, 2: 130}
NO_TESTS_COLLECTED = 5


@dataclass
class Options:
    """The flags `mmgitops conform` passes on; None and "" mean "not given", so the suite's Settings apply its
    defaults and refuse flags given for another mode."""

    target: str | None = None
    endpoint: str = ""
    engine: str | None = None
    gpu_endpoint: str = ""
    rest_port: int | None = None
    metrics_port: int | None = None
    probe_port: int | None = None
    kill_command: str = ""
    report: Path | None = None
    markexpr: str = ""
    kubeconfig: str | None = None
    context: str | None = None
    storage_config: Path | None = None
    storage_key: str | None = None
    resolver: str | None = None
    min_churn_age_ms: int | None = None
    extra: list[str] = field(default_factory=list)


PASSED_ON = ("target", "endpoint", "engine", "gpu_endpoint", "rest_port", "metrics_port", "probe_port",
             "kill_command", "kubeconfig", "context", "storage_config", "storage_key", "resolver", "min_churn_age_ms")


def suite_dir() -> Path:
    return Path(str(resources.files(SUITE)))


def pytest_args(options: Options) -> list[str]:
    # The checks' package is the rootdir and no ini file is read: a run gives the same node ids wherever the
    # package is installed, and a pytest configuration in the user's directory does not change the suite.
    args = ["--pyargs", SUITE, "--rootdir", str(suite_dir().parent), "-c", os.devnull, "-p", "no:cacheprovider"]
    for name in PASSED_ON:
        value = getattr(options, name)
        if value not in (None, ""):
            args += [f"--{name.replace('_', '-')}", str(value)]
    if options.markexpr:
        args += ["-m", options.markexpr]
    if options.report:
        report = options.report.resolve()
        args += ["--junitxml", str(report / "junit.xml"), "--conformance-report", str(report)]
    return [*args, *options.extra]


def check(options: Options) -> None:
    """The suite's own Settings check, before pytest starts: a bad flag is one line of this CLI's, and exit 2."""
    import pytest

    from mmgitops.conformance import settings

    try:
        settings.from_values({name: getattr(options, name) for name in PASSED_ON})
    except pytest.UsageError as error:
        raise ToolError(str(error)) from None


def run(options: Options, notice: Callable[[str], None] = lambda _: None) -> int:
    check(options)
    if options.report:
        if options.report.exists() and not options.report.is_dir():
            raise ToolError(f"--report {options.report}: not a directory")
        options.report.mkdir(parents=True, exist_ok=True)
    code = run_pytest(pytest_args(options), notice)
    if code == NO_TESTS_COLLECTED:
        raise ToolError(f"no conformance check matched{f' -m {options.markexpr!r}' if options.markexpr else ''}")
    return PYTEST_TO_EXIT.get(code, 2)


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

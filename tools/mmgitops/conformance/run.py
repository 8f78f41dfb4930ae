"""`mmgitops conform`: the conformance suite run as pytest, and the cleanup of what interrupted runs left.

pytest runs as a child of this same interpreter: the suite's fixtures start subprocesses and keep module
state of their own, which an in-process pytest.main would share with the CLI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmgitops.errors import ToolError

SUITE = Path("tests") / "conformance"
# The suite names its embedded meshes conf-, gpu- and res-<6 hex of the run> (tests/conformance/); a mesh of
# any other name is a user's and is never touched.
LEFTOVER = re.compile(r"mesh-((?:conf|gpu|res)-[0-9a-f]{6})")
# pytest's exit codes (pytest.ExitCode) as the CLI's: 0 clean, 1 failed checks, 2 usage or environment error.
PYTEST_TO_EXIT = {0: 0, 1: 1}


@dataclass
class Options:
    target: str = "mesh"
    endpoint: str = ""
    engine: str = "embedded"
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
    resolver: str = "port-forward"
    extra: list[str] = field(default_factory=list)


def suite_root(candidates: Sequence[Path]) -> Path:
    """The checkout holding tests/conformance: the suite is not part of the installed package."""
    for root in candidates:
        if (root / SUITE).is_dir():
            return root
    raise ToolError(f"cannot find {SUITE}: run mmgitops conform from the mmgitops repository")


CLUSTER_ONLY = ("kubeconfig", "context")
ENDPOINT_ONLY = ("gpu_endpoint", "rest_port", "metrics_port", "probe_port", "kill_command")


def _flags(options: Options, names: Sequence[str]) -> list[str]:
    return [f"--{name.replace('_', '-')}" for name in names if getattr(options, name)]


def _refuse(flags: list[str], who: str) -> None:
    if flags:
        raise ToolError(f"{', '.join(flags)}: for {who} only")


def _storage_args(options: Options, needed_by: str) -> list[str]:
    """Checked here, before pytest starts, so a bad file or key is one line and exit 2."""
    from mmgitops.conformance import staging

    if options.storage_config is None:
        raise ToolError(f"{needed_by} needs --storage-config FILE: an S3 storage the pods can pull from")
    key, _ = staging.choose(options.storage_config, options.storage_key)
    return ["--storage-config", str(options.storage_config.resolve()), "--storage-key", key]


def _cluster_args(options: Options) -> list[str]:
    """Checked here, before pytest starts, so a bad flag or an unreachable cluster is one line and exit 2."""
    from mmgitops.conformance.cluster import session

    if options.endpoint:
        raise ToolError("--endpoint: only --target mesh takes endpoints; a cluster's pods are found by the API")
    _refuse(_flags(options, ENDPOINT_ONLY), "--endpoint")
    args = _storage_args(options, "--target cluster")
    session.api_client(options.kubeconfig, options.context)
    args += ["--resolver", options.resolver]
    for flag, value in (("--kubeconfig", options.kubeconfig), ("--context", options.context)):
        if value:
            args += [flag, str(Path(value).resolve()) if flag == "--kubeconfig" else value]
    return args


def _endpoint_args(options: Options) -> list[str]:
    from mmgitops.conformance import mesh_target

    _refuse(_flags(options, CLUSTER_ONLY), "--target cluster")
    if options.engine != "embedded":
        raise ToolError("--engine: the suite starts no local mesh when --endpoint names the pods")
    pods = mesh_target.given_pods(options.endpoint)
    args = ["--endpoint", options.endpoint, *_storage_args(options, "--endpoint")]
    if options.gpu_endpoint:
        pods += mesh_target.given_pods(options.gpu_endpoint)
        args += ["--gpu-endpoint", options.gpu_endpoint]
    for name in ("rest_port", "metrics_port", "probe_port"):
        if getattr(options, name) is not None:
            args += [f"--{name.replace('_', '-')}", str(getattr(options, name))]
    if options.kill_command:
        args += ["--kill-command", options.kill_command]
    unreachable = mesh_target.unreachable(pods)
    if unreachable:
        raise ToolError(f"--endpoint: nothing answers at {', '.join(unreachable)}")
    return args


def pytest_args(options: Options) -> list[str]:
    args = [str(SUITE), "--target", options.target]
    if options.target == "cluster":
        args += _cluster_args(options)
    elif options.endpoint:
        args += _endpoint_args(options)
    else:
        _refuse(_flags(options, CLUSTER_ONLY), "--target cluster")
        _refuse(_flags(options, ("storage_config", "storage_key")), "--target cluster and --endpoint")
        _refuse(_flags(options, ENDPOINT_ONLY), "--endpoint")
        args += ["--engine", options.engine]
    if options.markexpr:
        args += ["-m", options.markexpr]
    if options.report:
        report = options.report.resolve()
        args += ["--junitxml", str(report / "junit.xml"), "--conformance-report", str(report)]
    return [*args, *options.extra]


def run(options: Options, root: Path) -> int:
    args = pytest_args(options)
    if options.report:
        if options.report.exists() and not options.report.is_dir():
            raise ToolError(f"--report {options.report}: not a directory")
        options.report.mkdir(parents=True, exist_ok=True)
    code = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=root).returncode
    if code == 5:  # pytest.ExitCode.NO_TESTS_COLLECTED
        raise ToolError(f"no conformance check matched{f' -m {options.markexpr!r}' if options.markexpr else ''}")
    return PYTEST_TO_EXIT.get(code, 2)

"""The suite's options become one frozen Settings, and a bad value or combination is a usage error before any
check runs: as pytest's UsageError in the plugin, as one line and exit 2 from `mmgitops conform`."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mmgitops.conformance import settings

pytestmark = pytest.mark.unit


def chosen(**given: object) -> settings.Settings:
    return settings.from_values(given)


@pytest.fixture
def storage(tmp_path: Path) -> str:
    path = tmp_path / "storage-config.json"
    path.write_text("{}")
    return str(path)


def test_no_options_give_the_local_mesh_defaults() -> None:
    got = chosen()
    assert (got.target, got.engine, got.cluster, got.given_pods, got.external) == ("mesh", "embedded", False, False,
                                                                                  False)
    assert got.min_churn_age_ms == settings.EMBEDDED_CHURN_MS


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        chosen().target = "cluster"  # type: ignore[misc]


def test_endpoints_and_their_flags_are_kept(storage: str) -> None:
    got = chosen(endpoint="pod-a-123456789012=127.0.0.1:8033", storage_config=storage, metrics_port=9000,
                 kill_command="kill {pod}")
    assert got.given_pods and got.external and got.metrics_port == 9000 and got.kill_command == "kill {pod}"
    assert got.storage_config == Path(storage).resolve()


@pytest.mark.parametrize(("given", "message"), [
    ({"target": "cluster"}, "--target cluster needs --storage-config FILE"),
    ({"target": "cluster", "storage_config": "X", "endpoint": "p=h:1"}, "--endpoint: only --target mesh"),
    ({"target": "cluster", "storage_config": "X", "kill_command": "k"}, "--kill-command: for --endpoint only"),
    ({"target": "cluster", "storage_config": "X", "engine": "reference"}, "--engine: for --target mesh without"),
    ({"endpoint": "p=h:1"}, "--endpoint needs --storage-config FILE"),
    ({"endpoint": "p=h:1", "storage_config": "X", "kubeconfig": "k"}, "--kubeconfig: for --target cluster only"),
    ({"endpoint": "p=h:1", "storage_config": "X", "engine": "reference"}, "--engine: for --target mesh without"),
    ({"endpoint": "h:1", "storage_config": "X"}, "--endpoint h:1: expected POD=HOST:PORT"),
    ({"endpoint": "p=h:1", "storage_config": "X", "gpu_endpoint": "p=h"}, "--gpu-endpoint p=h: expected"),
    ({"storage_config": "X"}, "--storage-config: for --target cluster and --endpoint only"),
    ({"gpu_endpoint": "p=h:1"}, "--gpu-endpoint: for --endpoint only"),
    ({"resolver": "annotation"}, "--resolver: for --target cluster only"),
    ({"cold_loads": 3}, "--cold-loads 3: must be at least 10"),
    ({"packing_models": 1}, "--packing-models 1: must be at least 2"),
    ({"endpoint": "p=h:1", "storage_config": "/nonexistent/storage.json"}, "--storage-config /nonexistent/storage"),
    ({"endpoint": ""}, "--endpoint: empty; give POD=HOST:PORT"),
    ({"endpoint": "p=h:1", "storage_config": "X", "gpu_endpoint": ""}, "--gpu-endpoint: empty"),
    ({"cold_budget_ms": float("nan")}, "--cold-budget-ms nan: not a finite number"),
    ({"cold_budget_ms": float("inf")}, "--cold-budget-ms inf: not a finite number"),
    ({"cold_budget_ms": 1e20}, "--cold-budget-ms 1e+20: must be at most 3.6e+06"),
])
def test_a_bad_combination_is_a_usage_error(given: dict[str, object], message: str, storage: str) -> None:
    given = {name: storage if value == "X" else value for name, value in given.items()}
    with pytest.raises(pytest.UsageError, match=re.escape(message)):
        chosen(**given)


def test_conform_reports_a_usage_error_in_one_line_and_exits_2(tmp_path: Path) -> None:
    """The CLI checks the same Settings before it starts pytest."""
    done = subprocess.run([sys.executable, "-m", "mmgitops", "conform", "--target", "cluster", "--kill-command", "k",
                           "--storage-config", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == ["mmgitops: error: --kill-command: for --endpoint only"]
    assert "Traceback" not in done.stdout + done.stderr


def test_pytest_itself_refuses_the_same_combination(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "mmgitops.conformance.checks", "-p",
                           "no:cacheprovider", "--collect-only", "--target", "cluster"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "--target cluster needs --storage-config FILE" in done.stderr


def test_a_conform_run_reads_no_pytest_configuration_of_the_directory_it_starts_in(tmp_path: Path) -> None:
    """pytest loads ./test*/conftest.py, and a repository's own test harness would change the suite."""
    from mmgitops.conformance import run

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text("raise SystemExit('the directory conftest.py was loaded')\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    done = subprocess.run([sys.executable, "-m", "pytest", *run.pytest_args({}), "--collect-only", "-q"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checks/test_routing.py::test_rest_infer_answers_by_name" in done.stdout

"""One local cluster for the integration tier: started before its first test, stopped by PID after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mmgitops.lab.kubelet.backer import MAX_BACKOFF_S

ROOT = Path(__file__).resolve().parents[2]
# Its own name, so a test run never touches a user's cluster; MMGITOPS_TEST_CLUSTER runs two test sessions side by side.
CLUSTER = os.environ.get("MMGITOPS_TEST_CLUSTER", "mmgitops-test")
# A wait for the real controller to act: its one replica exits every five to seven minutes here (its etcd watch
# loses its auth token) and the kubelet's back-off before its restart grows to the 5-minute cap (docs/fidelity.md,
# "The real controller"), so such a wait covers one whole back-off.
CONTROLLER_ACTS_WITHIN_S = MAX_BACKOFF_S + 60


def mmgitops(*args: str, env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmgitops", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def cluster_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # Its own name and state directory: a user's `mmgitops` cluster is never touched.
    state = tmp_path_factory.mktemp("state")
    return {**os.environ, "MMGITOPS_CLUSTER_NAME": CLUSTER, "MMGITOPS_STATE": str(state)}


def started(what: str, env: dict[str, str], *options: str) -> Iterator[dict]:
    """`mmgitops local WHAT up [OPTIONS]` for the fixture's span, after a `down` for the leftovers of an interrupted
    run."""
    mmgitops("local", what, "down", env=env)
    up = mmgitops("local", what, "up", *options, "--format", "json", env=env)
    if up.returncode != 0:
        pytest.fail(f"local {what} up {' '.join(options)} failed: {up.stderr.strip()[-2000:]}")
    try:
        yield json.loads(up.stdout)
    finally:
        mmgitops("local", what, "down", env=env)


def missing(find_sources: Callable[[], object], root_for: str) -> str:
    """Why a test that builds from the upstream source tarballs and needs root cannot run here ('' when it can)."""
    from mmgitops.errors import ToolError

    try:
        find_sources()
    except ToolError as exc:
        return str(exc)
    return "" if os.geteuid() == 0 else f"{root_for} needs root"


def own_cluster(tmp_path_factory: pytest.TempPathFactory, name: str, *options: str) -> Iterator[dict]:
    """A local cluster of a test module's own (its name and state directory), with `up` OPTIONS; its info has `env`."""
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "MMGITOPS_CLUSTER_NAME": name, "MMGITOPS_STATE": str(tmp_path_factory.mktemp(name))}
    for info in started("cluster", env, *options):
        yield {**info, "env": env}


def cluster_skip_reason() -> str:
    """The local cluster runs the ModelMesh controller built from its source tarball, in a network namespace."""
    from mmgitops.lab.controller import build

    return missing(build.source, "the local cluster's pod network")


def managed_modelmesh(kubeconfig: str, applications: str = "redhat-ods-applications") -> None:
    """ModelMesh made Managed as a platform team makes it (lab/controller/managed.py)."""
    from kubernetes import config
    from mmgitops.lab.controller.managed import manage_modelmesh

    with config.new_client_from_config(config_file=kubeconfig) as api:
        manage_modelmesh(api, applications)


@pytest.fixture(scope="session")
def cluster(cluster_env: dict[str, str]) -> Iterator[dict]:
    reason = cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    yield from started("cluster", cluster_env)


@pytest.fixture(scope="session")
def demo(cluster: dict, cluster_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`mmgitops demo` on the shared cluster, once: the profile installed, then the whole suite as the profile's
    least-privileged runner, in its namespace."""
    report = tmp_path_factory.mktemp("demo-report")
    run = mmgitops("demo", "--report", str(report), env=cluster_env, timeout=1500)
    return {"run": run, "results": json.loads((report / "results.json").read_text())
            if (report / "results.json").is_file() else {}, "report": report}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `down` stops the shared cluster, so within this tier it runs after every other test.
    ours = [i for i, item in enumerate(items) if "/integration/" in f"/{item.nodeid}"]
    ordered = sorted((items[i] for i in ours), key=lambda item: item.name.startswith("test_down_"))
    for index, item in zip(ours, ordered, strict=True):
        items[index] = item


def predicted(tmp_path: Path, env: dict[str, str], *bodies: dict, live: str = "") -> dict[str, set[str]]:
    """The ModelMesh rules `validate` gives each InferenceService in BODIES, read beside the conformance profile
    (its runtimes and storage-config), which is what they are deployed beside on the local cluster; or, with
    `live` (a kubeconfig), beside what that cluster has (`validate --cluster`)."""
    import yaml

    (tmp_path / "isvcs.yaml").write_text(yaml.safe_dump_all(bodies), encoding="utf-8")
    where = ["--cluster", "--kubeconfig", live] if live else ["overlays/conformance"]
    run = mmgitops("validate", *where, str(tmp_path / "isvcs.yaml"), env=env, timeout=300)
    rules: dict[str, set[str]] = {b["metadata"]["name"]: set() for b in bodies}
    for line in run.stdout.splitlines():
        for name in rules:
            if f": InferenceService/{name}: " in line and "[mm-" in line:
                rules[name].add(line.rsplit("[", 1)[1].rstrip("]"))
    return rules


def flagged(env: dict[str, str], tmp_path: Path, docs: list[dict]) -> set[str]:
    """The ModelMesh rules `validate` gives DOCS on their own, errors only."""
    import yaml

    (tmp_path / "objects.yaml").write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    run = mmgitops("validate", str(tmp_path / "objects.yaml"), env=env, timeout=300)
    return {line.rsplit("[", 1)[1].rstrip("]") for line in run.stdout.splitlines()
            if "[mm-" in line and ": warning: " not in line}

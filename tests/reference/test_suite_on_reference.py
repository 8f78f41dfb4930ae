"""The conformance suite on real ModelMesh: the whole suite on reference pods it starts itself
(`conform --engine reference`), and on reference pods started apart and given to it only by address
(`conform --endpoint`). Both must give the embedded mesh's verdict: every check passes, and only the checks
that need a Kubernetes API are skipped.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reference.conftest import mmgitops

pytestmark = pytest.mark.reference
CHURN_MS = "1500"
# What no mesh target can check: the platform's objects, and the GPU node under the packed pod.
NEEDS_KUBERNETES = {
    "test_the_datasciencecluster_is_ready_with_modelmesh_serving_ready", "test_the_modelmesh_controller_is_available",
    "test_every_runtime_pod_is_ready_with_its_containers", "test_every_inference_service_is_loaded_and_up_to_date",
    "test_every_inference_service_has_its_grpc_and_rest_urls", "test_the_gpu_pod_requests_a_gpu_and_runs_on_a_gpu_node",
    "test_the_profiles_inference_services_are_reported_with_a_status_as_the_controller_writes_it",
    # the controller group, and the update's controller status
    "test_a_format_no_runtime_serves_fails_to_load_with_no_supporting_runtime",
    "test_an_inference_service_naming_a_missing_runtime_fails_to_load_with_runtime_not_recognized",
    "test_a_runtime_no_inference_service_uses_has_no_pods",
    "test_the_first_inference_service_scales_its_runtime_up_to_its_replicas",
    "test_the_first_inference_service_is_never_failed_while_its_runtime_scales_up",
    "test_the_controller_reports_the_update_done",
}


def verdict(report: Path) -> dict[str, str]:
    tests = json.loads((report / "results.json").read_text(encoding="utf-8"))["tests"]
    return {test["nodeid"].rsplit("::", 1)[-1]: test["outcome"] for test in tests}


def expected(checks: dict[str, str]) -> dict[str, str]:
    return {name: "skipped" if name in NEEDS_KUBERNETES else "passed" for name in checks}


@pytest.fixture
def separate_meshes(reference_env: dict[str, str], tmp_path: Path) -> Iterator[list[tuple[dict[str, str], Any]]]:
    """Two reference meshes started as processes of their own, as pods this project did not start for the suite:
    two pods for every group, and one pod standing for a single-replica GPU runtime. (env, state) each."""
    envs = [{**reference_env, "MMGITOPS_MESH_NAME": name, "MMGITOPS_STATE": str(tmp_path / name)}
            for name in ("given", "given-gpu")]
    meshes = []
    try:
        for env, pods, capacity in zip(envs, ("2", "1"), ("81920", str(24 * 8192)), strict=True):
            up = mmgitops("local", "mesh", "up", "--engine", "reference", "--instances", pods, "--capacity", capacity,
                          "--min-churn-age-ms", CHURN_MS, "--samples", "0", "--format", "json", env=env, timeout=600)
            if up.returncode != 0:
                pytest.fail(f"reference mesh up failed: {up.stderr.strip()[-2000:]}")
            meshes.append((env, json.loads(up.stdout)))
        yield meshes
    finally:
        for env in envs:
            mmgitops("local", "mesh", "down", env=env)


def test_the_whole_suite_passes_on_reference_pods_it_starts(reference_env: dict[str, str], tmp_path: Path) -> None:
    run = mmgitops("conform", "--engine", "reference", "--report", str(tmp_path / "report"), env=reference_env,
                   timeout=1800)
    checks = verdict(tmp_path / "report")
    assert (run.returncode, checks) == (0, expected(checks)), run.stdout[-3000:]
    about = json.loads((tmp_path / "report" / "results.json").read_text(encoding="utf-8"))["target"]
    assert about["engine"] == "reference" and about["reference_commit"]


def test_the_whole_suite_passes_on_reference_pods_given_by_address(
        separate_meshes: list[tuple[dict[str, str], Any]], tmp_path: Path) -> None:
    """What only pods given by address exercise: requests through them (routing) and a pod killed by the user's
    --kill-command (resilience) on the two-pod mesh, then packing on the one-pod mesh given as --gpu-endpoint, each
    given only by its pods' names and addresses and its storage. The other groups run on these same reference pods in
    the test above. Two runs because each mesh pulls from its own S3 server, as two runtimes with different storage
    would."""
    (env, mesh), (gpu_env, gpu) = separate_meshes
    # The mesh's own CLI kills a pod by its instance id; `env` names the mesh.
    kill = f"{shlex.quote(sys.executable)} -m mmgitops local mesh kill {{instance}}"
    endpoints = ",".join(f"{pod['id']}={pod['grpc']}" for pod in mesh["instances"])
    run = mmgitops("conform", "--endpoint", endpoints, "--storage-config", mesh["storage_config"],
                   "--kill-command", kill, "-m", "routing or resilience", "--report", str(tmp_path / "all"), "--",
                   "--min-churn-age-ms", CHURN_MS, env=env, timeout=1800)
    checks = verdict(tmp_path / "all")
    assert (run.returncode, checks) == (0, expected(checks)), run.stdout[-3000:]
    assert {name for name in checks if "kill" in name or "surviv" in name}, checks
    pod = f"{gpu['instances'][0]['id']}={gpu['instances'][0]['grpc']}"
    run = mmgitops("conform", "--endpoint", pod, "--gpu-endpoint", pod, "--storage-config", gpu["storage_config"],
                   "-m", "packing", "--report", str(tmp_path / "packing"), "--", "--min-churn-age-ms", CHURN_MS,
                   env=gpu_env, timeout=900)
    checks = verdict(tmp_path / "packing")
    assert (run.returncode, checks) == (0, expected(checks)), run.stdout[-3000:]
    assert checks and all("pack" in name or "gpu" in name for name in checks), checks

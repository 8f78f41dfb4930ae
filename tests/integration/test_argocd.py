"""The real Argo CD (application controller and repo server built from the pinned module) syncing this repository
into the local cluster: the conformance bootstrap goes green, waves hold, health is the repository's Lua,
self-heal and pruning do what the Applications declare, and a broken commit changes nothing."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.integration.conftest import CLUSTER, ROOT, mmgitops, started

pytestmark = pytest.mark.integration
NS = "openshift-gitops"
ARGOCD_CLUSTER = f"{CLUSTER}-argocd"
PROFILE = "conformance"
MODELS = "modelmesh-models"


def _apps(api: client.ApiClient) -> dict[str, dict[str, Any]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object("argoproj.io", "v1alpha1", NS,
                                                                        "applications")["items"]
    return {a["metadata"]["name"]: a for a in items}


def _health(app: dict[str, Any]) -> tuple[str, str]:
    health = (app.get("status") or {}).get("health") or {}
    return health.get("status", ""), health.get("message", "")


def _until(what: str, probe: Callable[[], Any], timeout: float = 180.0) -> Any:
    """probe() until it returns something truthy; bounded, because Argo CD's reconcile period is its own."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1.0)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def argocd_env(cluster_env: dict[str, str]) -> dict[str, str]:
    # A cluster of its own: every object of the profile is then one Argo CD created, and what it syncs and stages
    # (the samples' storage) is not the fresh cluster the tier's other tests start from.
    return {**cluster_env, "MMGITOPS_CLUSTER_NAME": ARGOCD_CLUSTER}


@pytest.fixture(scope="module")
def cluster(argocd_env: dict[str, str]) -> Iterator[dict]:
    if os.geteuid() != 0:
        pytest.skip("the local Argo CD needs root (its controller runs in a network namespace of its own)")
    yield from started("cluster", argocd_env)


@pytest.fixture(scope="module")
def argocd(cluster: dict, argocd_env: dict[str, str]) -> Iterator[dict]:
    yield from started("argocd", argocd_env)


@pytest.fixture(scope="module")
def synced(argocd: dict, cluster: dict, argocd_env: dict[str, str]) -> dict:
    run = mmgitops("local", "argocd", "sync", PROFILE, "--format", "json", "--timeout", "900", env=argocd_env)
    assert run.returncode == 0, f"sync {PROFILE} failed: {run.stderr.strip()[-3000:]}"
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def api(cluster: dict) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster["kubeconfig"])


def _commit(env: dict[str, str], changes: dict[str, str | None], message: str) -> str:
    from mmgitops.lab.argocd import gitserver

    served = Path(env["MMGITOPS_STATE"]) / f"argocd-{ARGOCD_CLUSTER}" / "git" / gitserver.REPO
    return gitserver.commit(served, changes, message)


def _refresh(api: client.ApiClient, *names: str) -> None:
    from mmgitops.lab.argocd import sync

    sync.refresh(api, list(names))


def _terminate(api: client.ApiClient, name: str) -> None:
    """What `argocd app terminate-op` does: ask the controller to end the running operation."""
    app = _apps(api)[name]
    if ((app.get("status") or {}).get("operationState") or {}).get("phase") == "Running":
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "argoproj.io", "v1alpha1", NS, "applications", name, {"status": {"operationState": {
                "phase": "Terminating"}}})


def test_argocd_processes_listen_on_loopback_only(argocd, argocd_env):
    from tests.integration.test_local_cluster import listening, loopback

    status = json.loads(mmgitops("local", "argocd", "status", "--format", "json", env=argocd_env).stdout)
    assert {"git-daemon", "redis", "repo-server", "application-controller"} <= set(status["processes"])
    assert all(p["running"] for p in status["processes"].values()), status["processes"]
    # The controller binds 0.0.0.0 inside its own loopback-only namespace: nothing of it shows in this one.
    addresses = listening({p["pid"] for p in status["processes"].values()})
    assert addresses, "no listening socket found for the Argo CD processes"
    assert all(loopback(a) for a in addresses), addresses


def test_git_server_serves_the_working_tree_with_the_generated_repo_source(argocd):
    import subprocess

    heads = subprocess.run(["git", "ls-remote", argocd["repo_url"]], capture_output=True, text=True, check=True)
    main = next(line.split()[0] for line in heads.stdout.splitlines() if line.endswith("refs/heads/main"))
    assert main == argocd["snapshot"]["commit"]
    checkout_file = (ROOT / "argocd/components/repo-source/kustomization.yaml").read_text()
    assert argocd["repo_url"] not in checkout_file  # committed files are never edited


def test_conformance_bootstrap_syncs_every_app_synced_and_healthy(synced, api):
    assert synced["done"], synced
    apps = _apps(api)
    expected = {r["name"] for r in synced["apps"]}
    assert expected <= set(apps)
    for name in expected:
        status = apps[name]["status"]
        assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy"), name
        assert status["sync"]["revision"] == synced["commit"], name
    custom = client.CustomObjectsApi(api)
    dsc = custom.get_cluster_custom_object("datasciencecluster.opendatahub.io", "v1", "datascienceclusters",
                                           "default-dsc")
    assert dsc["spec"]["components"]["modelmeshserving"]["managementState"] == "Managed"
    runtimes = custom.list_namespaced_custom_object("serving.kserve.io", "v1alpha1", MODELS, "servingruntimes")
    assert {r["metadata"]["name"] for r in runtimes["items"]} >= {"mlserver-1.x", "triton-gpu"}
    isvcs = custom.list_namespaced_custom_object("serving.kserve.io", "v1beta1", MODELS, "inferenceservices")
    assert {i["metadata"]["name"] for i in isvcs["items"]} >= {"sklearn-mnist", "onnx-mnist"}


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _first_sync(app: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """(started, finished) of the app's first sync, from status.history (operationState is only the latest)."""
    first = app["status"]["history"][0]
    return _time(first["deployStartedAt"]), _time(first["deployedAt"])


def test_sync_order_matches_the_plan(synced, api):
    """Each wave's apps start their first sync only after every app of an earlier wave finished its own, as
    `mmgitops plan` predicts."""
    from mmgitops.cli.common import kustomize
    from mmgitops.lab.argocd import sync

    _, predicted = sync.expected_apps(ROOT, PROFILE, kustomize())
    apps = _apps(api)
    timing = {name: _first_sync(apps[name]) for name in predicted}
    waves = sorted(set(predicted.values()))
    for earlier, later in itertools.pairwise(waves):
        finished = max(timing[n][1] for n, w in predicted.items() if w <= earlier)
        started = min(timing[n][0] for n, w in predicted.items() if w == later)
        assert started >= finished, f"wave {later} started at {started}, before wave {earlier} finished at {finished}"


def test_waves_hold_no_object_of_a_later_wave_before_the_earlier_wave(synced, api):
    """Neither a later wave's Application nor what it syncs exists before every earlier wave's app has synced."""
    apps = _apps(api)
    waves = {r["name"]: r["wave"] for r in synced["apps"] if r["name"] != synced["root"]}
    finished = {n: _first_sync(apps[n])[1] for n in waves}
    custom = client.CustomObjectsApi(api)
    created = {name: _time(apps[name]["metadata"]["creationTimestamp"]) for name in waves}
    created["rhoai-instance/DataScienceCluster"] = _time(custom.get_cluster_custom_object(
        "datasciencecluster.opendatahub.io", "v1", "datascienceclusters", "default-dsc")["metadata"][
        "creationTimestamp"])
    created["modelmesh-samples/InferenceService"] = _time(custom.get_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", MODELS, "inferenceservices", "sklearn-mnist")["metadata"]["creationTimestamp"])
    for what, born in created.items():
        wave = waves[what.split("/")[0]]
        late = [n for n, w in waves.items() if w < wave and finished[n] > born]
        assert not late, f"{what} (wave {wave}) was created at {born}, before {late} had synced"


def test_rhoai_instance_health_is_the_repositorys_lua(synced, api):
    custom = client.CustomObjectsApi(api)

    def fault(value: str | None) -> None:
        custom.patch_cluster_custom_object("datasciencecluster.opendatahub.io", "v1", "datascienceclusters",
                                           "default-dsc", {"metadata": {"annotations": {
                                               "lab.mmgitops.local/fault": value}}})

    try:
        fault("not-ready")
        _until("rhoai-instance Progressing", lambda: _health(_apps(api)["rhoai-instance"])[0] == "Progressing")
        app = _apps(api)["rhoai-instance"]
        dsc_health = next(r["health"] for r in app["status"]["resources"] if r["kind"] == "DataScienceCluster")
        # the script's own words: "<condition type>: <message>" of a False condition
        assert dsc_health == {"status": "Progressing",
                              "message": "ModelMeshServingReady: held not ready by a lab fault"}
        fault("degraded")
        _until("rhoai-instance Degraded", lambda: _health(_apps(api)["rhoai-instance"])[0] == "Degraded")
        app = _apps(api)["rhoai-instance"]
        dsc_health = next(r["health"] for r in app["status"]["resources"] if r["kind"] == "DataScienceCluster")
        assert dsc_health["message"] == "held degraded by a lab fault"
    finally:
        fault(None)
    _until("rhoai-instance Healthy again", lambda: _health(_apps(api)["rhoai-instance"])[0] == "Healthy")


def test_self_heal_reverts_a_changed_managed_field(synced, api):
    custom = client.CustomObjectsApi(api)
    args = ("datasciencecluster.opendatahub.io", "v1", "datascienceclusters", "default-dsc")
    custom.patch_cluster_custom_object(*args, {"spec": {"components": {"modelmeshserving": {
        "managementState": "Removed"}}}})
    _until("Argo CD puts modelmeshserving back to Managed", lambda: custom.get_cluster_custom_object(*args)[
        "spec"]["components"]["modelmeshserving"]["managementState"] == "Managed")


def test_removing_a_sample_from_git_keeps_it_because_the_app_does_not_prune(synced, api, argocd_env):
    """argocd/components/app-defaults sets prune: false for every child app: a removed manifest leaves the
    object on the cluster, marked for pruning, and the app OutOfSync."""
    defaults = yaml.safe_load((ROOT / "argocd/components/app-defaults/defaults.yaml").read_text())
    assert defaults["spec"]["syncPolicy"]["automated"]["prune"] is False
    path = "components/modelmesh/samples/kustomization.yaml"
    original = (ROOT / path).read_text()
    without = original.replace("resources:\n  - sklearn-mnist.yaml\n", "resources: []\n")
    assert without != original
    custom = client.CustomObjectsApi(api)
    try:
        _commit(argocd_env, {path: without}, "Remove the sklearn sample")
        _refresh(api, "modelmesh-samples")

        def marked() -> bool:
            app = _apps(api)["modelmesh-samples"]
            res = [r for r in app["status"].get("resources", []) if r.get("name") == "sklearn-mnist"]
            return bool(res) and res[0].get("requiresPruning") is True and app["status"]["sync"]["status"] == \
                "OutOfSync"
        _until("sklearn-mnist marked for pruning", marked)
        time.sleep(5)  # an automated sync would have pruned it by now if prune were on
        assert custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", MODELS, "inferenceservices",
                                                   "sklearn-mnist")
    finally:
        _commit(argocd_env, {path: original}, "Restore the sklearn sample")
        _refresh(api, "modelmesh-samples")
    _until("modelmesh-samples Synced again",
           lambda: _apps(api)["modelmesh-samples"]["status"]["sync"]["status"] == "Synced")


def test_an_invalid_manifest_leaves_the_app_out_of_sync_naming_the_object_and_changes_nothing(synced, api,
                                                                                              argocd_env):
    path = "components/modelmesh/samples-gpu/onnx-mnist.yaml"
    original = (ROOT / path).read_text()
    broken = original.replace("  predictor:\n", "  predictor:\n    minReplicas: two\n")
    assert broken != original
    custom = client.CustomObjectsApi(api)
    before = custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", MODELS, "inferenceservices",
                                                 "onnx-mnist")
    try:
        _commit(argocd_env, {path: broken}, "Break the ONNX sample")
        _refresh(api, "modelmesh-samples-gpu")

        def failed() -> str:
            # Failed, or Running while Argo CD waits to retry (the app's retry policy): either way, its message
            app = _apps(api)["modelmesh-samples-gpu"]
            op = app["status"].get("operationState") or {}
            message = str(op.get("message", ""))
            if app["status"]["sync"]["status"] == "OutOfSync" and "is invalid" in message:
                return message
            return ""
        message = _until("modelmesh-samples-gpu fails to sync", failed, timeout=240)
        assert "onnx-mnist" in message and "minReplicas" in message
        after = custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", MODELS, "inferenceservices",
                                                    "onnx-mnist")
        assert after["spec"] == before["spec"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
    finally:
        _commit(argocd_env, {path: original}, "Restore the ONNX sample")
        _terminate(api, "modelmesh-samples-gpu")  # a retrying sync keeps the broken revision until it ends
        _refresh(api, "modelmesh-samples-gpu")
    _until("modelmesh-samples-gpu Synced again",
           lambda: _apps(api)["modelmesh-samples-gpu"]["status"]["sync"]["status"] == "Synced", timeout=300)

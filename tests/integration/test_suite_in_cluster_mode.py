"""End to end on the local cluster: `mmgitops demo`'s steps, with the real modelmesh-serving controller serving the
runtimes the conformance suite creates (their pods played by the embedded engine), and every check run in cluster
mode."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import grpc
import pytest
import tenacity
from kubernetes import client, config
from mmgitops.conformance.clients import Management, status_name
from mmgitops.conformance.cluster import objects
from mmgitops.conformance.cluster import session as cluster_session
from mmgitops.conformance.cluster.resolve import Annotation, PortForward
from mmgitops.conformance.cluster.target import ClusterTarget
from mmgitops.conformance.groups import GROUPS
from mmgitops.conformance.target import LOADED, TargetError
from mmgitops.gitops.schemas import catalog
from mmgitops.lab.kubelet import backer
from mmgitops.lab.kubelet.publish import ENGINE_ANNOTATION as ENGINE

from tests.integration.conftest import CONTROLLER_ACTS_WITHIN_S, predicted

pytestmark = pytest.mark.integration
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
SAMPLES = ("sklearn-mnist", "onnx-mnist")


def test_the_demo_runs_every_check_in_cluster_mode_and_all_pass(demo):
    run, results = demo["run"], demo["results"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert results["options"]["target"] == "cluster"
    assert results["counts"] == {"passed": len(results["tests"])}
    # As the profile's least-privileged runner, in the namespace it may act in (test_suite_least_privilege.py).
    assert (results["target"]["runner"], results["target"]["namespace"]) == (
        "ServiceAccount mmgitops-conformance/conformance-runner", "mmgitops-conformance (given namespace)")
    assert {t["group"] for t in results["tests"]} == set(GROUPS)
    # The runtimes and every InferenceService status came from RHOAI's controller, built from its pinned commit.
    from mmgitops.lab.controller import build

    assert results["target"]["controller"] == f"modelmesh-serving {build.pin()['commit']}"
    assert build.pin()["commit"] in (demo["report"] / "report.html").read_text(encoding="utf-8")
    assert (demo["report"] / "report.html").is_file()
    assert f"report: {(demo['report'] / 'report.html').resolve()}" in run.stdout


def custom(cluster: dict) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(config_file=cluster["kubeconfig"]))


def status_errors(found: dict) -> list[str]:
    _, validator = catalog.build().validator("serving.kserve.io", "v1beta1", "InferenceService")
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(found)]


def failures_since(kubeconfig: str, names: tuple[str, ...], since_ms: int) -> dict[str, list[str]]:
    """Each model's copies that failed to load at or after since_ms, from ModelMesh itself (getVModelStatus on a
    runtime pod of the samples' namespace: each copy's status and time, and the failures' messages). ModelMesh
    keeps a failure on an instance until that instance's janitor expires it (LOAD_FAILURE_EXPIRY_MS, 15 min) or
    the reaper prunes the instance, so the samples' count of failed copies still holds what the tier's earlier
    tests on this cluster did to them (test_profile_samples fails them on purpose)."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    pods = core.list_namespaced_pod("modelmesh-models", label_selector="modelmesh-service=modelmesh-serving")
    pod = next(p.metadata.name for p in pods.items if p.status.phase == "Running" and not p.metadata.deletion_timestamp)
    forward = PortForward(core, "modelmesh-models")
    try:
        with grpc.insecure_channel(forward.address(pod, 8033)) as channel:
            management = Management(channel)
            found = {}
            for name in names:
                status = management.vmodel_status(name).activeModelStatus
                late = [f"{c.location} at {c.time}" for c in status.modelCopyInfos
                        if status_name(c.copyStatus) == "LOADING_FAILED" and c.time >= since_ms]
                if late:
                    found[name] = late + list(status.errors)
            return found
    finally:
        forward.close()


def test_the_demo_installs_the_profile_through_argo_cd_and_its_samples_load(cluster, demo):
    installed = demo["results"].get("installed", {})
    assert installed.get("by", "").startswith("Argo CD v"), installed
    assert installed["profile"] == "argocd/bootstrap/conformance" and installed["apps"] == 14
    for name in SAMPLES:
        found = custom(cluster).get_namespaced_custom_object(*ISVC[:2], "modelmesh-models", ISVC[2], name)
        model = found["status"]["modelStatus"]
        # Their models loaded from the staged storage. ModelMesh does not promise an idle model stays loaded (its
        # pods may be replaced, or it may be evicted), so Standby after the suite is as good.
        assert model["states"]["activeModelState"] in ("Loaded", "Standby"), (name, model)
        assert "lastFailureInfo" not in model, (name, model)
        assert status_errors(found) == []
    # And no load of theirs failed while the suite ran. Not since the demo's start: while Argo CD installs the
    # profile, pods that earlier tests of this tier started on the placeholder storage-config (test_profile_samples,
    # the serving-gpu apply of test_suite_cluster_target) may still retry a load on it before they are replaced.
    suite_started = datetime.strptime(demo["results"]["started"], "%Y-%m-%dT%H:%M:%S%z")
    assert failures_since(cluster["kubeconfig"], SAMPLES, int(suite_started.timestamp() * 1000)) == {}


def test_an_unsupported_format_gives_no_supporting_runtime_as_validate_predicts(cluster, cluster_env, demo, tmp_path):
    api = custom(cluster)
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "pmml-model", "namespace": "modelmesh-models",
                         "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "pmml"},
                                             "storage": {"key": "localMinIO", "path": "pmml/model.pmml"}}}}}
    # Its good twin is the profile's sklearn-mnist, which loads (above) and validate does not flag.
    twin = custom(cluster).get_namespaced_custom_object(*ISVC[:2], "modelmesh-models", ISVC[2], "sklearn-mnist")
    assert predicted(tmp_path, cluster_env, body, {k: twin[k] for k in ("apiVersion", "kind", "metadata", "spec")}
                     ) == {"pmml-model": {"mm-isvc-runtime-match"}, "sklearn-mnist": set()}
    api.create_namespaced_custom_object(*ISVC[:2], "modelmesh-models", ISVC[2], body)
    try:
        # modelmesh-serving registers it as mt:pmml; ModelMesh fails the load ("... of type mt:pmml: [_no_runtime]")
        # and the controller's etcd watch brings the failure back: decodeModelState (predictor_controller.go) reads
        # NoSupportingRuntime; a new vmodel is DEFINED, so UpToDate. The status may first say Pending or Standby.
        found = tenacity.Retrying(stop=tenacity.stop_after_delay(CONTROLLER_ACTS_WITHIN_S),
                                  wait=tenacity.wait_fixed(0.5),
                                  retry=tenacity.retry_if_result(lambda i: (i.get("status") or {}).get(
                                      "modelStatus", {}).get("states", {}).get("activeModelState") != "FailedToLoad"))(
            api.get_namespaced_custom_object, *ISVC[:2], "modelmesh-models", ISVC[2], "pmml-model")
        model = found["status"]["modelStatus"]
        assert (model["states"]["activeModelState"], model["transitionStatus"], model["lastFailureInfo"]["reason"]
                ) == ("FailedToLoad", "UpToDate", "NoSupportingRuntime")
        assert status_errors(found) == []
    finally:
        api.delete_namespaced_custom_object(*ISVC[:2], "modelmesh-models", ISVC[2], "pmml-model")


def test_deleting_a_runtime_pod_kills_its_instance_and_its_model_comes_back_on_another(cluster, demo):
    run = cluster_session.Session(cluster_session.api_client(cluster["kubeconfig"]), "0a0b0c",
                                  Path(cluster["storage_config"]), "localS3")
    run.open()
    target = None
    try:
        runtime = objects.serving_runtime(objects.read_template("cpu"), "kill", run.namespace, run.run_id, 2, 9,
                                          gpu=False)
        target = ClusterTarget(run, runtime, 1500, Annotation(run.core, run.namespace))
        target.open()
        model = target.deploy("victim", run.samples[1])
        wait_loaded(target, model.name)
        killed = target.copy_locations(model.name)[0]
        assert run.core.read_namespaced_pod(killed, run.namespace).metadata.annotations[ENGINE] == "embedded"
        pid = backer.recorded(Path(cluster["kubeconfig"]).parent / "pods")[f"{run.namespace}/{killed}/mm"]
        target.kill_pod(killed)
        assert gone_within(pid, 10), f"instance of deleted pod {killed} (pid {pid}) still runs"
        # The dead pod's copy stays listed until ModelMesh's reaper prunes its instance (10 min); a request is
        # re-routed at once and loads the model on a live pod.
        answer = tenacity.Retrying(stop=tenacity.stop_after_delay(60), wait=tenacity.wait_fixed(0.5),
                                   retry=tenacity.retry_if_exception_type(TargetError), reraise=True)(
            target.infer, model.name)
        assert answer.answer == 1
        where = tenacity.Retrying(stop=tenacity.stop_after_delay(60), wait=tenacity.wait_fixed(0.5),
                                  retry=tenacity.retry_if_result(lambda w: all(p == killed for p in w)))(
            target.copy_locations, model.name)
        assert killed in where  # still listed, as ModelMesh lists it
        wait_loaded(target, model.name)
    finally:
        if target is not None:
            target.close()
        run.close()


def wait_loaded(target: ClusterTarget, name: str) -> None:
    tenacity.Retrying(stop=tenacity.stop_after_delay(CONTROLLER_ACTS_WITHIN_S), wait=tenacity.wait_fixed(0.5),
                      retry=tenacity.retry_if_result(lambda state: state != LOADED))(target.model_state, name)


def gone_within(pid: int, seconds: float) -> bool:
    from mmgitops import procs

    deadline = time.monotonic() + seconds
    while procs.alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True

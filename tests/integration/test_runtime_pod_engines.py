"""The runtime pods the real modelmesh-serving controller makes, played by each mesh engine: one runtime, one
InferenceService, Loaded with the status the controller writes from the mesh's etcd, and answering through a
port-forward. `one_model_served` is the embedded engine's proof too (test_real_controller.py runs it).

The reference engine gets a cluster of its own (`local cluster up --engine reference`); it is skipped, with the
reason, where the reference sources or root are missing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tenacity
from mmgitops.conformance import clients
from mmgitops.conformance.cluster import objects
from mmgitops.conformance.cluster import session as cluster_session
from mmgitops.conformance.cluster.resolve import PortForward
from mmgitops.gitops.schemas import catalog
from mmgitops.lab.kubelet.publish import COMMIT_ANNOTATION, ENDPOINTS_ANNOTATION, ENGINE_ANNOTATION, PORT_FORWARD

from tests.integration.conftest import flagged, managed_modelmesh, missing, mmgitops, own_cluster, predicted

pytestmark = pytest.mark.integration
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
RUNTIMES = ("serving.kserve.io", "v1alpha1", "servingruntimes")
LOADED_WITHIN_S = 300  # a reference pod starts a JVM, MLServer and two Go programs on 2 busy cores


def reference_skip_reason() -> str:
    from mmgitops.lab.reference import build

    return missing(lambda: build.find_sources(None), "reference pods' network namespace")


@pytest.fixture(scope="module")
def reference_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    reason = reference_skip_reason()
    if reason:
        pytest.skip(reason)
    for info in own_cluster(tmp_path_factory, "mmgitops-ref-test", "--engine", "reference"):
        managed_modelmesh(info["kubeconfig"])
        yield info


def one_model_served(cluster: dict, engine: str, env: dict[str, str] | None = None) -> None:
    run = cluster_session.Session(cluster_session.api_client(cluster["kubeconfig"]), secrets.token_hex(3),
                                  Path(cluster["storage_config"]), "localS3")
    run.open()
    forward = PortForward(run.core, run.namespace)
    try:
        runtime = objects.serving_runtime(objects.read_template("cpu"), "it-cpu", run.namespace, run.run_id, 1, 9,
                                          gpu=False)
        run.custom.create_namespaced_custom_object(*RUNTIMES[:2], run.namespace, RUNTIMES[2], runtime)
        sample = run.samples[1]
        key = json.loads(sample.key)
        body = objects.inference_service("it-model", run.namespace, run.run_id, "it-cpu", sample.type,
                                         key["storage_key"], key["storage_params"]["bucket"], sample.path)
        run.custom.create_namespaced_custom_object(*ISVC[:2], run.namespace, ISVC[2], body)
        found = isvc_in_state(run, "it-model", "Loaded")
        status = found["status"]
        assert status_errors(found) == []
        assert status["modelStatus"]["transitionStatus"] == "UpToDate"
        assert status["modelStatus"]["copies"] == {"failedCopies": 0, "totalCopies": 1}
        assert {c["type"]: c["status"] for c in status["conditions"]} == {"PredictorReady": "True", "Ready": "True"}
        assert status["components"]["predictor"]["grpcUrl"] == f"grpc://modelmesh-serving.{run.namespace}:8033"

        pod = next(p for p in run.core.list_namespaced_pod(run.namespace).items
                   if p.metadata.name.startswith("modelmesh-serving-it-cpu-"))
        annotations = pod.metadata.annotations or {}
        assert annotations[ENGINE_ANNOTATION] == engine
        assert bool(annotations.get(COMMIT_ANNOTATION)) == (engine == "reference")
        assert set(json.loads(annotations[ENDPOINTS_ANNOTATION])) == {"8033", "8008", "2112", "8089"}
        forwards = run.custom.get_namespaced_custom_object(*PORT_FORWARD[:2], run.namespace, PORT_FORWARD[2],
                                                           pod.metadata.name)["spec"]["forwards"]
        assert sorted(f["ports"][0] for f in forwards) == [2112, 8008, 8033, 8089]

        # Through the API server, as the suite and `kubectl port-forward` reach a pod.
        assert clients.probe_ready(f"http://{forward.address(pod.metadata.name, 8089)}")
        with grpc.insecure_channel(forward.address(pod.metadata.name, 8033)) as channel:
            assert clients.Inference(channel).infer("it-model").answer == sample.answer
        if env is not None:  # the cluster's status names the engine and the pod's processes
            info = json.loads(mmgitops("local", "cluster", "status", "--format", "json", env=env).stdout)
            assert info["engine"] == engine
            assert f"pod {run.namespace}/{pod.metadata.name}/mm" in info["processes"]
    finally:
        forward.close()
        run.close()


def isvc_in_state(run: cluster_session.Session, name: str, state: str) -> dict:
    """The InferenceService once the controller reports its model in `state`."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_delay(LOADED_WITHIN_S), wait=tenacity.wait_fixed(1), reraise=True,
        retry=tenacity.retry_if_result(lambda i: (i.get("status") or {}).get("modelStatus", {})
                                       .get("states", {}).get("activeModelState") != state))(
        run.custom.get_namespaced_custom_object, *ISVC[:2], run.namespace, ISVC[2], name)


def status_errors(found: dict) -> list[str]:
    _, validator = catalog.build().validator("serving.kserve.io", "v1beta1", "InferenceService")
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(found)]


def test_an_inference_service_on_reference_pods_loads_and_answers_through_a_port_forward(reference_cluster):
    one_model_served(reference_cluster, "reference", reference_cluster["env"])


def test_a_storage_key_the_namespace_lacks_fails_the_load_in_the_real_puller_as_validate_predicts(
        reference_cluster, tmp_path):
    """mm-storage-resolvable, predicted from the live cluster (`validate --cluster`) and seen on reference pods,
    whose adapter is the real puller (model-serving-puller/puller/puller.go ProcessLoadModelRequest). Its twin, the
    same model under the namespace's key, loads in the test above."""
    run = cluster_session.Session(cluster_session.api_client(reference_cluster["kubeconfig"]), secrets.token_hex(3),
                                  Path(reference_cluster["storage_config"]), "localS3")
    run.open()
    try:
        runtime = objects.serving_runtime(objects.read_template("cpu"), "it-cpu", run.namespace, run.run_id, 1, 9,
                                          gpu=False)
        run.custom.create_namespaced_custom_object(*RUNTIMES[:2], run.namespace, RUNTIMES[2], runtime)
        sample = run.samples[1]
        bucket = json.loads(sample.key)["storage_params"]["bucket"]
        bad, twin = (objects.inference_service(name, run.namespace, run.run_id, "it-cpu", sample.type, key, bucket,
                                               sample.path) for name, key in (("it-nokey", "nowhere"),
                                                                              ("it-model", "localS3")))
        assert predicted(tmp_path, reference_cluster["env"], bad, twin, live=reference_cluster["kubeconfig"]) == {
            "it-nokey": {"mm-storage-resolvable"}, "it-model": set()}
        run.custom.create_namespaced_custom_object(*ISVC[:2], run.namespace, ISVC[2], bad)
        found = isvc_in_state(run, "it-nokey", "FailedToLoad")
        failure = found["status"]["modelStatus"]["lastFailureInfo"]
        assert failure["reason"] == "ModelLoadFailed"
        assert "Did not find storage config for key nowhere" in failure["message"]
    finally:
        run.close()


def test_a_runtime_with_room_for_fewer_than_ten_default_size_models_never_starts_as_validate_predicts(
        reference_cluster, tmp_path):
    """mm-runtime-capacity, seen on reference pods, whose `mm` is the real ModelMesh: it wants room for ten models
    of the adapter's default size (ModelMesh.java setupMemory) and aborts start below it. Its twin, the same
    runtime with room for nine one-unit models and a default size of one unit, serves in the first test."""
    run = cluster_session.Session(cluster_session.api_client(reference_cluster["kubeconfig"]), secrets.token_hex(3),
                                  Path(reference_cluster["storage_config"]), "localS3")
    run.open()
    try:
        small, twin = (objects.serving_runtime(objects.read_template("cpu"), "it-small", run.namespace, run.run_id,
                                               1, models, gpu=False) for models in (3, 9))
        (tmp_path / "small").mkdir()
        (tmp_path / "twin").mkdir()
        assert "mm-runtime-capacity" in flagged(reference_cluster["env"], tmp_path / "small", [small])
        assert "mm-runtime-capacity" not in flagged(reference_cluster["env"], tmp_path / "twin", [twin])
        run.custom.create_namespaced_custom_object(*RUNTIMES[:2], run.namespace, RUNTIMES[2], small)
        sample = run.samples[1]
        key = json.loads(sample.key)
        # An InferenceService scales the runtime up from zero (servingruntime_controller.go).
        run.custom.create_namespaced_custom_object(*ISVC[:2], run.namespace, ISVC[2], objects.inference_service(
            "it-model", run.namespace, run.run_id, "it-small", sample.type, key["storage_key"],
            key["storage_params"]["bucket"], sample.path))
        pods = Path(reference_cluster["kubeconfig"]).parent / "pods" / run.namespace

        def mm_logs() -> str:
            return "".join(p.read_text(errors="replace") for p in pods.rglob("mm.log")) if pods.is_dir() else ""

        tenacity.Retrying(stop=tenacity.stop_after_delay(LOADED_WITHIN_S), wait=tenacity.wait_fixed(2), reraise=True,
                          retry=tenacity.retry_if_result(lambda text: "too small" not in text))(mm_logs)
        assert "Reported model capacity" in mm_logs()
        pod = next(p for p in run.core.list_namespaced_pod(run.namespace).items
                   if p.metadata.name.startswith("modelmesh-serving-it-small-"))
        assert {c.type: c.status for c in pod.status.conditions or []}.get("Ready") != "True"
    finally:
        run.close()


def test_cluster_down_stops_every_process_by_pid(reference_cluster):
    from mmgitops import procs

    status = json.loads(mmgitops("local", "cluster", "status", "--format", "json",
                                 env=reference_cluster["env"]).stdout)
    pids = {name: p["pid"] for name, p in status["processes"].items()}
    assert any(name.startswith("pod ") for name in pids)  # the pods' processes are among them
    down = mmgitops("local", "cluster", "down", env=reference_cluster["env"])
    assert down.returncode == 0
    assert {name: pid for name, pid in pids.items() if procs.alive(pid)} == {}


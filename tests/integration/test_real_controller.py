"""The real modelmesh-serving controller (RHOAI 2.25's source, built here) on a local cluster of its own: installed
from its ODH overlay when a DataScienceCluster says `modelmeshserving: Managed`, its pod backed by the real binary
in the pod network, and what it writes for a ServingRuntime and an InferenceService, read back from the API server.

Skipped, with the reason, where root or the controller's source tarball is missing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tenacity
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from mmgitops.conformance.cluster import objects
from mmgitops.lab.kubelet import network

from tests.integration.conftest import managed_modelmesh, own_cluster
from tests.integration.test_runtime_pod_engines import one_model_served

pytestmark = pytest.mark.integration
APPS = "redhat-ods-applications"
MODELS = "it-real-models"
RUNTIMES = ("serving.kserve.io", "v1alpha1", "servingruntimes")
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
WITHIN_S = 180  # the controller's first reconcile after its informers sync, on 2 busy cores


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    for info in own_cluster(tmp_path_factory, "mmgitops-real-test"):
        managed_modelmesh(info["kubeconfig"], APPS)
        api = config.new_client_from_config(config_file=info["kubeconfig"])
        try:
            yield {**info, "api": api}
        finally:
            api.close()


def eventually(read: Callable[[], Any], done: Callable[[Any], bool], within: float = WITHIN_S) -> Any:
    """read() until done(value), for at most `within` seconds; a 404 counts as not yet."""
    def attempt() -> Any:
        try:
            return read()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
    return tenacity.Retrying(stop=tenacity.stop_after_delay(within), wait=tenacity.wait_fixed(1), reraise=True,
                             retry=tenacity.retry_if_result(lambda v: v is None or not done(v)))(attempt)


def test_the_operator_installs_the_odh_overlay_and_the_controller_runs(real: dict) -> None:
    core, apps = client.CoreV1Api(real["api"]), client.AppsV1Api(real["api"])
    ext = client.ApiextensionsV1Api(real["api"])
    eventually(lambda: ext.read_custom_resource_definition("predictors.serving.kserve.io"), lambda crd: True)
    deployment = eventually(lambda: apps.read_namespaced_deployment("modelmesh-controller", APPS),
                            lambda d: (d.status.available_replicas or 0) >= 1)
    assert deployment.spec.template.spec.service_account_name == "modelmesh-controller"
    # The etcd pod's init container made modelmesh-serving's etcd Secret, as on RHOAI.
    secret = eventually(lambda: core.read_namespaced_secret("model-serving-etcd", APPS), lambda s: True)
    connection = json.loads(base64.b64decode(secret.data["etcd_connection"]))
    assert (connection["endpoints"], connection["root_prefix"]) == ("http://etcd:2379", "modelmesh-serving")
    # Its postStart hook (enable_auth.sh) enabled auth: etcd refuses a request that names no user.
    refused = eventually(lambda: network.post_json(real["pod_network"]["pod-network"],
                                                   "http://127.0.0.1:2379/v3/kv/range", {"key": "Zm9v"}),
                         lambda answer: "user name is empty" in answer[1], within=60)
    assert refused[0] != 200
    # The controller took the leader lease: it is running, connected and reconciling.
    lease = eventually(lambda: client.CoordinationV1Api(real["api"]).list_namespaced_lease(APPS),
                       lambda leases: any((lease.spec.holder_identity or "") for lease in leases.items))
    assert any(lease.metadata.name for lease in lease.items)


def test_the_controller_writes_a_runtime_deployment_service_and_namespace_config(real: dict) -> None:
    core, apps = client.CoreV1Api(real["api"]), client.AppsV1Api(real["api"])
    custom = client.CustomObjectsApi(real["api"])
    core.create_namespace({"metadata": {"name": MODELS, "labels": {"modelmesh-enabled": "true"}}})
    runtime = objects.serving_runtime(objects.read_template("cpu"), "it-cpu", MODELS, "real", 1, 9, gpu=False)
    custom.create_namespaced_custom_object(*RUNTIMES[:2], MODELS, RUNTIMES[2], runtime)

    deployment = eventually(lambda: apps.read_namespaced_deployment("modelmesh-serving-it-cpu", MODELS),
                            lambda d: d is not None)
    pod = deployment.spec.template.spec
    mm = next(c for c in pod.containers if c.name == "mm")
    env = {e.name: e.value for e in mm.env or []}
    assert env["MM_SERVICE_NAME"] == "modelmesh-serving"
    assert "rt:it-cpu" in env["MM_LABELS"].split(",")
    assert pod.containers[-1].name == "mm"  # ensureMMContainerIsLast
    assert pod.service_account_name == "modelmesh-serving-sa"
    assert {v.name for v in pod.volumes} >= {"tc-config", "etcd-config", "models-dir"}
    assert deployment.metadata.owner_references[0].kind == "ServingRuntime"

    service = eventually(lambda: core.read_namespaced_service("modelmesh-serving", MODELS), lambda s: True)
    assert service.spec.cluster_ip == "None"  # headless: headlessService in RHOAI's config-defaults
    assert {p.name: p.port for p in service.spec.ports} == {"grpc": 8033, "http": 8008, "https": 8443,
                                                            "prometheus": 2112}
    tc = eventually(lambda: core.read_namespaced_config_map("tc-config", MODELS), lambda c: True)
    # cluster_config.go Reconcile writes both keys as binaryData
    assert set(tc.binary_data) == {"type_constraints", "dataplane_api_config"}
    assert "rt:it-cpu" in json.dumps(json.loads(base64.b64decode(tc.binary_data["type_constraints"])))
    copy = eventually(lambda: core.read_namespaced_secret("model-serving-etcd", MODELS), lambda s: True)
    prefix = json.loads(base64.b64decode(copy.data["etcd_connection"]))["root_prefix"]
    assert prefix == f"modelmesh-serving/mm_ns/{MODELS}"


def test_an_inference_service_scales_its_runtime_up_and_its_pod_is_admitted(real: dict) -> None:
    """modelmesh-serving scales a runtime to zero while no InferenceService needs it and up when one does
    (servingruntime_controller.go determineReplicasAndRequeueDuration); the pods it then asks for name
    `modelmesh-serving-sa`, which odh-model-controller's stand-in makes (mm_serviceaccount_reconciler.go), and the
    headless Service's Endpoints list them: where the controller's KubeResolver dials."""
    core, apps = client.CoreV1Api(real["api"]), client.AppsV1Api(real["api"])
    custom = client.CustomObjectsApi(real["api"])
    assert apps.read_namespaced_deployment("modelmesh-serving-it-cpu", MODELS).spec.replicas == 0
    body = objects.inference_service("it-model", MODELS, "real", "it-cpu", "sklearn", "localS3", "models", "m/1")
    custom.create_namespaced_custom_object(*ISVC[:2], MODELS, ISVC[2], body)

    eventually(lambda: apps.read_namespaced_deployment("modelmesh-serving-it-cpu", MODELS),
               lambda d: (d.spec.replicas or 0) >= 1 and (d.status.ready_replicas or 0) >= 1)
    assert core.read_namespaced_service_account("modelmesh-serving-sa", MODELS)
    pods = core.list_namespaced_pod(MODELS, label_selector="modelmesh-service=modelmesh-serving").items
    endpoints = eventually(lambda: core.read_namespaced_endpoints("modelmesh-serving", MODELS),
                           lambda e: bool(e.subsets))
    listed = {(a.ip, p.port) for s in endpoints.subsets for a in s.addresses or [] for p in s.ports}
    assert {(pod.status.pod_ip, 8033) for pod in pods} <= listed


def test_the_real_controller_writes_loaded_for_a_model_an_embedded_pod_serves(real: dict) -> None:
    """The whole chain on the real controller: it registers the InferenceService through the pod IP its
    KubeResolver finds (predictor_controller.go setVModel), the embedded instance playing the runtime pod loads the
    model and writes ModelMesh's etcd records, the controller's etcd watch brings it back, and it writes Loaded
    (updatePredictorStatusFromVModel); the model answers through the pod's port-forward."""
    one_model_served(real, "embedded")


def test_a_backed_pod_is_ready_only_while_its_process_answers_its_probe(real: dict) -> None:
    """The kubelet's prober (pkg/kubelet/prober): Ready follows the container's readinessProbe, here the
    controller's `/readyz` on :8081 (config/manager/manager.yaml); a process that stops answering (frozen) fails it,
    and the Deployment is no longer available until it answers again."""
    import os
    import signal

    from mmgitops.lab.kubelet import backer

    core, apps = client.CoreV1Api(real["api"]), client.AppsV1Api(real["api"])
    state = Path(real["kubeconfig"]).parent
    pid = next(p for name, p in backer.recorded(state / "pods").items() if name.endswith("/manager"))
    pod = next(p for p in core.list_namespaced_pod(APPS).items if p.metadata.name.startswith("modelmesh-controller"))
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    os.killpg(pid, signal.SIGSTOP)
    try:
        eventually(lambda: core.read_namespaced_pod(pod.metadata.name, APPS),
                   lambda p: {c.type: c.status for c in p.status.conditions}["Ready"] == "False", within=30)
        eventually(lambda: apps.read_namespaced_deployment("modelmesh-controller", APPS),
                   lambda d: not d.status.available_replicas, within=30)
    finally:
        os.killpg(pid, signal.SIGCONT)
    eventually(lambda: apps.read_namespaced_deployment("modelmesh-controller", APPS),
               lambda d: (d.status.available_replicas or 0) >= 1, within=60)


def test_a_container_whose_process_exits_is_restarted(real: dict) -> None:
    """restartPolicy Always (the Deployment's pod template default): the kubelet starts an exited container again,
    the first time at once (pkg/kubelet's crash-loop back-off then waits 10 s, doubling). The controller needs it:
    it exits when its etcd watch loses its auth token (docs/fidelity.md). Last in the module: it kills the
    controller."""
    from mmgitops import procs
    from mmgitops.lab.kubelet import backer

    apps = client.AppsV1Api(real["api"])
    state = Path(real["kubeconfig"]).parent

    def manager() -> int:
        return next(p for name, p in backer.recorded(state / "pods").items() if name.endswith("/manager"))

    first = manager()
    procs.stop(first, group=True)
    restarted = eventually(manager, lambda pid: pid != first and procs.alive(pid), within=30)
    assert restarted != first
    eventually(lambda: apps.read_namespaced_deployment("modelmesh-controller", APPS),
               lambda d: (d.status.available_replicas or 0) >= 1, within=90)

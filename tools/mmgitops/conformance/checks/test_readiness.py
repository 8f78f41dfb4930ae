"""Readiness: the platform serves ModelMesh, and every InferenceService the suite deploys reaches Loaded.

Read from the Kubernetes API, field by field, as a user reads `oc get dsc,deploy,pods,isvc -o yaml`. A mesh
target has no Kubernetes API, so there these checks are skipped with the reason. Every target's pods answer
ModelMesh's readiness probe, `GET /ready` on port 8089, which is the runtime Deployment's readinessProbe
(modelmesh-serving config/internal/base/deployment.yaml.tmpl); ModelMesh's gRPC port has no health RPC to
ask instead (ModelMeshApi answers ServerReady without a model header with INVALID_ARGUMENT).

In cluster mode the group also reports the InferenceServices this repository's profiles install themselves (namespace
`modelmesh-models`): their states are a figure of the report, and the check asserts only what the controller
promises of any status it writes, not that they are Loaded (see the check).
"""

from __future__ import annotations

from typing import Any

import pytest

from mmgitops.conformance.steps import Deployments, distinct_samples, wait_for_state
from mmgitops.conformance.target import LOADED, Platform, Target, TargetError
from mmgitops.conformance.verdict import not_reached
from mmgitops.modelmesh import defaults

pytestmark = pytest.mark.readiness
MODELS = 2
PROFILE_NAMESPACE = "modelmesh-models"  # where the profiles (components/modelmesh/samples*) put their samples
MODE = "serving.kserve.io/deploymentMode"
# The ModelState values of modelmesh-serving's Predictor status (apis/serving/v1alpha1/predictor_types.go).
MODEL_STATES = ("Pending", "Standby", "Loading", "Loaded", "FailedToLoad")


@pytest.fixture(scope="module")
def loaded(target: Target, deployments: Deployments) -> None:
    """Models on the target, so that its runtime has pods: ModelMesh-serving scales an unused runtime to zero."""
    models = [deployments.deploy(f"ready-{i}", s) for i, s in enumerate(distinct_samples(target, MODELS))]
    for model in models:
        wait_for_state(target, model.name, LOADED)


@pytest.fixture(scope="module")
def platform(target: Target, loaded: None) -> Platform:
    try:
        return target.platform()
    except TargetError as error:
        if error.code == "UNIMPLEMENTED":
            pytest.skip(error.message)
        not_reached(f"cannot read the platform: {error.message}")


def test_every_pod_answers_its_readiness_probe(target, loaded):
    pods = target.pods()
    assert pods, "the target has no pod"
    assert {pod: target.probe_ready(pod) for pod in pods} == {pod: True for pod in pods}


def readable(platform: Platform, part: str) -> None:
    """Not reached, naming the refused read, when the runner may not read this part of the platform: a
    least-privileged runner (no mmgitops-conformance-reader) is not a broken platform, and a failure would be a false
    alarm; nor is it a certified one."""
    if part in platform.unreadable:
        not_reached(f"the runner may not read it ({platform.unreadable[part]}); bind ClusterRole "
                    "mmgitops-conformance-reader to run this check")


def test_the_datasciencecluster_is_ready_with_modelmesh_serving_ready(platform):
    """The RHOAI operator reports each managed component as a `<Component>Ready` condition of the DSC, beside its
    overall `Ready` (opendatahub-operator; its e2e test validateModelMeshServingReady reads ModelMeshServingReady)."""
    readable(platform, "dsc")
    assert platform.dsc, "no DataScienceCluster on the cluster"
    conditions = platform.dsc_conditions
    assert (conditions.get("Ready"), conditions.get("ModelMeshServingReady")) == ("True", "True"), \
        f"DataScienceCluster {platform.dsc} conditions: {conditions}"


def test_the_modelmesh_controller_is_available(platform):
    """The controller runs as Deployment modelmesh-controller in the DSCI's applications namespace (modelmesh-serving
    config/manager/manager.yaml, as RHOAI deploys it); Available is the Deployment controller's own condition."""
    readable(platform, "dsc")  # the DSCI names the controller's namespace
    readable(platform, "controller")
    assert platform.controller_available, f"deployment {platform.controller} is not Available"


def test_every_runtime_pod_is_ready_with_its_containers(platform):
    assert platform.runtime_pods, f"runtime {platform.runtime} has no pods"
    wanted = {name: True for name in platform.runtime_containers}
    for pod in platform.runtime_pods:
        assert pod.ready, f"pod {pod.name} is not Ready"
        assert {name: pod.containers.get(name, False) for name in wanted} == wanted, \
            f"pod {pod.name} containers (name: ready): {pod.containers}"


def test_every_inference_service_is_loaded_and_up_to_date(platform):
    states = {s.name: (s.active_model_state, s.transition_status) for s in platform.services}
    assert len(states) == MODELS
    assert states == {name: (LOADED, "UpToDate") for name in states}


def test_every_inference_service_has_its_grpc_and_rest_urls(platform):
    host = f"modelmesh-serving.{platform.namespace}"
    urls = {s.name: (s.grpc_url, s.rest_url) for s in platform.services}
    assert len(urls) == MODELS
    wanted = (f"grpc://{host}:{defaults.GRPC_PORT}", f"http://{host}:{defaults.REST_PORT}")
    assert urls == dict.fromkeys(urls, wanted)


@pytest.fixture(scope="module")
def profile_services(platform: Platform, request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """The ModelMesh InferenceServices in the profiles' namespace, as the API server has them. Only in cluster mode
    (`platform` skips elsewhere); skipped when the profile's samples are not installed."""
    from kubernetes.client.rest import ApiException

    from mmgitops.conformance.cluster.platform import ISVC, reason

    session = request.getfixturevalue("cluster_session")
    try:
        items = session.custom.list_namespaced_custom_object(*ISVC[:2], PROFILE_NAMESPACE, ISVC[2])["items"]
    except ApiException as error:
        hint = "; bind ClusterRole mmgitops-conformance-reader to run this check" if error.status == 403 else ""
        not_reached(f"cannot list the InferenceServices of namespace {PROFILE_NAMESPACE}: {reason(error)}{hint}")
    services = [i for i in items if (i["metadata"].get("annotations") or {}).get(MODE) == "ModelMesh"]
    if not services:
        not_reached(f"no ModelMesh InferenceService in namespace {PROFILE_NAMESPACE}: the profile's samples are not "
                    "installed on this cluster")
    return services


def _model_status(isvc: dict[str, Any]) -> dict[str, Any]:
    return (isvc.get("status") or {}).get("modelStatus") or {}


def test_the_profiles_inference_services_are_reported_with_a_status_as_the_controller_writes_it(
        profile_services, record):
    """Reported, not required to be Loaded. The profiles' samples load from the user's own storage (the example
    storage-config names a MinIO that may not exist), the GPU runtime needs a GPU node, and neither is ModelMesh's
    behaviour: asserting Loaded would fail a sound platform for its sample data. What modelmesh-serving does promise
    of a status it has written (controllers/predictor_controller.go, rhoai-2.25): decodeModelState maps the mesh's
    status to one of the Predictor ModelStates, and a FailedToLoad always with a FailureReason, which
    updatePredictorStatusFromVModel puts in lastFailureInfo unless a transition to another model is under way
    (targetModelState set). An InferenceService without a status yet (a controller that has not reconciled it, or a
    namespace with no runtime) is reported as such."""
    states = {}
    for isvc in profile_services:
        model = _model_status(isvc)
        state = str((model.get("states") or {}).get("activeModelState") or "")
        why = str((model.get("lastFailureInfo") or {}).get("reason") or "")
        states[isvc["metadata"]["name"]] = f"{state} ({why})" if state and why and state != LOADED else (
            state or "no status yet")
    record("profile_services", states)
    written = {isvc["metadata"]["name"]: _model_status(isvc) for isvc in profile_services if _model_status(isvc)}
    unknown = {name: (m.get("states") or {}).get("activeModelState") for name, m in written.items()
               if (m.get("states") or {}).get("activeModelState") not in MODEL_STATES}
    assert unknown == {}, f"activeModelState not one of {MODEL_STATES}"
    unexplained = [name for name, m in written.items()
                   if m["states"]["activeModelState"] == "FailedToLoad" and not m["states"].get("targetModelState")
                   and not (m.get("lastFailureInfo") or {}).get("reason")]
    assert unexplained == [], "FailedToLoad with no lastFailureInfo.reason"

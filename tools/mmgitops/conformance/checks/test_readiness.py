"""Readiness: the platform serves ModelMesh, and every InferenceService the suite deploys reaches Loaded.

Read from the Kubernetes API, field by field, as a user reads `oc get dsc,deploy,pods,isvc -o yaml`. A mesh
target has no Kubernetes API, so there these checks are skipped with the reason. Every target's pods answer
ModelMesh's readiness probe, `GET /ready` on port 8089, which is the runtime Deployment's readinessProbe
(modelmesh-serving config/internal/base/deployment.yaml.tmpl); ModelMesh's gRPC port has no health RPC to
ask instead (ModelMeshApi answers ServerReady without a model header with INVALID_ARGUMENT).
"""

from __future__ import annotations

import pytest

from mmgitops.conformance.steps import Deployments, distinct_samples, wait_for_state
from mmgitops.conformance.target import LOADED, Platform, Target, TargetError
from mmgitops.modelmesh import defaults

pytestmark = pytest.mark.readiness
MODELS = 2


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
        pytest.skip(error.message)


def test_every_pod_answers_its_readiness_probe(target, loaded):
    pods = target.pods()
    assert pods, "the target has no pod"
    assert {pod: target.probe_ready(pod) for pod in pods} == {pod: True for pod in pods}


def test_the_datasciencecluster_is_ready_with_modelmesh_serving_ready(platform):
    assert platform.dsc, "no DataScienceCluster on the cluster"
    conditions = platform.dsc_conditions
    assert (conditions.get("Ready"), conditions.get("ModelMeshServingReady")) == ("True", "True"), \
        f"DataScienceCluster {platform.dsc} conditions: {conditions}"


def test_the_modelmesh_controller_is_available(platform):
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

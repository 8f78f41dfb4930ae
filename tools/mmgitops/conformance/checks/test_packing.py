"""Packing: a single-replica GPU runtime holds every InferenceService on its one pod.

ModelMesh has no GPU logic: a GPU runtime is a ServingRuntime with `spec.replicas: 1` and one `nvidia.com/gpu`,
whose memory request is the GPU memory budget. N InferenceServices on it must all load, one copy each, all on
that one pod (getVModelStatus names each copy's instance), and the pod count must not grow with N. The pod's
modelmesh_instance_models_total shows its published instance record (Metrics.logInstanceStats): the last
model's load starts PUBLISH_MIN_PERIOD_S after the others, so that the record it publishes counts all N
(ModelMesh.publishInstanceRecord skips a publish within that period of the last one).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mmgitops.conformance.settings import Settings
from mmgitops.conformance.steps import Deployments, tracked, wait_for_gauges, wait_for_state
from mmgitops.conformance.target import LOADED, PUBLISH_MIN_PERIOD_S, Deployed, Target, TargetError
from mmgitops.conformance.verdict import not_reached

pytestmark = pytest.mark.packing


class Packed:
    def __init__(self, pods_before: list[str], models: list[Deployed], pods_after: list[str]) -> None:
        self.pods_before, self.models, self.pods_after = pods_before, models, pods_after


@pytest.fixture(scope="module")
def gpu_deployments(gpu_target: Target, run_id: str) -> Iterator[Deployments]:
    yield from tracked(gpu_target, run_id, " on the GPU runtime")


@pytest.fixture(scope="module")
def packed(conformance_settings: Settings, gpu_target: Target, gpu_deployments: Deployments) -> Packed:
    count = conformance_settings.packing_models
    before = gpu_target.pods()
    samples = gpu_target.samples()
    models = [gpu_deployments.deploy(f"pack-{i:02d}", samples[i % len(samples)]) for i in range(count - 1)]
    for model in models:
        wait_for_state(gpu_target, model.name, LOADED)
    time.sleep(PUBLISH_MIN_PERIOD_S + 0.2)
    models.append(gpu_deployments.deploy(f"pack-{count - 1:02d}", samples[(count - 1) % len(samples)]))
    wait_for_state(gpu_target, models[-1].name, LOADED)
    return Packed(before, models, gpu_target.pods())


def test_the_gpu_runtime_has_one_pod_before_and_after_packing(packed):
    assert (len(packed.pods_before), packed.pods_after) == (1, packed.pods_before)


def test_every_packed_model_is_loaded(gpu_target, packed):
    states = {m.name: gpu_target.model_state(m.name) for m in packed.models}
    assert states == {m.name: LOADED for m in packed.models}


def test_every_packed_model_has_one_copy_on_the_one_pod(gpu_target, packed, record):
    locations = {m.name: gpu_target.copy_locations(m.name) for m in packed.models}
    per_pod: dict[str, int] = {}
    for where in locations.values():
        for pod in where:
            per_pod[pod] = per_pod.get(pod, 0) + 1
    record("models_per_pod", per_pod)
    assert locations == {m.name: packed.pods_before for m in packed.models}


def test_the_pod_reports_every_packed_model(gpu_target, packed):
    wait_for_gauges(gpu_target, packed.pods_before, "modelmesh_instance_models_total",
                    lambda total: total == len(packed.models), f"{len(packed.models)}, the models packed")


def test_every_packed_model_answers_its_own_prediction(gpu_target, packed):
    results = [gpu_target.infer(m.name) for m in packed.models]
    assert [(r.answer, r.model_id) for r in results] == [(m.sample.answer, m.model_id) for m in packed.models]


def test_the_gpu_pod_requests_a_gpu_and_runs_on_a_gpu_node(gpu_target, packed):
    try:
        pods = gpu_target.platform().runtime_pods
    except TargetError as error:
        if error.code == "UNIMPLEMENTED":
            pytest.skip(f"{error.message}: the GPU request and the node are read from the pod")
        not_reached(f"cannot read the GPU pod: {error.message}")
    assert [(p.name, p.gpu_request) for p in pods] == [(packed.pods_before[0], 1)]
    assert pods[0].node, f"pod {pods[0].name} is not scheduled on a node"
    if pods[0].node_gpus is None:
        not_reached(f"the runner may not read node {pods[0].node}, so its GPUs are unknown; bind ClusterRole "
                    "mmgitops-conformance-reader to check them")
    assert pods[0].node_gpus >= 1, f"pod {pods[0].name} runs on node {pods[0].node}, which has no nvidia.com/gpu"

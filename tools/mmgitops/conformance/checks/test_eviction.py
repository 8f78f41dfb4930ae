"""Eviction: a full pod makes room for a new model by evicting its least recently used one.

ModelMesh keeps a pod's models in an LRU cache weighed in 8 KiB units; a load that does not fit evicts the
least recently used entries of that pod (ModelMesh's runtimeCache, a ConcurrentLinkedHashMap in access order,
and its eviction listener ModelMesh.onEviction), and the evicted model goes Standby.

A model enters a full pod's cache only if it was used more recently than the pod's least recently used entry
(ModelMesh.loadLocal, which lets an older one fall through), and a model registered with loadNow counts as used
an hour ago (ModelMesh.registerModel, LASTUSED_AGE_ON_ADD_MS): on full pods, a new InferenceService stays
Standby until a request needs it, and that request's load is what evicts.

The target's pods each have room for K one-unit models (K read from `modelmesh_instance_capacity_bytes`).
The check fills every pod with K models (conftest.fill_every_pod), paced so that placement sees each load,
so that no pod has free room and the next load must evict wherever it lands. Which pod that is, is
placement's choice (CacheMissForwardingLB: among full pods, those whose published LRU time is oldest, then at
random), so the check does not predict it: it reads where the new copy went (copy_locations) and asserts the
per-pod rule there, exactly. The fill models are used in a known order and the churn age
(`tas.min_churn_age_ms`) is waited out, so every one may be evicted and each pod's victim is the first model
of that pod in the use order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from mmgitops.conformance.steps import (
    Deployments,
    fill_every_pod,
    pod_value,
    room_per_pod,
    summed,
    wait_for_state,
    wait_until_empty,
)
from mmgitops.conformance.target import LOADED, STANDBY, UNIT_BYTES, Deployed, Target

pytestmark = pytest.mark.eviction
EVICTIONS = "modelmesh_age_at_eviction_milliseconds_count"


def evictions(target: Target) -> float:
    return summed(target, EVICTIONS)


def past_churn_age(target: Target) -> None:
    time.sleep(target.min_churn_age_ms / 1000 + 0.3)


@dataclass
class Timeline:
    """Every model's state at the moments that matter, for the report's eviction timeline."""

    started: float = field(default_factory=time.monotonic)
    points: list[dict[str, object]] = field(default_factory=list)

    def snapshot(self, target: Target, models: list[Deployed]) -> None:
        at = round(time.monotonic() - self.started, 2)
        self.points += [{"t_s": at, "model": m.name, "state": target.model_state(m.name)} for m in models]


@dataclass
class Scenario:
    used_in_order: list[Deployed]  # the models that filled every pod, least recently used first
    pod_of: dict[str, str]  # where each fill model sat once every pod was full
    newcomer: Deployed
    evictions_before: float
    evictions_after: float
    timeline: Timeline

    def lru_on(self, pod: str, among: list[Deployed]) -> Deployed:
        on_pod = [m for m in among if self.pod_of[m.name] == pod]
        assert on_pod, f"none of {[m.name for m in among]} sat on pod {pod}"
        return on_pod[0]


def one_location(target: Target, model: Deployed) -> str:
    locations = target.copy_locations(model.name)
    assert len(locations) == 1, f"{model.name} has copies on {locations}; the check expects exactly one"
    return locations[0]


@pytest.fixture(scope="module")
def full_mesh(target: Target, deployments: Deployments) -> Scenario:
    room = room_per_pod(target)
    wait_until_empty(target, room)
    timeline = Timeline()
    samples = target.samples()
    per_pod = fill_every_pod(deployments, room, "lru")
    fill = sorted((m for models in per_pod.values() for m in models), key=lambda m: m.name)
    pod_of = {model.name: pod for pod, models in per_pod.items() for model in models}
    timeline.snapshot(target, fill)
    for model in fill:
        assert target.infer(model.name).model_id == model.model_id
    past_churn_age(target)
    before = evictions(target)
    # Registered, the newcomer counts as used an hour ago, longer ago than any fill model: a full pod does not
    # take it until it is requested. Its first request loads it and evicts.
    newcomer = deployments.deploy("lru-new", samples[0])
    answered = target.infer(newcomer.name)
    assert (answered.answer, answered.model_id) == (newcomer.sample.answer, newcomer.model_id)
    wait_for_state(target, newcomer.name, LOADED)
    timeline.snapshot(target, [*fill, newcomer])
    return Scenario(fill, pod_of, newcomer, before, evictions(target), timeline)


def test_the_least_recently_used_model_of_the_pod_goes_standby(target, full_mesh):
    pod = one_location(target, full_mesh.newcomer)
    victim = full_mesh.lru_on(pod, full_mesh.used_in_order)
    wait_for_state(target, victim.name, STANDBY, timeout_s=10)
    assert target.copy_locations(victim.name) == []


def test_the_recently_used_models_stay_loaded(target, full_mesh):
    victim = full_mesh.lru_on(one_location(target, full_mesh.newcomer), full_mesh.used_in_order)
    recent = [m for m in full_mesh.used_in_order if m != victim] + [full_mesh.newcomer]
    assert {m.name: target.model_state(m.name) for m in recent} == {m.name: LOADED for m in recent}


def test_the_eviction_is_counted(full_mesh):
    assert full_mesh.evictions_after == full_mesh.evictions_before + 1


def test_used_bytes_stay_within_capacity(target, full_mesh):
    for pod in target.pods():
        used = pod_value(target, pod, "modelmesh_instance_used_bytes")
        capacity = pod_value(target, pod, "modelmesh_instance_capacity_bytes")
        assert 0 < used <= capacity, f"pod {pod}: used {used} of {capacity} bytes"
        assert used % UNIT_BYTES == 0, f"pod {pod}: used {used} bytes is not a whole number of 8 KiB units"


def test_touching_the_evicted_model_reloads_it_and_evicts_the_next_lru(target, full_mesh, record):
    first = full_mesh.lru_on(one_location(target, full_mesh.newcomer), full_mesh.used_in_order)
    # Used now, the newcomer is the most recent model of its pod, never the next victim.
    target.infer(full_mesh.newcomer.name)
    result = target.infer(first.name)
    assert (result.answer, result.model_id) == (first.sample.answer, first.model_id)
    # The reload evicts on the pod it went to: that pod's least recently used model other than the first victim.
    pod = one_location(target, first)
    victim = full_mesh.lru_on(pod, [m for m in full_mesh.used_in_order if m != first])
    wait_for_state(target, victim.name, STANDBY, timeout_s=10)
    loaded = [m for m in full_mesh.used_in_order if m != victim] + [full_mesh.newcomer]
    # In cluster mode the state is the InferenceService's status, which modelmesh-serving writes after its etcd
    # watch sees the reload (pkg/mmesh/modelmesh_events.go, then ReconcilePredictor): a bounded wait, not one read.
    for model in loaded:
        wait_for_state(target, model.name, LOADED, timeout_s=10)
    assert evictions(target) == full_mesh.evictions_after + 1
    full_mesh.timeline.snapshot(target, [*full_mesh.used_in_order, full_mesh.newcomer])
    record("eviction_timeline", full_mesh.timeline.points)

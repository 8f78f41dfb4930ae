"""Eviction: a full pod makes room for a new model by evicting its least recently used one.

ModelMesh keeps a pod's models in an LRU cache weighed in 8 KiB units; a load that does not fit evicts the
least recently used entries of that pod (ModelMesh's runtimeCache, a ConcurrentLinkedHashMap in access order,
and its eviction listener ModelMesh.onEviction), and the evicted model goes Standby.

The checks read the overfull pods (conformance/overfull.py): every pod full of models used in a known order, and
one model more whose first request loaded it. Where that load went is placement's choice, so the checks do not
predict it: they read where the new copy went and assert the per-pod rule there, exactly: the pod's victim is its
first model in the use order.
"""

from __future__ import annotations

import pytest

from mmgitops.conformance.overfull import evictions, one_location
from mmgitops.conformance.steps import pod_value, wait_for_state
from mmgitops.conformance.target import LOADED, STANDBY, UNIT_BYTES

pytestmark = pytest.mark.eviction


def test_the_least_recently_used_model_of_the_pod_goes_standby(target, overfull_pods):
    pod = one_location(target, overfull_pods.newcomer)
    victim = overfull_pods.lru_on(pod, overfull_pods.used_in_order)
    wait_for_state(target, victim.name, STANDBY, timeout_s=10)
    assert target.copy_locations(victim.name) == []


def test_the_recently_used_models_stay_loaded(target, overfull_pods):
    victim = overfull_pods.lru_on(one_location(target, overfull_pods.newcomer), overfull_pods.used_in_order)
    recent = [m for m in overfull_pods.used_in_order if m != victim] + [overfull_pods.newcomer]
    assert {m.name: target.model_state(m.name) for m in recent} == {m.name: LOADED for m in recent}


def test_the_eviction_is_counted(overfull_pods):
    assert overfull_pods.evictions_after == overfull_pods.evictions_before + 1


def test_used_bytes_stay_within_capacity(target, overfull_pods):
    for pod in target.pods():
        used = pod_value(target, pod, "modelmesh_instance_used_bytes")
        capacity = pod_value(target, pod, "modelmesh_instance_capacity_bytes")
        assert 0 < used <= capacity, f"pod {pod}: used {used} of {capacity} bytes"
        assert used % UNIT_BYTES == 0, f"pod {pod}: used {used} bytes is not a whole number of 8 KiB units"


def test_touching_the_evicted_model_reloads_it_and_evicts_the_next_lru(target, overfull_pods, record):
    first = overfull_pods.lru_on(one_location(target, overfull_pods.newcomer), overfull_pods.used_in_order)
    # Used now, the newcomer is the most recent model of its pod, never the next victim.
    target.infer(overfull_pods.newcomer.name)
    result = target.infer(first.name)
    assert (result.answer, result.model_id) == (first.sample.answer, first.model_id)
    # The reload evicts on the pod it went to: that pod's least recently used model other than the first victim.
    pod = one_location(target, first)
    victim = overfull_pods.lru_on(pod, [m for m in overfull_pods.used_in_order if m != first])
    wait_for_state(target, victim.name, STANDBY, timeout_s=10)
    loaded = [m for m in overfull_pods.used_in_order if m != victim] + [overfull_pods.newcomer]
    # In cluster mode the state is the InferenceService's status, which modelmesh-serving writes after its etcd
    # watch sees the reload (pkg/mmesh/modelmesh_events.go, then ReconcilePredictor): a bounded wait, not one read.
    for model in loaded:
        wait_for_state(target, model.name, LOADED, timeout_s=10)
    assert evictions(target) == overfull_pods.evictions_after + 1
    overfull_pods.timeline.snapshot(target, [*overfull_pods.used_in_order, overfull_pods.newcomer])
    record("eviction_timeline", overfull_pods.timeline.points)

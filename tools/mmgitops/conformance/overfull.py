"""Every pod full and one model more: the scenario the eviction group checks and the coldload group goes on from.

The target's pods each have room for K one-unit models (K read from `modelmesh_instance_capacity_bytes`). The fill
gives every pod K models (steps.fill_every_pod), paced so that placement sees each load and no pod has free room.
The fill models are then used in a known order and the churn age (`tas.min_churn_age_ms`) is waited out, so every
one may be evicted and each pod's next victim is its first model in that order.

A model registered with loadNow counts as used an hour ago (ModelMesh.registerModel, LASTUSED_AGE_ON_ADD_MS), and
it enters a full pod's cache only if it was used more recently than that pod's least recently used entry
(ModelMesh.loadLocal). So the newcomer, one model more, stays Standby until its first request, whose load evicts
on the pod it lands on. Which pod that is, is placement's choice (CacheMissForwardingLB: among full pods, those
whose published LRU time is oldest, then at random): the checks read where the copy went (copy_locations).

Filling pods is the suite's slowest step, so a run does it once: the coldload group's rotation is these models,
one of them always in Standby (groups.RUN_ORDER runs coldload right after eviction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mmgitops.conformance.steps import (
    Deployments,
    fill_every_pod,
    room_per_pod,
    summed,
    wait_for_state,
    wait_until_empty,
)
from mmgitops.conformance.target import LOADED, Deployed, Target

EVICTIONS = "modelmesh_age_at_eviction_milliseconds_count"


def evictions(target: Target) -> float:
    return summed(target, EVICTIONS)


@dataclass
class Timeline:
    """Every model's state at the moments that matter, for the report's eviction timeline."""

    started: float = field(default_factory=time.monotonic)
    points: list[dict[str, object]] = field(default_factory=list)

    def snapshot(self, target: Target, models: list[Deployed]) -> None:
        at = round(time.monotonic() - self.started, 2)
        self.points += [{"t_s": at, "model": m.name, "state": target.model_state(m.name)} for m in models]


@dataclass
class Overfull:
    room: dict[str, int]  # each pod's room, in one-unit models
    used_in_order: list[Deployed]  # the models that filled every pod, least recently used first
    pod_of: dict[str, str]  # where each fill model sat once every pod was full
    newcomer: Deployed
    evictions_before: float
    evictions_after: float
    timeline: Timeline

    @property
    def models(self) -> list[Deployed]:
        return [*self.used_in_order, self.newcomer]

    def lru_on(self, pod: str, among: list[Deployed]) -> Deployed:
        on_pod = [m for m in among if self.pod_of[m.name] == pod]
        assert on_pod, f"none of {[m.name for m in among]} sat on pod {pod}"
        return on_pod[0]


def one_location(target: Target, model: Deployed) -> str:
    locations = target.copy_locations(model.name)
    assert len(locations) == 1, f"{model.name} has copies on {locations}; the check expects exactly one"
    return locations[0]


def overfill(target: Target, deployments: Deployments) -> Overfull:
    """Fill every pod, use the fill in order, wait out the churn age, then request one model more: one eviction."""
    room = room_per_pod(target)
    wait_until_empty(target, room)
    timeline = Timeline()
    per_pod = fill_every_pod(deployments, room, "lru")
    fill = sorted((m for models in per_pod.values() for m in models), key=lambda m: m.name)
    pod_of = {model.name: pod for pod, models in per_pod.items() for model in models}
    timeline.snapshot(target, fill)
    for model in fill:
        assert target.infer(model.name).model_id == model.model_id
    time.sleep(target.min_churn_age_ms / 1000 + 0.3)
    before = evictions(target)
    newcomer = deployments.deploy("lru-new", target.samples()[0])
    answered = target.infer(newcomer.name)
    assert (answered.answer, answered.model_id) == (newcomer.sample.answer, newcomer.model_id)
    wait_for_state(target, newcomer.name, LOADED)
    timeline.snapshot(target, [*fill, newcomer])
    return Overfull(room, fill, pod_of, newcomer, before, evictions(target), timeline)

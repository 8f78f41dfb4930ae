"""Cold loads: a request to a model that eviction put in Standby blocks until the model is loaded, then succeeds.

ModelMesh serves a request for a model with no loaded copy by loading it and then invoking it, within the
request (ModelMesh.invokeModel: a cache miss loads the model on a chosen pod and waits for the load, timed as
modelmesh_cache_miss_milliseconds). The checks go on from the overfull pods (conformance/overfull.py), which hold
one model fewer than were deployed, and request the one in Standby each time: every such request is a true cold
load (the model's copy was evicted, not never made), and the load it triggers evicts the least recently used
model of the pod it lands on, which becomes the next one to request. Each cold request is followed by warm ones
to the same model, the baseline its latency is compared to.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import pytest
import tenacity

from mmgitops.conformance.overfull import Overfull
from mmgitops.conformance.settings import Settings
from mmgitops.conformance.steps import summed
from mmgitops.conformance.target import STANDBY, Deployed, InferResult, Target, TargetError

pytestmark = pytest.mark.coldload
CACHE_MISSES = "modelmesh_cache_miss_milliseconds_count"
WARM_PER_COLD = 3


@dataclass
class ColdLoad:
    model: Deployed
    state_before: str
    locations_before: list[str]
    result: InferResult | None = None
    error: str = ""
    warm_ms: list[float] = field(default_factory=list)


@dataclass
class ColdRuns:
    loads: list[ColdLoad]
    misses_before: float
    misses_after: float

    def cold_ms(self) -> list[float]:
        return [load.result.ms for load in self.loads if load.result is not None]

    def warm_ms(self) -> list[float]:
        return [ms for load in self.loads for ms in load.warm_ms]


def p95(values: list[float]) -> float:
    return sorted(values)[math.ceil(0.95 * len(values)) - 1]  # nearest rank


def the_standby_one(target: Target, rotation: list[Deployed]) -> Deployed:
    """The model the last load evicted: every other one of the rotation is Loaded. A cluster writes the state
    a moment after the mesh acts, so the one is the model both call evicted: Standby, and no copy left."""
    def standby() -> list[Deployed]:
        return [m for m in rotation if target.model_state(m.name) == STANDBY and not target.copy_locations(m.name)]
    try:
        found = tenacity.Retrying(stop=tenacity.stop_after_delay(10), wait=tenacity.wait_fixed(0.1),
                                  retry=tenacity.retry_if_result(lambda s: not s))(standby)
    except tenacity.RetryError:
        states = {m.name: target.model_state(m.name) for m in rotation}
        raise AssertionError(f"no model went {STANDBY!r} although the pods hold one model fewer than "
                             f"{len(rotation)}: {states}") from None
    return found[0]


@pytest.fixture(scope="module")
def cold_runs(conformance_settings: Settings, target: Target, overfull_pods: Overfull) -> ColdRuns:
    count = conformance_settings.cold_loads
    room, rotation = overfull_pods.room, overfull_pods.models
    # A pod's victim was last used at least (its room - 1) loads earlier, even when every load lands on that pod;
    # pacing the loads keeps that past the churn age, or the pod would rightly refuse the load ("Cache churn
    # threshold exceeded", ModelMesh.invokeModel) instead of evicting.
    pace_s = target.min_churn_age_ms / 1000 / max(min(room.values()) - 1, 1) + 0.1
    before = summed(target, CACHE_MISSES)
    loads = []
    for _ in range(count):
        started = time.monotonic()
        model = the_standby_one(target, rotation)
        load = ColdLoad(model, target.model_state(model.name), target.copy_locations(model.name))
        try:
            load.result = target.infer(model.name)
            load.warm_ms = [target.infer(model.name).ms for _ in range(WARM_PER_COLD)]
        except TargetError as error:
            load.error = str(error)
        loads.append(load)
        time.sleep(max(0.0, pace_s - (time.monotonic() - started)))
    expected = before + count
    # The miss is counted as the request completes; a scrape right after may not show it yet.
    after = tenacity.Retrying(stop=tenacity.stop_after_delay(5), wait=tenacity.wait_fixed(0.2),
                              retry=tenacity.retry_if_result(lambda v: v != expected),
                              retry_error_callback=lambda state: state.outcome.result(),
                              )(summed, target, CACHE_MISSES)
    return ColdRuns(loads, before, after)


def test_an_evicted_model_goes_standby_and_its_first_request_succeeds(cold_runs):
    loads = cold_runs.loads
    assert [(load.state_before, load.locations_before) for load in loads] == [(STANDBY, [])] * len(loads)
    answered = [(load.result.answer, load.result.model_id) if load.result else load.error for load in loads]
    assert answered == [(load.model.sample.answer, load.model.model_id) for load in loads]


def test_cold_loads_stay_within_the_budget(conformance_settings, cold_runs, record):
    budget_ms = conformance_settings.cold_budget_ms
    cold, warm = cold_runs.cold_ms(), cold_runs.warm_ms()
    failed = [f"{load.model.name}: {load.error}" for load in cold_runs.loads if load.result is None]
    assert not failed, f"cold requests failed: {failed}"
    cold_p50, warm_p50 = statistics.median(cold), statistics.median(warm)
    record("cold_ms", cold, "ms")
    record("warm_ms", warm, "ms")
    record("cold_p50_ms", round(cold_p50, 1), "ms")
    record("cold_p95_ms", round(p95(cold), 1), "ms")
    record("warm_p50_ms", round(warm_p50, 2), "ms")
    record("cold_warm_ratio", round(cold_p50 / warm_p50, 1))
    assert cold_p50 <= budget_ms, f"cold p50 {cold_p50:.0f} ms over the {budget_ms:.0f} ms budget (cold: {cold})"


def test_a_cold_request_is_slower_than_a_warm_one(cold_runs):
    # Were the cold requests served by a copy that was still there, they would be as fast as the warm ones.
    cold, warm = cold_runs.cold_ms(), cold_runs.warm_ms()
    assert cold and warm, "no cold request succeeded"
    assert statistics.median(cold) > statistics.median(warm)


def test_every_cold_request_is_counted_as_a_cache_miss(cold_runs):
    assert cold_runs.misses_after == cold_runs.misses_before + len(cold_runs.loads)

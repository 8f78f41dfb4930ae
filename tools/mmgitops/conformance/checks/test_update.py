"""Update: pointing an InferenceService at another model swaps it in under steady load, with no failed request.

The promise is ModelMesh's (VModelManager.PendingTransition.run): while a vmodel's new target loads, requests keep
reaching its active model; once the target is loaded the leader makes it active and deletes the old model, which
modelmesh-serving creates with autoDeleteTargetModel, in one etcd transaction. A pod resolves the vmodel from its
own copy of the vmodel table (VModelManager.resolveVModelId), which the etcd watch moves forward; a request that
resolved it to the model just deleted is re-resolved once on a strong read (ModelMeshApi.callModel). How soon every
pod's copy follows is left open: the checks give it SETTLE_S.

The update is what a user does to an InferenceService: a new storage path (and format), from which the controller
registers a new concrete model (controllers/predictor_controller.go concreteModelName, the spec's hash) as the
vmodel's target. On a mesh target the suite sets the new target itself, as the controller would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import tenacity

from mmgitops.conformance.steps import Deployments, distinct_samples, wait_for_state
from mmgitops.conformance.target import LOADED, Deployed, ServiceStatus, Target, TargetError

pytestmark = pytest.mark.update
BASELINE_S = 1.0  # requests before the update
SWITCH_WAIT_S = 120.0  # for the new model to load and become active
SETTLE_S = 30.0  # for every pod to answer with the new model once it is active
AFTER_S = 1.0  # requests once every pod has
DELETE_WAIT_S = 30.0


@dataclass(frozen=True)
class Answer:
    at: float  # seconds since the load started
    pod: str
    model_id: str  # the concrete model the response names; "" for a failed request
    answer: int | None
    error: str = ""


@dataclass
class SteadyLoad:
    """One client sending the model's probe round-robin over the target's pods, without retries."""

    target: Target
    name: str
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def clock(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> None:
        turn = 0
        while not self.stop.is_set():
            pods = self.target.pods()
            pod = pods[turn % len(pods)]
            turn += 1
            try:
                result = self.target.infer(self.name, pod=pod)
                self.answers.append(Answer(self.clock(), pod, result.model_id, result.answer))
            except Exception as error:  # a failed request is an outcome to count, not a crash of the client
                self.answers.append(Answer(self.clock(), pod, "", None, str(error)))
            time.sleep(0.01)

    def by_pod(self) -> dict[str, list[Answer]]:
        pods: dict[str, list[Answer]] = {}
        for answer in self.answers:
            pods.setdefault(answer.pod, []).append(answer)
        return pods


@dataclass
class Swap:
    old: Deployed
    new: Deployed
    load: SteadyLoad
    submitted_at: float
    switched_at: float | None  # when the vmodel was seen to name the new model active
    statuses: list[tuple[float, ServiceStatus]]  # the InferenceService's distinct statuses meanwhile (cluster)

    def first_new(self) -> dict[str, float | None]:
        """Per pod, when it first answered with the new model."""
        return {pod: next((a.at for a in answers if a.model_id == self.new.model_id), None)
                for pod, answers in self.load.by_pod().items()}


def _status(target: Target, name: str) -> ServiceStatus | None:
    try:
        return target.service_status(name)
    except TargetError:
        return None  # no controller here (a mesh target), or no status yet


@pytest.fixture(scope="module")
def swap(target: Target, deployments: Deployments) -> Iterator[Swap]:
    old_sample, new_sample = distinct_samples(target, 2)
    old = deployments.deploy("update", old_sample)
    wait_for_state(target, old.name, LOADED)
    load = SteadyLoad(target, old.name)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    statuses: list[tuple[float, ServiceStatus]] = []

    def note() -> None:
        status = _status(target, old.name)
        if status is not None and (not statuses or statuses[-1][1] != status):
            statuses.append((round(load.clock(), 2), status))

    try:
        time.sleep(BASELINE_S)
        submitted = load.clock()
        new = target.update(old.name, new_sample)
        switched = None
        deadline = time.monotonic() + SWITCH_WAIT_S
        while time.monotonic() < deadline and switched is None:
            note()
            if target.vmodel(old.name).active == new.model_id:
                switched = load.clock()
            time.sleep(0.1)
        made = Swap(old, new, load, submitted, switched, statuses)
        deadline = time.monotonic() + SETTLE_S
        while switched is not None and time.monotonic() < deadline and None in made.first_new().values():
            note()
            time.sleep(0.1)
        time.sleep(AFTER_S)
    finally:
        load.stop.set()
        thread.join(timeout=30)
    yield made


def test_no_request_fails_while_the_model_is_replaced(swap, record):
    answers = swap.load.answers
    failed = [f"{a.at:.2f} s via {a.pod}: {a.error}" for a in answers if a.error]
    record("update", {"requests": len(answers), "failed": len(failed),
                      "switched_after_s": None if swap.switched_at is None else
                      round(swap.switched_at - swap.submitted_at, 2)})
    assert len(answers) > 0
    assert failed[:5] == [], f"{len(failed)} of {len(answers)} requests failed"


def test_the_new_model_becomes_active_once_loaded(swap):
    assert swap.switched_at is not None, (
        f"vmodel {swap.old.name} still names {swap.old.model_id} active {SWITCH_WAIT_S:.0f} s after the update")


def test_every_answer_is_the_old_model_until_the_pod_answers_with_the_new_one(swap):
    """Per pod, monotonic: its copy of the vmodel table only moves forward, so once a pod answers with the new
    model it never answers with the old one again; and nothing but the two models answers."""
    expected = {swap.old.model_id: swap.old.sample.answer, swap.new.model_id: swap.new.sample.answer}
    strays = [f"{a.at:.2f} s via {a.pod}: {a.answer} as {a.model_id}" for a in swap.load.answers
              if not a.error and expected.get(a.model_id) != a.answer]
    assert strays[:5] == []
    backwards = {pod: [f"{a.at:.2f} s" for a in answers if a.model_id == swap.old.model_id and first is not None
                       and a.at > first]
                 for pod, answers in swap.load.by_pod().items() if (first := swap.first_new()[pod]) is not None}
    assert {pod: times for pod, times in backwards.items() if times} == {}


def test_every_pod_answers_with_the_new_model_soon_after_the_switch(swap, record):
    assert swap.switched_at is not None, "the new model never became active"
    delays = {pod: None if at is None else round(max(at - swap.switched_at, 0.0), 2)
              for pod, at in swap.first_new().items()}
    record("update_pods_new_after_s", delays)
    assert {pod: at for pod, at in delays.items() if at is None or at > SETTLE_S} == {}


def test_the_replaced_model_is_deleted(target, swap):
    """autoDeleteTargetModel: the old model goes in the transaction that makes the new one active."""
    try:
        state = tenacity.Retrying(stop=tenacity.stop_after_delay(DELETE_WAIT_S), wait=tenacity.wait_fixed(0.5),
                                  retry=tenacity.retry_if_result(lambda s: s != "NOT_FOUND"),
                                  )(target.concrete_state, swap.old.model_id)
    except tenacity.RetryError as error:
        state = error.last_attempt.result()
    assert state == "NOT_FOUND", f"model {swap.old.model_id} is {state} {DELETE_WAIT_S:.0f} s after the update"


def test_the_controller_reports_the_update_done(target, swap, record):
    """Cluster mode: the controller reconciles the InferenceService on the vmodel's etcd event and writes what
    getVModelStatus says: the new model Loaded, no target state, transitionStatus UpToDate
    (predictor_controller.go updatePredictorStatusFromVModel, transitionStatusMap). What it wrote meanwhile
    (InProgress, a targetModelState) is recorded, not required: a transition can finish between two reads."""
    try:
        target.service_status(swap.old.name)
    except TargetError as error:
        if error.code == "UNIMPLEMENTED":
            pytest.skip(error.message)
    record("update_statuses", [f"{t:.2f} s: {s.active_model_state}/{s.target_model_state or '-'}/"
                               f"{s.transition_status}" for t, s in swap.statuses])

    def done() -> tuple[str, str, str]:
        status = target.service_status(swap.old.name)
        return status.active_model_state, status.target_model_state, status.transition_status

    wanted = (LOADED, "", "UpToDate")
    try:
        seen = tenacity.Retrying(stop=tenacity.stop_after_delay(DELETE_WAIT_S), wait=tenacity.wait_fixed(0.5),
                                 retry=tenacity.retry_if_result(lambda s: s != wanted))(done)
    except tenacity.RetryError as error:
        seen = error.last_attempt.result()
    assert seen == wanted

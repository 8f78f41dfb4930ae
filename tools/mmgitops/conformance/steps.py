"""The steps the checks share: deploying under the run's prefix, waiting on ModelMesh's clocks, filling pods,
reading gauges. Each waits a bounded time and fails with what it saw."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import tenacity

from mmgitops.conformance.target import (
    GONE,
    LOADED,
    PUBLISH_MIN_PERIOD_S,
    PUBLISHED_WITHIN_S,
    UNIT_BYTES,
    Deployed,
    SampleRef,
    Target,
)
from mmgitops.modelmesh import metrics


class Deployments:
    """What the suite created on the target, each name carrying the run's prefix, for teardown."""

    def __init__(self, target: Target, prefix: str) -> None:
        self.target = target
        self.prefix = prefix
        self.names: list[str] = []

    def deploy(self, name: str, sample: SampleRef, load: bool = True, runtime: str | None = None) -> Deployed:
        full = f"{self.prefix}-{name}"
        self.names.append(full)
        return self.target.deploy(full, sample, load, runtime)

    def remove_all(self) -> list[str]:
        """Undeploy everything, carrying on past failures; returns the failures."""
        failures = []
        while self.names:
            name = self.names.pop()
            try:
                self.target.undeploy(name)
                wait_for_state(self.target, name, GONE, timeout_s=30)
            except Exception as error:  # teardown reports every leftover, not the first
                failures.append(f"{name}: {error}")
        return failures


def tracked(target: Target, run_id: str, where: str = "") -> Iterator[Deployments]:
    """Deployments on the target under the run's prefix, all removed at the end; leftovers fail the teardown."""
    made = Deployments(target, f"conf-{run_id}")
    yield made
    failures = made.remove_all()
    if failures:
        pytest.fail(f"teardown left models behind{where}: " + "; ".join(failures))


def wait_for_state(target: Target, name: str, wanted: str, timeout_s: float = 60) -> None:
    """Poll the model's activeModelState (not Ready, which stays True while Standby) until it is `wanted`."""
    try:
        tenacity.Retrying(stop=tenacity.stop_after_delay(timeout_s), wait=tenacity.wait_fixed(0.2),
                          retry=tenacity.retry_if_result(lambda state: state != wanted), reraise=False,
                          )(target.model_state, name)
    except tenacity.RetryError as error:
        seen = error.last_attempt.result() if not error.last_attempt.failed else error.last_attempt.exception()
        # An AssertionError, not pytest.fail: teardown catches it and carries on with the other models.
        raise AssertionError(f"model {name} is {seen!r}, not {wanted!r}, after {timeout_s:.0f} s") from None


def distinct_samples(target: Target, count: int) -> list[SampleRef]:
    """`count` samples with different answers, so a response shows which model served it."""
    by_answer: dict[int, SampleRef] = {}
    for sample in target.samples():
        by_answer.setdefault(sample.answer, sample)
    if len(by_answer) < count:
        pytest.fail(f"the target offers {len(by_answer)} distinguishable sample models; the check needs {count}")
    return list(by_answer.values())[:count]


def deploy_paced(deployments: Deployments, named: list[tuple[str, SampleRef]]) -> list[Deployed]:
    """Deploy one model at a time, each Loaded before the next, and each load starting at least
    PUBLISH_MIN_PERIOD_S after the one before. A load queued on a pod publishes the pod's instance record unless
    the pod published less than that ago (ModelMesh.publishInstanceRecord), and other pods place new copies by
    those records (CacheMissForwardingLB.getNext): paced, every placement sees where the models already are, and
    no load lands on a pod that is full while another has room. Unpaced, a fill can overflow one pod and evict
    models that were loaded but never used, which ModelMesh ranks as used an hour ago (LASTUSED_AGE_ON_ADD_MS)."""
    made = []
    for name, sample in named:
        started = time.monotonic()
        made.append(deployments.deploy(name, sample))
        wait_for_state(deployments.target, made[-1].name, LOADED)
        time.sleep(max(0.0, started + PUBLISH_MIN_PERIOD_S + 0.2 - time.monotonic()))
    return made


def fill_every_pod(deployments: Deployments, room: dict[str, int], prefix: str) -> dict[str, list[Deployed]]:
    """Deploy models, paced, until every pod holds as many as it has room for; each pod's models in the order
    they were deployed. Paced placement still picks at random among the pods it judges in range
    (CacheMissForwardingLB.getNext), and can pick a pod that is full, whose load then evicts one of the fill's
    own never-used models: so the fill goes on until every pod is full, and models left without a copy are
    not part of it."""
    target, samples = deployments.target, deployments.target.samples()
    made: list[Deployed] = []
    limit = 3 * sum(room.values())
    while True:
        where = {m.name: target.copy_locations(m.name) for m in made}
        per_pod = {pod: [m for m in made if where[m.name] == [pod]] for pod in room}
        missing = sum(max(0, room[pod] - len(models)) for pod, models in per_pod.items())
        if not missing:
            return per_pod
        if len(made) + missing > limit:
            pytest.fail(f"{len(made)} models deployed and the pods hold {({p: len(m) for p, m in per_pod.items()})} "
                        f"of the {room} they have room for")
        made += deploy_paced(deployments, [(f"{prefix}-{len(made) + i:02d}", samples[(len(made) + i) % len(samples)])
                                           for i in range(missing)])


def pod_value(target: Target, pod: str, name: str) -> float:
    value = metrics.value(target.metrics(pod), name)
    assert value is not None, f"pod {pod} does not report {name}"
    return value


def summed(target: Target, name: str) -> float:
    """A metric summed over the target's pods; pods that do not report it count 0."""
    return metrics.total((target.metrics(pod) for pod in target.pods()), name)


def capacity_models(target: Target, pod: str) -> int | None:
    """How many one-unit models the pod has room for, from its modelmesh_instance_capacity_bytes."""
    capacity = metrics.value(target.metrics(pod), "modelmesh_instance_capacity_bytes")
    return None if capacity is None else int(capacity) // UNIT_BYTES


def room_per_pod(target: Target, timeout_s: float = PUBLISHED_WITHIN_S) -> dict[str, int]:
    """Each pod's room. ModelMesh sets its modelmesh_instance_* gauges only when it publishes a changed instance
    record (Metrics.logInstanceStats from ModelMesh.publishInstanceRecord, which skips an unchanged one) or at its
    janitor's run (every 6 minutes): an idle pod just started reports 0. So a pod that reports nothing takes the
    room its runtime's spec declares, where the suite made the runtime; otherwise a bounded wait."""
    deadline = time.monotonic() + timeout_s
    declared = target.declared_room()
    while True:
        room = {pod: capacity_models(target, pod) or declared for pod in target.pods()}
        missing = [pod for pod, k in room.items() if not k]
        if not missing:
            return {pod: int(k or 0) for pod, k in room.items()}
        if time.monotonic() > deadline:
            pytest.fail(f"pods {', '.join(missing)} report no modelmesh_instance_capacity_bytes after "
                        f"{timeout_s:.0f} s")
        time.sleep(1.0)


def wait_for_gauges(target: Target, pods: list[str], name: str, wanted: Callable[[float], bool], what: str,
                    timeout_s: float = PUBLISHED_WITHIN_S) -> dict[str, float]:
    """Poll a per-pod gauge until every pod's value is `wanted`. ModelMesh's modelmesh_instance_* gauges show
    the pod's last published instance record, republished by a periodic task (INSTANCE_REC_PUBLISH_FREQ_MS) when
    the change is large enough: a pod emptied or filled shows within PUBLISHED_WITHIN_S, not at once."""
    def values() -> dict[str, float]:
        return {pod: pod_value(target, pod, name) for pod in pods}
    try:
        return tenacity.Retrying(stop=tenacity.stop_after_delay(timeout_s), wait=tenacity.wait_fixed(0.5),
                                 retry=tenacity.retry_if_result(lambda v: not all(map(wanted, v.values()))))(values)
    except tenacity.RetryError as error:
        pytest.fail(f"{name} after {timeout_s:.0f} s: {error.last_attempt.result()}; expected {what}")


def wait_until_empty(target: Target, room: dict[str, int]) -> None:
    """A fill counts on empty pods: models another group undeployed are unloaded asynchronously, and the pods
    publish the change on ModelMesh's clock (see wait_for_gauges)."""
    wait_for_gauges(target, list(room), "modelmesh_instance_used_bytes", lambda used: used == 0,
                    "0 on every pod: pods still hold models this check did not deploy")

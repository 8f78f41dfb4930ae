"""The recipe's scale on a cluster: many InferenceServices registered on a runtime of a few pods, far more than
their memory holds, then every one requested once and a request stream with a hot set. Measured, not asserted
(`mmgitops bench scale`).

What ModelMesh promises here, and so what the figures are read against: every registered model answers, loading
it on a request if it has no copy (ModelMesh.invokeModel, timed as modelmesh_cache_miss_milliseconds); a full pod
evicts its least recently used model (the runtime cache's eviction listener, ModelMesh.onEviction) unless that one
was used within the churn age (`tas.min_churn_age_ms`, 300 s unless the platform lowers it); a pod's models never
take more than its capacity (modelmesh_instance_used_bytes against modelmesh_instance_capacity_bytes).
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmgitops.conformance.cluster import objects
from mmgitops.conformance.cluster.target import ISVC, ClusterTarget
from mmgitops.conformance.overfull import EVICTIONS
from mmgitops.conformance.steps import summed
from mmgitops.conformance.target import LOADED, TargetError
from mmgitops.modelmesh import metrics

CACHE_MISSES = "modelmesh_cache_miss_milliseconds_count"
REGISTER_WITHIN_S = 900.0


@dataclass(frozen=True)
class Plan:
    models: int = 100
    hot: int = 15  # the hot set: fewer models than the pods hold
    stream_s: float = 60.0
    hot_share: float = 0.9  # of the stream's requests
    clients: int = 2
    sample_every_s: float = 5.0
    seed: int = 7


@dataclass
class Request:
    at_s: float
    model: str
    ms: float
    ok: bool
    hot: bool = False
    cold: bool = False
    error: str = ""


@dataclass
class Timeline:
    """Per pod, the models loaded and the bytes used over time, from its published gauges."""

    started: float = field(default_factory=time.monotonic)
    points: list[dict[str, Any]] = field(default_factory=list)

    def sample(self, target: ClusterTarget) -> None:
        at = round(time.monotonic() - self.started, 1)
        for pod in target.pods():
            try:
                scraped = target.metrics(pod)
            except TargetError:
                continue
            self.points.append({"t_s": at, "pod": pod,
                                "models": metrics.value(scraped, "modelmesh_instance_models_total"),
                                "used_bytes": metrics.value(scraped, "modelmesh_instance_used_bytes"),
                                "capacity_bytes": metrics.value(scraped, "modelmesh_instance_capacity_bytes")})


def names(plan: Plan) -> list[str]:
    return [f"scale-{i:03d}" for i in range(plan.models)]


def register(target: ClusterTarget, plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    """Create every InferenceService in one pass, as one `kubectl apply` of them does; then wait until the
    controller has written a model status for each. Seconds from the first create."""
    s = target.session
    started, created, first_status = time.monotonic(), {}, {}
    for i, name in enumerate(names(plan)):
        sample = s.samples[i % len(s.samples)]
        key = json.loads(sample.key)
        s.custom.create_namespaced_custom_object(*ISVC[:2], s.namespace, ISVC[2], objects.inference_service(
            name, s.namespace, s.run_id, target.runtime, sample.type, key["storage_key"],
            key["storage_params"]["bucket"], sample.path))
        created[name] = time.monotonic() - started
    applied_s = time.monotonic() - started
    while len(first_status) < plan.models:
        if time.monotonic() - started > REGISTER_WITHIN_S:
            raise TargetError("DEADLINE_EXCEEDED", f"{plan.models - len(first_status)} InferenceServices have no "
                              f"status after {REGISTER_WITHIN_S:.0f} s")
        now = time.monotonic() - started
        for item in s.custom.list_namespaced_custom_object(*ISVC[:2], s.namespace, ISVC[2])["items"]:
            name = item["metadata"]["name"]
            states = ((item.get("status") or {}).get("modelStatus") or {}).get("states") or {}
            if name in created and name not in first_status and states.get("activeModelState"):
                first_status[name] = now
        progress(f"{len(first_status)}/{plan.models} InferenceServices with a status after {now:.0f} s")
        time.sleep(1.0)
    lags = [first_status[n] - created[n] for n in created]
    return {"applied_s": round(applied_s, 1), "every_status_s": round(max(first_status.values()), 1),
            "controller_status_p50_s": round(statistics.median(lags), 1),
            "controller_status_max_s": round(max(lags), 1)}


def answer_each(target: ClusterTarget, plan: Plan, progress: Callable[[str], None]) -> tuple[list[Request], float]:
    """Every model requested once, in order; a model not Loaded before its request (in Standby, or still
    loading from its registration) is a cold load."""
    samples, started, done = target.samples(), time.monotonic(), []
    for i, name in enumerate(names(plan)):
        cold = target.model_state(name) != LOADED
        done.append(_request(target, name, started, samples[i % len(samples)].answer, cold=cold))
        if i % 10 == 9:
            progress(f"{i + 1}/{plan.models} models answered once")
    return done, time.monotonic() - started


def _request(target: ClusterTarget, name: str, started: float, answer: int, hot: bool = False,
             cold: bool = False) -> Request:
    at = time.monotonic() - started
    try:
        result = target.infer(name)
    except TargetError as error:
        return Request(round(at, 2), name, 0.0, False, hot, cold, str(error)[:200])
    ok = result.answer == answer
    return Request(round(at, 2), name, result.ms, ok, hot, cold, "" if ok else f"answer {result.answer}")


def stream(target: ClusterTarget, plan: Plan, progress: Callable[[str], None]) -> list[Request]:
    """`plan.clients` clients for `plan.stream_s`: each request to the hot set with `plan.hot_share`, else to a
    model outside it, chosen at random."""
    all_names, samples = names(plan), target.samples()
    answer = {name: samples[i % len(samples)].answer for i, name in enumerate(all_names)}
    hot, rest = all_names[:plan.hot], all_names[plan.hot:]
    started, done, lock = time.monotonic(), [], threading.Lock()

    def client(seed: int) -> None:
        pick = random.Random(seed)
        while time.monotonic() - started < plan.stream_s:
            is_hot = pick.random() < plan.hot_share or not rest
            name = pick.choice(hot if is_hot else rest)
            made = _request(target, name, started, answer[name], hot=is_hot)
            with lock:
                done.append(made)

    threads = [threading.Thread(target=client, args=(plan.seed + i,), daemon=True) for i in range(plan.clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        progress(f"request stream: {len(done)} requests after {time.monotonic() - started:.0f} s")
        time.sleep(min(5.0, plan.stream_s))
    return sorted(done, key=lambda r: r.at_s)


class Sampler:
    """The timeline, sampled every `every_s` on a thread of its own while the scenario runs."""

    def __init__(self, target: ClusterTarget, every_s: float) -> None:
        self.timeline, self.target, self.every_s = Timeline(), target, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.timeline.sample(self.target)
            self._stop.wait(self.every_s)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self.timeline

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def measure(target: ClusterTarget, plan: Plan, progress: Callable[[str], None]) -> dict[str, Any]:
    """The whole scenario; the figures as numbers (report.figures makes them a table)."""
    with Sampler(target, plan.sample_every_s) as timeline:
        registered = register(target, plan, progress)
        first, answered_s = answer_each(target, plan, progress)
        evictions, misses = summed(target, EVICTIONS), summed(target, CACHE_MISSES)
        requests = stream(target, plan, progress)
        evicted = summed(target, EVICTIONS) - evictions
        missed = summed(target, CACHE_MISSES) - misses
    return {"plan": plan.__dict__, "registered": registered, "first_requests": [r.__dict__ for r in first],
            "every_answered_s": round(registered["every_status_s"] + answered_s, 1),
            "stream": [r.__dict__ for r in requests], "stream_evictions": evicted, "stream_cache_misses": missed,
            "timeline": timeline.points}

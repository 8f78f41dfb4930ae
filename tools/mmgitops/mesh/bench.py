"""`mmgitops bench mesh`: the local mesh's cost and behaviour under load, printed as figures.

1. Latency and throughput of one warm model through the mesh (the instance holding it) against the
   same request, from the same client, straight to that instance's MLServer.
2. Cold loads: requests to registered models that have no copy, each blocking until its load finishes.
3. Density: many registered models on instances with room for a fraction of them, a hot set
   requested steadily with some cold traffic beside it; the hot set must stay warm.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import requests
from mlserver.grpc import dataplane_pb2_grpc as v2_grpc
from prometheus_client.parser import text_string_to_metric_families

from mmgitops.mesh import control, samples
from mmgitops.mesh.cache import UNIT
from mmgitops.mesh.peers import mesh_grpc, mesh_pb

MESH = "bench"


@dataclass
class Figures:
    lines: list[str]

    def add(self, text: str) -> None:
        self.lines.append(text)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def timed(call: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def throughput(call: Callable[[], Any], seconds: float, clients: int) -> float:
    done = [0] * clients
    stop = threading.Event()

    def worker(k: int) -> None:
        while not stop.is_set():
            call()
            done[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


class Bench:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.channels = [grpc.insecure_channel(i["grpc"]) for i in state["instances"]]
        self.mm = mesh_grpc.ModelMeshStub(self.channels[0])

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def register(self, vmodel: str, sample: dict[str, Any], load: bool) -> str:
        model_id = control.concrete_id(vmodel, sample["path"])
        self.mm.setVModel(mesh_pb.SetVModelRequest(
            vModelId=vmodel, targetModelId=model_id, loadNow=load, sync=True, autoDeleteTargetModel=True,
            modelInfo=mesh_pb.ModelInfo(type="sklearn", path=sample["path"], key=control.model_key(sample))),
            timeout=120)
        return model_id

    def holder(self, model_id: str) -> int:
        status = self.mm.getModelStatus(mesh_pb.GetStatusRequest(modelId=model_id), timeout=10)
        location = status.modelCopyInfos[0].location
        return [i["id"] for i in self.state["instances"]].index(location)

    def infer(self, instance: int, name: str) -> Callable[[], Any]:
        stub = v2_grpc.GRPCInferenceServiceStub(self.channels[instance])
        request = samples.probe_request(name)
        return lambda: stub.ModelInfer(request, timeout=60)

    def metric_sum(self, name: str) -> float:
        total = 0.0
        for instance in self.state["instances"]:
            text = requests.get(instance["metrics"], timeout=10).text
            total += sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)
        return total


def latency(bench: Bench, out: Figures, requests_n: int, seconds: float, clients: int) -> float:
    sample = bench.state["samples"][0]
    model_id = bench.register("bench-warm", sample, load=True)
    holder = bench.holder(model_id)
    runtime = json.loads((Path(bench.state["instances"][holder]["config"]).parent / "runtime.json").read_text())
    direct_channel = grpc.insecure_channel(runtime["grpc"])
    direct = v2_grpc.GRPCInferenceServiceStub(direct_channel)
    direct_request = samples.probe_request(model_id)
    calls = {"direct to MLServer": lambda: direct.ModelInfer(direct_request, timeout=60),
             "through the mesh": bench.infer(holder, "bench-warm"),
             "mesh, forwarded": bench.infer((holder + 1) % len(bench.channels), "bench-warm")}
    for call in calls.values():
        timed(call, 200)  # warm up channels and caches
    # Interleaved, request by request and window by window: on a small shared machine the load changes by the
    # second, and each path must see the same conditions.
    lat: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(requests_n):
        for label, call in calls.items():
            lat[label].extend(timed(call, 1))
    windows = 5
    rates: dict[str, list[float]] = {label: [] for label in calls}
    for _ in range(windows):
        for label, call in calls.items():
            rates[label].append(throughput(call, seconds / windows, clients))
    results = {label: (percentile(lat[label], 50), percentile(lat[label], 99), sum(rates[label]) / windows)
               for label in calls}
    direct_channel.close()
    out.add(f"warm latency and throughput ({requests_n} sequential requests per path, interleaved; {clients} clients "
            f"for {seconds:.0f} s per path, in {windows} alternating windows):")
    for label, (p50, p99, rate) in results.items():
        out.add(f"  {label:<20} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:7.0f} req/s")
    d50, _, drate = results["direct to MLServer"]
    m50, _, mrate = results["through the mesh"]
    out.add(f"  added p50 {m50 - d50:.3f} ms (goal: at most 1 ms); throughput {mrate / drate:.0%} of direct "
            f"(goal: at least 70%)")
    return m50


def cold(bench: Bench, out: Figures, loads: int) -> None:
    pool = bench.state["samples"]
    for k in range(loads):
        bench.register(f"bench-cold-{k}", pool[k % len(pool)], load=False)
    before = bench.metric_sum("modelmesh_cache_miss_milliseconds_count")
    times = [timed(bench.infer(k % len(bench.channels), f"bench-cold-{k}"), 1)[0] for k in range(loads)]
    misses = bench.metric_sum("modelmesh_cache_miss_milliseconds_count") - before
    out.add(f"cold loads ({loads} requests to models with no copy, S3 pull + MLServer load included):")
    out.add(f"  p50 {percentile(times, 50):.1f} ms  p95 {percentile(times, 95):.1f} ms  max {max(times):.1f} ms "
            f"(goal: p50 at most 150 ms; ModelMesh on GPUs: 200-500 ms); cache misses counted: {misses:.0f}")


def density(bench: Bench, out: Figures, models: int, hot: int, rounds: int, warm_p50: float,
            progress: Callable[[str], None]) -> None:
    pool = bench.state["samples"]
    started = time.monotonic()
    for k in range(models):
        if k % 50 == 0:
            progress(f"density: registering model {k}/{models} ({time.monotonic() - started:.0f} s)")
        bench.register(f"dense-{k}", pool[k % len(pool)], load=True)
    evictions_before = bench.metric_sum("modelmesh_age_at_eviction_milliseconds_count")
    rng = random.Random(7)
    hot_calls = [bench.infer(rng.randrange(len(bench.channels)), f"dense-{k}") for k in range(hot)]
    cold_names = [f"dense-{k}" for k in range(hot, models)]
    for call in hot_calls:  # first touch: loads the hot set
        call()
    hot_times: list[float] = []
    cold_times: list[float] = []
    for r in range(rounds):
        progress(f"density: round {r + 1}/{rounds}")
        for k, call in enumerate(hot_calls):
            hot_times.extend(timed(call, 1))
            if k % 10 == 0:  # one cold request per ten hot ones keeps eviction going
                cold_times.extend(timed(bench.infer(rng.randrange(len(bench.channels)), rng.choice(cold_names)), 1))
    evicted = bench.metric_sum("modelmesh_age_at_eviction_milliseconds_count") - evictions_before
    p99 = percentile(hot_times, 99)
    out.add(f"density ({models} registered on {len(bench.channels)} instances with room for "
            f"{bench.state['options']['capacity_bytes'] // UNIT * len(bench.channels)}; hot set {hot}, "
            f"{len(hot_times)} hot and {len(cold_times)} cold requests):")
    out.add(f"  hot p50 {percentile(hot_times, 50):.3f} ms  hot p99 {p99:.3f} ms  cold p50 "
            f"{percentile(cold_times, 50):.1f} ms  evictions during the run {evicted:.0f}")
    out.add(f"  hot p99 / warm p50 = {p99 / warm_p50:.2f} (goal: at most 3; warm p50 is a request entering the "
            f"instance that holds the model, while hot requests enter any instance, as through a Service); "
            f"hot p99 / hot p50 = {p99 / percentile(hot_times, 50):.2f}")


def run(progress: Callable[[str], None], requests_n: int = 2000, seconds: float = 5.0, clients: int = 4,
        cold_loads: int = 40, models: int = 1000, hot: int = 50, rounds: int = 10) -> str:
    """Two meshes in turn: roomy for latency and cold loads, then one with room for about 100 models."""
    out = Figures([])
    control.down(MESH)
    progress("starting a 3-instance mesh")
    state = control.up(control.Options(samples=10, register_samples=False), progress, MESH)
    bench = Bench(state)
    try:
        progress("warm latency and throughput")
        warm_p50 = latency(bench, out, requests_n, seconds, clients)
        progress("cold loads")
        cold(bench, out, cold_loads)
    finally:
        bench.close()
        control.down(MESH)
    progress("starting a 3-instance mesh with room for about 100 models")
    per_instance = (100 // 3 + 1) * UNIT
    state = control.up(control.Options(samples=10, register_samples=False, capacity_bytes=per_instance,
                                       min_churn_age_ms=1000), progress, MESH)
    bench = Bench(state)
    try:
        density(bench, out, models, hot, rounds, warm_p50, progress)
    finally:
        bench.close()
        control.down(MESH)
    return "\n".join(out.lines)

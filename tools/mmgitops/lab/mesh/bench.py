"""`mmgitops bench mesh`: a local mesh's cost and behaviour under load, per engine, side by side.

For each engine asked for (`embedded`, `reference`, in turn and in one run) it starts a fresh mesh of the same
shape with the same samples, sends the same request counts and collects:

1. Latency and throughput of one warm model through the mesh (on the pod holding the copy, and forwarded by
   another pod) against the same request, from the same client, straight to that pod's MLServer.
2. Cold loads: requests to registered models that have no copy, each blocking until its load finishes.
3. Density: many registered models on pods with room for a fraction of them, a hot set requested steadily
   with some cold traffic beside it; the hot set must stay warm.

The figures are rendered by `bench_report` (a table with a column per engine, or one JSON object).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import requests

from mmgitops.errors import ToolError
from mmgitops.lab.mesh import control, sampleset, sizing
from mmgitops.lab.mesh.bench_report import SECTIONS, EngineFigures, Settings, percentile, render_text, timed, to_json
from mmgitops.modelmesh import metrics, samples, stubs
from mmgitops.modelmesh.defaults import UNIT_BYTES

mesh_pb, mesh_grpc = stubs.mesh()
_, v2_grpc = stubs.v2()

MESH = "bench"
INSTANCES = 3
SAMPLES = 10
CAPACITY_BYTES = 64 * 2**20
WARMUP = 200
WINDOWS = 5
DENSITY_PER_INSTANCE = 34
DENSITY_PAD_BYTES = 200_000
# ModelMesh refuses less than ~10 default-size models of capacity, so the density mesh gets that minimum and
# models padded to ~250 KB, about 34 of them per pod.
DENSITY_CAPACITY_BYTES = -(-sizing.min_capacity_bytes() // UNIT_BYTES) * UNIT_BYTES
SECTION_KEYS = {title: [key for key, _, _ in rows] for title, rows in SECTIONS}
LATENCY_KEYS = SECTION_KEYS[SECTIONS[0][0]] + SECTION_KEYS[SECTIONS[1][0]]
COLD_KEYS = SECTION_KEYS[SECTIONS[2][0]]
DENSITY_KEYS = SECTION_KEYS[SECTIONS[3][0]]
BRIDGE_KEYS = ["bridge_added_p50_ms", "bridge_added_p99_ms"]


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


def one_line(error: BaseException) -> str:
    """An error as one line: a multi-line one (a mesh's stderr) by its first and last lines."""
    text = error.details() if isinstance(error, grpc.RpcError) else str(error)  # type: ignore[attr-defined]
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()] or [type(error).__name__]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


class Bench:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.channels = [grpc.insecure_channel(i["grpc"]) for i in state["instances"]]
        self.mm = mesh_grpc.ModelMeshStub(self.channels[0])

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def register(self, vmodel: str, sample: dict[str, Any], load: bool) -> str:
        return sampleset.register(self.mm, vmodel, sample, load, timeout=120)[0]

    def holder(self, model_id: str) -> int:
        status = self.mm.getModelStatus(mesh_pb.GetStatusRequest(modelId=model_id), timeout=10)
        location = status.modelCopyInfos[0].location
        return [i["id"] for i in self.state["instances"]].index(location)

    def infer(self, instance: int, name: str) -> Callable[[], Any]:
        stub = v2_grpc.GRPCInferenceServiceStub(self.channels[instance])
        request = samples.probe_request(name)
        return lambda: stub.ModelInfer(request, timeout=60)

    def metric_sum(self, name: str) -> float:
        """A sample summed over every pod's scrape."""
        return metrics.total((metrics.parse(requests.get(i["metrics"], timeout=10).text)
                              for i in self.state["instances"]), name)


@contextlib.contextmanager
def mesh(engine: str, options: control.Options, progress: Callable[[str], None]) -> Iterator[Bench]:
    """A fresh mesh named `bench`, stopped by its engine's own `down` however the block ends."""
    control.down(MESH)  # what an interrupted bench left
    progress(f"{engine}: starting a {options.instances}-pod mesh")
    state = control.up(options, lambda text: progress(f"{engine}: {text}"), MESH)
    bench = Bench(state)
    try:
        yield bench
    finally:
        bench.close()
        control.down(MESH)


@contextlib.contextmanager
def bare_mlserver(bench: Bench, holder: int, figures: EngineFigures, requests_n: int) -> Iterator[str]:
    """The holding pod's MLServer gRPC address as this client reaches it; for the reference, through a bridge
    of the bench's own, whose cost is measured here too."""
    instance = bench.state["instances"][holder]
    if bench.state.get("engine") != "reference":
        figures.skip(BRIDGE_KEYS, "no bridge: the client reaches the instances and their MLServer directly")
        yield json.loads((Path(instance["config"]).parent / "runtime.json").read_text())["grpc"]
        return
    from mmgitops.lab.mesh import bench_bridge

    with bench_bridge.way_in(bench.state, holder, control.state_dir(MESH)) as way:
        trips = bench_bridge.round_trips(requests_n, {"direct": way.echo_direct, "bridged": way.echo_bridged})
        for q in (50, 99):
            figures.values[f"bridge_added_p{q}_ms"] = percentile(trips["bridged"], q) - percentile(trips["direct"], q)
        yield way.mlserver


def latency(bench: Bench, figures: EngineFigures, requests_n: int, seconds: float, clients: int) -> None:
    sample = bench.state["samples"][0]
    model_id = bench.register("bench-warm", sample, load=True)
    holder = bench.holder(model_id)
    with bare_mlserver(bench, holder, figures, requests_n) as address, grpc.insecure_channel(address) as channel:
        direct = v2_grpc.GRPCInferenceServiceStub(channel)
        direct_request = samples.probe_request(model_id)  # MLServer knows the model by its concrete id
        calls = {"direct": lambda: direct.ModelInfer(direct_request, timeout=60),
                 "mesh": bench.infer(holder, "bench-warm"),
                 "forwarded": bench.infer((holder + 1) % len(bench.channels), "bench-warm")}
        for call in calls.values():
            timed(call, WARMUP)  # warm up channels and caches
        # Interleaved, request by request and window by window: on a small shared machine the load changes by
        # the second, and each path must see the same conditions.
        lat: dict[str, list[float]] = {label: [] for label in calls}
        for _ in range(requests_n):
            for label, call in calls.items():
                lat[label].extend(timed(call, 1))
        rates: dict[str, list[float]] = {label: [] for label in calls}
        for _ in range(WINDOWS):
            for label, call in calls.items():
                rates[label].append(throughput(call, seconds / WINDOWS, clients))
    values = figures.values
    for label in calls:
        for q in (50, 99):
            values[f"{label}_p{q}_ms"] = percentile(lat[label], q)
        values[f"{label}_rps"] = sum(rates[label]) / WINDOWS
    for q in (50, 99):
        values[f"added_p{q}_ms"] = values[f"mesh_p{q}_ms"] - values[f"direct_p{q}_ms"]
        values[f"forwarded_added_p{q}_ms"] = values[f"forwarded_p{q}_ms"] - values[f"direct_p{q}_ms"]
    values["throughput_ratio"] = values["mesh_rps"] / values["direct_rps"]


def cold(bench: Bench, figures: EngineFigures, loads: int) -> None:
    pool = bench.state["samples"]
    for k in range(loads):
        bench.register(f"bench-cold-{k}", pool[k % len(pool)], load=False)
    before = bench.metric_sum("modelmesh_cache_miss_milliseconds_count")
    times = [timed(bench.infer(k % len(bench.channels), f"bench-cold-{k}"), 1)[0] for k in range(loads)]
    figures.values.update(cold_p50_ms=percentile(times, 50), cold_p95_ms=percentile(times, 95), cold_max_ms=max(times),
                          cold_misses=bench.metric_sum("modelmesh_cache_miss_milliseconds_count") - before)


def density(bench: Bench, figures: EngineFigures, models: int, hot: int, rounds: int,
            progress: Callable[[str], None]) -> None:
    pool = sampleset.upload_padded(bench.state, control.state_dir(MESH) / "padded", 10, DENSITY_PAD_BYTES)
    failures = 0
    registered = 0
    started = time.monotonic()
    for k in range(models):
        if k % 50 == 0:
            progress(f"{figures.engine}: density: registering model {k}/{models} ({time.monotonic() - started:.0f} s)")
        try:
            bench.register(f"dense-{k}", pool[k % len(pool)], load=True)
            registered += 1
        except grpc.RpcError:
            failures += 1  # counted, not fatal: a refused load is a figure of its own
    evictions_before = bench.metric_sum("modelmesh_age_at_eviction_milliseconds_count")
    rng = random.Random(7)
    hot_calls = [bench.infer(rng.randrange(len(bench.channels)), f"dense-{k}") for k in range(min(hot, models))]
    cold_names = [f"dense-{k}" for k in range(hot, models)]

    def attempt(call: Callable[[], Any], into: list[float]) -> None:
        nonlocal failures
        try:
            into.extend(timed(call, 1))
        except grpc.RpcError:
            failures += 1

    warmup: list[float] = []
    for call in hot_calls:  # first touch: loads the hot set
        attempt(call, warmup)
    hot_times: list[float] = []
    cold_times: list[float] = []
    for r in range(rounds):
        progress(f"{figures.engine}: density: round {r + 1}/{rounds}")
        for k, call in enumerate(hot_calls):
            attempt(call, hot_times)
            if k % 10 == 0 and cold_names:  # one cold request per ten hot ones keeps eviction going
                attempt(bench.infer(rng.randrange(len(bench.channels)), rng.choice(cold_names)), cold_times)
    values = figures.values
    values.update(density_registered=registered, density_failures=failures,
                  density_evictions=bench.metric_sum("modelmesh_age_at_eviction_milliseconds_count") - evictions_before)
    if hot_times:
        values.update(density_hot_p50_ms=percentile(hot_times, 50), density_hot_p99_ms=percentile(hot_times, 99))
        if "mesh_p50_ms" in values:
            values["density_hot_p99_over_warm_p50"] = values["density_hot_p99_ms"] / values["mesh_p50_ms"]
    figures.skip(["density_hot_p50_ms", "density_hot_p99_ms", "density_hot_p99_over_warm_p50"],
                 "no warm p50 to compare with" if hot_times else "every hot request failed")
    if cold_times:
        values["density_cold_p50_ms"] = percentile(cold_times, 50)
    figures.skip(["density_cold_p50_ms"], "every cold request failed" if cold_names else "no model outside the hot set")


def measure(engine: str, settings: Settings, progress: Callable[[str], None]) -> EngineFigures:
    """One engine's figures. A phase that fails skips its figures with the reason; the other phases still run,
    and so does the next engine."""
    figures = EngineFigures(engine)
    options = control.Options(instances=settings.instances, capacity_bytes=settings.capacity_bytes,
                              samples=settings.samples, register_samples=False, engine=engine)
    try:
        with mesh(engine, options, progress) as bench:
            progress(f"{engine}: warm latency and throughput")
            try:
                latency(bench, figures, settings.requests, settings.seconds, settings.clients)
            except (grpc.RpcError, ToolError, OSError) as error:
                figures.skip(LATENCY_KEYS, f"warm latency failed: {one_line(error)}")
            progress(f"{engine}: cold loads")
            try:
                cold(bench, figures, settings.cold_loads)
            except (grpc.RpcError, OSError) as error:
                figures.skip(COLD_KEYS, f"cold loads failed: {one_line(error)}")
    except ToolError as error:  # the mesh did not start: nothing of the first mesh can be measured
        figures.skip(LATENCY_KEYS + COLD_KEYS, f"the mesh did not start: {one_line(error)}")
    density_options = control.Options(instances=settings.instances, capacity_bytes=settings.density_capacity_bytes,
                                      samples=settings.samples, register_samples=False, min_churn_age_ms=1000,
                                      engine=engine)
    try:
        with mesh(engine, density_options, progress) as bench:
            density(bench, figures, settings.models, settings.hot, settings.rounds, progress)
    except (grpc.RpcError, ToolError, OSError) as error:
        figures.skip(DENSITY_KEYS, f"density failed: {one_line(error)}")
    return figures


def run(progress: Callable[[str], None], engines: list[str], requests_n: int = 2000, seconds: float = 5.0,
        clients: int = 4, cold_loads: int = 40, models: int = 1000, hot: int = 50, rounds: int = 10,
        output: str = "text") -> tuple[str, bool]:
    """The figures rendered as text or JSON, and whether every engine measured at least one figure."""
    settings = Settings(instances=INSTANCES, samples=SAMPLES, capacity_bytes=CAPACITY_BYTES, requests=requests_n,
                        seconds=seconds, clients=clients, cold_loads=cold_loads, models=models, hot=hot,
                        rounds=rounds, density_capacity_bytes=DENSITY_CAPACITY_BYTES)
    figures = [measure(engine, settings, progress) for engine in engines]
    today = date.today().isoformat()
    text = to_json(settings, figures, today) if output == "json" else render_text(settings, figures, today)
    return text, all(f.measured() for f in figures)

"""`mmgitops local mesh up | down | status`: etcd, an S3 store, sample models and N instance processes.

Everything binds to 127.0.0.1; `down` stops exactly the processes `up` recorded, by PID and process
group, and removes the state directory `up` made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab.mesh import etcdserver, sampleset, sizing, storage
from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.registry import kv_prefix
from mmgitops.lab.mesh.sampleset import STORAGE_KEY
from mmgitops.lab.mesh.serve import InstanceConfig
from mmgitops.lab.spawn import spawn
from mmgitops.lab.state import read_json, state_root
from mmgitops.modelmesh import samples
from mmgitops.modelmesh.defaults import MIN_CHURN_AGE_MS, UNIT_BYTES
from mmgitops.modelmesh.storage import StorageEntry, write_config


@dataclass
class Options:
    instances: int = 3
    capacity_bytes: int = 64 * 2**20
    min_churn_age_ms: int = MIN_CHURN_AGE_MS
    load_timeout_ms: int = 90_000
    max_loading_concurrency: int = 2
    samples: int = 4
    register_samples: bool = True
    storage_config: Path | None = None  # an existing storage-config JSON: no moto server then
    faults: list[str] = field(default_factory=list)
    engine: str = "embedded"  # or "reference": real ModelMesh pods (mmgitops.lab.reference.mesh)


def name(mesh: str | None = None) -> str:
    """The mesh's name; tests use their own so they never touch a user's mesh."""
    return mesh or os.environ.get("MMGITOPS_MESH_NAME", "mmgitops")


def state_dir(mesh: str | None = None, base: Path | None = None) -> Path:
    """base: where the mesh's state lives, when not in $MMGITOPS_STATE (a test run's temporary directory)."""
    return (base or state_root()) / f"mesh-{name(mesh)}"


def read_state(mesh: str | None = None, base: Path | None = None) -> dict[str, Any] | None:
    return read_json(state_dir(mesh, base) / "mesh.json")


def save_state(state: dict[str, Any]) -> None:
    (state_dir(state["name"]) / "mesh.json").write_text(json.dumps(state, indent=2), encoding="utf-8")


def check(options: Options) -> None:
    """Refuse bad options in one line each, before anything starts."""
    limits = [("--instances", options.instances, 1), ("--capacity", options.capacity_bytes, UNIT_BYTES),
              ("--min-churn-age-ms", options.min_churn_age_ms, 0), ("--load-timeout-ms", options.load_timeout_ms, 1),
              ("--max-loading-concurrency", options.max_loading_concurrency, 1), ("--samples", options.samples, 0)]
    for flag, value, least in limits:
        if value < least:
            raise ToolError(f"{flag} {value}: must be at least {least}")
    # What each instance's ModelMesh would refuse at startup, said before anything starts.
    default = sizing.local_default_model_size(options.capacity_bytes)
    try:
        sizing.check_startup(options.capacity_bytes, options.max_loading_concurrency, options.load_timeout_ms, default)
    except sizing.StartupError as exc:
        flag = ("--capacity" if "capacity" in str(exc) else "--load-timeout-ms" if "timeout" in str(exc)
                else "--max-loading-concurrency")
        raise ToolError(f"{flag}: ModelMesh would refuse to start: {exc} (at least "
                        f"{sizing.min_capacity_bytes(default)} bytes)" if flag == "--capacity"
                        else f"{flag}: ModelMesh would refuse to start: {exc}") from exc
    if options.storage_config and not options.storage_config.exists():
        raise ToolError(f"--storage-config {options.storage_config}: no such file")
    try:
        Faults.parse(options.faults)
    except ValueError as exc:
        raise ToolError(f"--fault: {exc}") from exc


def up(options: Options, progress: Callable[[str], None], mesh: str | None = None) -> dict[str, Any]:
    if options.engine == "reference":
        from mmgitops.lab.reference import mesh as reference

        return reference.up(options, progress, mesh)
    refuse_second(mesh)
    check(options)
    started = time.monotonic()
    root = state_dir(mesh)
    state: dict[str, Any] = {"name": name(mesh), "options": {**asdict(options), "storage_config": str(
        options.storage_config or "")}, "instances": []}
    return bring_up(state, started, lambda: _start(options, root, state, progress), down)


def refuse_second(mesh: str | None) -> None:
    if read_state(mesh):
        raise ToolError(f"a local mesh is already up (state {state_dir(mesh)}): `mmgitops local mesh down` first")


def bring_up(state: dict[str, Any], started: float, start: Callable[[], None],
             down: Callable[[str | None], object]) -> dict[str, Any]:
    """Either engine's `up` around its own start(): the state saved from the first step, everything started
    stopped again (by the engine's `down`) when a step fails, and the time it took."""
    state_dir(state["name"]).mkdir(parents=True, exist_ok=True)
    save_state(state)
    try:
        start()
    except BaseException:
        down(state["name"])
        raise
    state["seconds"] = round(time.monotonic() - started, 1)
    save_state(state)
    return state


def _start(options: Options, root: Path, state: dict[str, Any], progress: Callable[[str], None]) -> None:
    progress("starting etcd")
    etcd = etcdserver.start(root / "etcd", root / "etcd.log")
    state["etcd"] = {"endpoint": etcd.endpoint, "pid": etcd.pid}
    save_state(state)
    config_path, entry = _storage(options, root, state, progress)
    if options.samples:
        progress(f"training and uploading {options.samples} sample models")
        state["samples"] = sampleset.upload(root / "samples", options.samples, entry)
    save_state(state)
    _start_instances(options, root, state, str(config_path), progress)
    if options.register_samples and state.get("samples"):
        progress("registering the samples")
        sampleset.register_all(state)


def _storage(options: Options, root: Path, state: dict[str, Any], progress: Callable[[str], None]
             ) -> tuple[Path, StorageEntry]:
    if options.storage_config:
        state["storage_config"] = str(options.storage_config)
        return options.storage_config, sampleset.storage_entry(options.storage_config)
    progress("starting an S3 server (moto) on loopback")
    s3 = storage.S3Server.start(root / "s3.log")
    state["s3"] = {"endpoint": s3.endpoint, "pid": s3.pid}
    save_state(state)
    entry = s3.entry(STORAGE_KEY, sampleset.BUCKET)
    path = write_config(root / "storage-config.json", {STORAGE_KEY: entry})
    state["storage_config"] = str(path)
    return path, entry


def _start_instances(options: Options, root: Path, state: dict[str, Any], storage_config: str,
                     progress: Callable[[str], None]) -> None:
    # The mesh's name is its etcd root prefix; the tables go where ModelMesh puts them under one (kv_prefix).
    prefix = kv_prefix(f"mmesh/{state['name']}")
    for index in range(options.instances):
        config = InstanceConfig(
            instance_id=f"mm-{index}", etcd=state["etcd"]["endpoint"], prefix=prefix,
            work_dir=str(root / f"mm-{index}"), capacity_bytes=options.capacity_bytes,
            min_churn_age_ms=options.min_churn_age_ms,
            load_timeout_ms=options.load_timeout_ms, max_loading_concurrency=options.max_loading_concurrency,
            storage_config=storage_config, faults=options.faults,
            default_model_size_bytes=sizing.local_default_model_size(options.capacity_bytes),
            warmup_model=str(root / "samples" / "sample-00" / samples.FILENAME) if state.get("samples") else "")
        state["instances"].append(start_instance(config, root))
        save_state(state)
    progress(f"waiting for {options.instances} instances (MLServer starts in a few seconds each)")
    with ThreadPoolExecutor(max_workers=options.instances) as pool:
        list(pool.map(wait_ready, state["instances"]))
    save_state(state)


def start_instance(config: InstanceConfig, root: Path) -> dict[str, Any]:
    Path(config.work_dir).mkdir(parents=True, exist_ok=True)
    config_path = Path(config.work_dir) / "instance.json"
    config_path.write_text(json.dumps(asdict(config), indent=2), encoding="utf-8")
    process = spawn([sys.executable, "-m", "mmgitops.lab.mesh.serve", "--config", config_path],
                    Path(config.work_dir) / "instance.log")
    return {"id": config.instance_id, "pid": process.pid, "log": str(Path(config.work_dir) / "instance.log"),
            "config": str(config_path)}


def endpoints(instance: dict[str, Any]) -> dict[str, str] | None:
    """Where a started instance serves (grpc, rest, metrics, probes), from the file it writes once every port is
    bound; None before."""
    path = Path(instance["config"]).parent / "ports.json"
    if not path.is_file():
        return None
    ports = json.loads(path.read_text(encoding="utf-8"))
    return {"grpc": f"127.0.0.1:{ports['grpc']}", "rest": f"http://127.0.0.1:{ports['rest']}",
            "metrics": f"http://127.0.0.1:{ports['metrics']}/metrics", "probes": f"http://127.0.0.1:{ports['probes']}"}


def wait_ready(instance: dict[str, Any], timeout: float = 90.0) -> None:
    """Wait for the instance's ports, then poll its readiness probe (HTTP /ready on the probe port), as the kubelet
    does a ModelMesh pod's: on ModelMesh's gRPC port a ServerReady without a model id is INVALID_ARGUMENT, never an
    answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(instance["pid"]):
            raise ToolError(f"instance {instance['id']} exited at startup: {last_line(instance['log'])} "
                            f"(log: {instance['log']})")
        if "probes" not in instance:
            instance.update(endpoints(instance) or {})
        if "probes" in instance and probe_ready(instance["probes"]):
            return
        time.sleep(0.1)
    raise ToolError(f"instance {instance['id']} not ready after {timeout:.0f} s (log: {instance['log']})")


def probe_ready(probes_url: str, timeout: float = 1.0) -> bool:
    """GET <probes>/ready answers 200 once the instance takes traffic."""
    try:
        with urllib.request.urlopen(f"{probes_url}/ready", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def last_line(path: str) -> str:
    """A log's last line, for an error that points at the log."""
    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if line]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


def down(mesh: str | None = None, base: Path | None = None) -> list[str]:
    state = read_state(mesh, base) or {}
    if state.get("engine") == "reference":
        from mmgitops.lab.reference import mesh as reference

        return reference.down(mesh, base)
    return stop_recorded(state, state_dir(mesh, base), "instance", ("s3", "etcd"))


def stop_recorded(state: dict[str, Any], root: Path, pod: str, parts: tuple[str, ...]) -> list[str]:
    """Either engine's `down`: stop what the state recorded, by PID and process group (its pods first, then
    `parts` in order), and remove the state directory; a line per process stopped."""
    stopped = []
    for instance in state.get("instances", []):
        if procs.alive(instance["pid"]):
            procs.stop(instance["pid"], group=True)
            stopped.append(f"{pod} {instance['id']} (pid {instance['pid']})")
    for part in parts:
        pid = state.get(part, {}).get("pid")
        if pid and procs.alive(pid):
            procs.stop(pid, group=True)
            stopped.append(f"{part} (pid {pid})")
    if root.exists():
        shutil.rmtree(root)  # links go as links: a reference pod's state links into the build cache
    return stopped


def kill(instance_id: str, mesh: str | None = None) -> str:
    """SIGKILL one pod's process group (its model server dies with it), as a node loss would; the state keeps the
    pod, so `status` shows it NOT running and `down` cleans up after it."""
    state = read_state(mesh)
    if not state:
        raise ToolError(f"no local mesh {name(mesh)!r} is up")
    found = next((i for i in state.get("instances", []) if i["id"] == instance_id), None)
    if found is None:
        raise ToolError(f"local mesh {name(mesh)!r} has no pod {instance_id!r}; pods: "
                        f"{', '.join(i['id'] for i in state.get('instances', []))}")
    if not procs.alive(found["pid"]):
        return f"pod {instance_id} (pid {found['pid']}) was not running"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(found["pid"], signal.SIGKILL)
    return f"killed pod {instance_id} (pid {found['pid']})"


def status(mesh: str | None = None) -> dict[str, Any]:
    state = read_state(mesh)
    if not state:
        return {"up": False}
    if state.get("engine") == "reference":
        from mmgitops.lab.reference import mesh as reference

        return reference.status(mesh)
    for instance in state.get("instances", []):
        instance["running"] = procs.alive(instance["pid"])
    for part in ("s3", "etcd"):
        if part in state:
            state[part]["running"] = procs.alive(state[part]["pid"])
    return {"up": True, **state}


def describe(state: dict[str, Any]) -> str:
    """What a person needs to use the mesh: endpoints, samples, and one request to try."""
    lines = [f"local mesh {state['name']}" + (f", up in {state['seconds']} s" if "seconds" in state else "")
             + (f"; FAULTS ON: {', '.join(state['options']['faults'])}" if state["options"]["faults"] else "")]
    for instance in state.get("instances", []):
        flag = "" if instance.get("running", True) else "  NOT running"
        lines.append(f"  {instance['id']}: grpc {instance['grpc']}  rest {instance['rest']}  "
                     f"metrics {instance['metrics']}  pid {instance['pid']}{flag}")
    lines.append(f"  etcd {state['etcd']['endpoint']}" + (f", S3 {state['s3']['endpoint']}" if "s3" in state else ""))
    if state.get("samples"):
        lines.append("  samples (vmodel -> expected answer for [1, 1, 1, 1]): " + ", ".join(
            f"{s['name']} -> {s['expected']}" for s in state["samples"]))
        first = state["samples"][0]["name"]
        lines.append(f"try: curl -s -H 'Content-Type: application/json' -d '{samples.PROBE_JSON}' "
                     f"{state['instances'][0]['rest']}/v2/models/{first}/infer")
    return "\n".join(lines)

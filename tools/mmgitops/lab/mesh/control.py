"""`mmgitops local mesh up | down | status`: etcd, an S3 store, sample models and N instance processes.

Everything binds to 127.0.0.1; `down` stops exactly the processes `up` recorded, by PID and process
group, and removes the state directory `up` made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import platformdirs

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab.mesh import etcdserver, sizing, storage
from mmgitops.lab.mesh.cache import UNIT
from mmgitops.lab.mesh.faults import Faults
from mmgitops.lab.mesh.peers import mesh_grpc, mesh_pb
from mmgitops.lab.mesh.serve import InstanceConfig
from mmgitops.modelmesh import samples

STORAGE_KEY = "local-s3"
# modelmesh-serving registers an sklearn InferenceService with the type label mt:sklearn (GetPredictorTypeLabel).
SAMPLE_TYPE = "mt:sklearn"
BUCKET = "modelmesh-example-models"


@dataclass
class Options:
    instances: int = 3
    capacity_bytes: int = 64 * 2**20
    min_churn_age_ms: int = 300_000
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
    base = base or Path(os.environ.get("MMGITOPS_STATE") or platformdirs.user_state_dir("mmgitops"))
    return base / f"mesh-{name(mesh)}"


def read_state(mesh: str | None = None, base: Path | None = None) -> dict[str, Any] | None:
    path = state_dir(mesh, base) / "mesh.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _save(state: dict[str, Any]) -> None:
    (state_dir(state["name"]) / "mesh.json").write_text(json.dumps(state, indent=2), encoding="utf-8")


def concrete_id(vmodel_id: str, path: str) -> str:
    """ModelMesh-serving's concrete id for an InferenceService: `<isvc>__isvc-<10 hex>`."""
    return f"{vmodel_id}__isvc-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


def check(options: Options) -> None:
    """Refuse bad options in one line each, before anything starts."""
    limits = [("--instances", options.instances, 1), ("--capacity", options.capacity_bytes, UNIT),
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
    if read_state(mesh):
        raise ToolError(f"a local mesh is already up (state {state_dir(mesh)}): `mmgitops local mesh down` first")
    check(options)
    started = time.monotonic()
    root = state_dir(mesh)
    root.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {"name": name(mesh), "options": {**asdict(options), "storage_config": str(
        options.storage_config or "")}, "instances": []}
    _save(state)
    try:
        progress("starting etcd")
        etcd = etcdserver.start(root / "etcd", root / "etcd.log")
        state["etcd"] = {"endpoint": etcd.endpoint, "pid": etcd.pid}
        _save(state)
        config_path, entry = _storage(options, root, state, progress)
        if options.samples:
            progress(f"training and uploading {options.samples} sample models")
            trained = samples.upload(samples.train(root / "samples", options.samples), entry, BUCKET)
            state["samples"] = [{"name": s.name, "expected": s.expected, "path": s.s3_path, "size": s.size,
                                 "model_id": concrete_id(s.name, s.s3_path), "key": s.model_key(STORAGE_KEY)}
                                for s in trained]
        _save(state)
        _start_instances(options, root, state, str(config_path), progress)
        if options.register_samples and state.get("samples"):
            progress("registering the samples")
            register_samples(state)
    except BaseException:
        down(mesh)
        raise
    state["seconds"] = round(time.monotonic() - started, 1)
    _save(state)
    return state


def _storage(options: Options, root: Path, state: dict[str, Any], progress: Callable[[str], None]
             ) -> tuple[Path, storage.StorageEntry]:
    if options.storage_config:
        entries = storage.load_config(options.storage_config)
        if STORAGE_KEY not in entries:
            raise ToolError(f"{options.storage_config}: no storage named {STORAGE_KEY!r} (the mesh uploads its "
                            f"samples there); storages found: {', '.join(sorted(entries)) or 'none'}")
        return options.storage_config, entries[STORAGE_KEY]
    progress("starting an S3 server (moto) on loopback")
    s3 = storage.S3Server.start(root / "s3.log")
    state["s3"] = {"endpoint": s3.endpoint, "pid": s3.pid}
    _save(state)
    entry = s3.entry(STORAGE_KEY, BUCKET)
    path = root / "storage-config.json"
    storage.write_config(path, {STORAGE_KEY: entry})
    return path, entry


def _start_instances(options: Options, root: Path, state: dict[str, Any], storage_config: str,
                     progress: Callable[[str], None]) -> None:
    for index in range(options.instances):
        config = InstanceConfig(
            instance_id=f"mm-{index}", etcd=state["etcd"]["endpoint"], prefix=f"/mmesh/{state['name']}/",
            work_dir=str(root / f"mm-{index}"), capacity_bytes=options.capacity_bytes,
            min_churn_age_ms=options.min_churn_age_ms,
            load_timeout_ms=options.load_timeout_ms, max_loading_concurrency=options.max_loading_concurrency,
            storage_config=storage_config, faults=options.faults,
            default_model_size_bytes=sizing.local_default_model_size(options.capacity_bytes),
            warmup_model=str(root / "samples" / "sample-00" / samples.FILENAME) if state.get("samples") else "")
        state["instances"].append(start_instance(config, root))
        _save(state)
    progress(f"waiting for {options.instances} instances (MLServer starts in a few seconds each)")
    with ThreadPoolExecutor(max_workers=options.instances) as pool:
        list(pool.map(wait_ready, state["instances"]))
    _save(state)


def start_instance(config: InstanceConfig, root: Path) -> dict[str, Any]:
    Path(config.work_dir).mkdir(parents=True, exist_ok=True)
    config_path = Path(config.work_dir) / "instance.json"
    config_path.write_text(json.dumps(asdict(config), indent=2), encoding="utf-8")
    with (Path(config.work_dir) / "instance.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "mmgitops.lab.mesh.serve", "--config", str(config_path)],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return {"id": config.instance_id, "pid": process.pid, "log": str(Path(config.work_dir) / "instance.log"),
            "config": str(config_path)}


def _ports(instance: dict[str, Any], deadline: float) -> None:
    """The ports the instance bound, from the file it writes once all are bound."""
    path = Path(instance["config"]).parent / "ports.json"
    while not path.is_file():
        if not procs.alive(instance["pid"]):
            raise ToolError(f"instance {instance['id']} exited at startup: {_last_line(instance['log'])} "
                            f"(log: {instance['log']})")
        if time.monotonic() > deadline:
            raise ToolError(f"instance {instance['id']} not up after its timeout (log: {instance['log']})")
        time.sleep(0.1)
    ports = json.loads(path.read_text(encoding="utf-8"))
    instance.update(grpc=f"127.0.0.1:{ports['grpc']}", rest=f"http://127.0.0.1:{ports['rest']}",
                    metrics=f"http://127.0.0.1:{ports['metrics']}/metrics",
                    probes=f"http://127.0.0.1:{ports['probes']}")


def wait_ready(instance: dict[str, Any], timeout: float = 90.0) -> None:
    """Poll the instance's readiness probe (HTTP /ready on the probe port), as the kubelet does a ModelMesh
    pod's: on ModelMesh's gRPC port a ServerReady without a model id is INVALID_ARGUMENT, never an answer."""
    deadline = time.monotonic() + timeout
    _ports(instance, deadline)
    while time.monotonic() < deadline:
        if not procs.alive(instance["pid"]):
            raise ToolError(f"instance {instance['id']} exited at startup: {_last_line(instance['log'])} "
                            f"(log: {instance['log']})")
        if probe_ready(instance["probes"]):
            return
        time.sleep(0.2)
    raise ToolError(f"instance {instance['id']} not ready after {timeout:.0f} s (log: {instance['log']})")


def probe_ready(probes_url: str, timeout: float = 1.0) -> bool:
    """GET <probes>/ready answers 200 once the instance takes traffic."""
    try:
        with urllib.request.urlopen(f"{probes_url}/ready", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _last_line(path: str) -> str:
    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if line]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"


# The owner modelmesh-serving gives an InferenceService's vmodel (InferenceServiceCRSourceId).
ISVC_OWNER = "isvc"


def register_samples(state: dict[str, Any], timeout: float = 120.0) -> None:
    """Each sample as modelmesh-serving registers an InferenceService (controllers/predictor_controller.go
    setVModel): a vmodel named after it, owner `isvc`, type `mt:sklearn`, the key as its ModelKeyInfo, loaded now."""
    with grpc.insecure_channel(state["instances"][0]["grpc"]) as channel:
        stub = mesh_grpc.ModelMeshStub(channel)
        for sample in state["samples"]:
            stub.setVModel(mesh_pb.SetVModelRequest(
                vModelId=sample["name"], targetModelId=sample["model_id"], owner=ISVC_OWNER, loadNow=True,
                sync=True, autoDeleteTargetModel=True, modelInfo=mesh_pb.ModelInfo(
                    type=SAMPLE_TYPE, path=sample["path"], key=model_key(sample))), timeout=timeout)


def model_key(sample: dict[str, Any]) -> str:
    return samples.controller_model_key(STORAGE_KEY, BUCKET, samples.MODEL_FORMAT)


def down(mesh: str | None = None, base: Path | None = None) -> list[str]:
    state = read_state(mesh, base) or {}
    if state.get("engine") == "reference":
        from mmgitops.lab.reference import mesh as reference

        return reference.down(mesh, base)
    stopped = []
    for instance in state.get("instances", []):
        if procs.alive(instance["pid"]):
            procs.stop(instance["pid"], group=True)
            stopped.append(f"instance {instance['id']} (pid {instance['pid']})")
    for part in ("s3", "etcd"):
        pid = state.get(part, {}).get("pid")
        if pid and procs.alive(pid):
            procs.stop(pid, group=True)
            stopped.append(f"{part} (pid {pid})")
    root = state_dir(mesh, base)
    if root.exists():
        for path in sorted(root.rglob("*"), reverse=True):
            path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
        root.rmdir()
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

"""`mmgitops local mesh up --engine reference`: real ModelMesh pods in a private network namespace.

Same state file as the embedded engine, plus `engine`, `reference_commit`, `netns` and `bridge`. Inside
the namespace: etcd, a moto S3 server and per pod ModelMesh, rest-proxy, the MLServer adapter and
MLServer. Outside: one bridge process exposing each pod on its own loopback address with the
conventional ports (gRPC 8033, REST 8008, metrics 2112, probes 8089), and etcd and S3 on another.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import requests

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import netns
from mmgitops.lab.mesh import control, etcdserver, sampleset, sizing
from mmgitops.lab.ports import bindable
from mmgitops.lab.reference import build, podspec
from mmgitops.lab.spawn import spawn
from mmgitops.modelmesh.storage import StorageEntry, write_config

SERVICES_HOST = 250  # last octet of the etcd / S3 address in the mesh's block
READY_TIMEOUT = 240.0


def check(options: control.Options) -> None:
    """The embedded engine's checks (the same ModelMesh startup limits), and what this engine cannot do."""
    control.check(options)
    if options.instances > 99:
        raise ToolError(f"--instances {options.instances}: at most 99 reference pods (one 127.0.N.0/24 block)")
    if options.faults:
        raise ToolError("--fault: the reference engine runs the real ModelMesh, which has no fault switches")
    if options.storage_config:
        raise ToolError("--storage-config: the reference engine's pods reach only their own S3 server")


def _free_block(pods: int) -> int:
    """A /24 in 127.0.0.0/8 whose pod and service addresses are free on every port the bridge uses."""
    for block in range(7, 250):
        hosts = [(f"127.0.{block}.{i + 1}", p) for i in range(pods) for p in podspec.OUTER.values()]
        hosts += [(f"127.0.{block}.{SERVICES_HOST}", p) for p in (podspec.ETCD_INNER, podspec.S3_INNER)]
        if bindable(hosts):
            return block
    raise ToolError("no free 127.0.N.0/24 block for the reference pods")


def _spawn(argv: Sequence[object], log: Path, holder: int) -> subprocess.Popen[bytes]:
    return spawn(argv, log, preexec_fn=netns.inside(holder))


def _wait(what: str, probe: Callable[[], bool], pid: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(pid):
            raise ToolError(f"{what} exited at startup: {control.last_line(str(log))} (log {log})")
        try:
            if probe():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.2)
    raise ToolError(f"{what} not ready after {timeout:.0f} s (log {log})")


def up(options: control.Options, progress: Callable[[str], None], mesh: str | None = None) -> dict[str, Any]:
    control.refuse_second(mesh)
    check(options)
    started = time.monotonic()
    built = build.build(None, lambda text: progress(f"building {text}"))
    root = control.state_dir(mesh)
    state: dict[str, Any] = {
        "name": control.name(mesh), "engine": "reference", "reference_commit": built.commits["modelmesh"],
        "options": {**asdict(options), "storage_config": "", "engine": "reference"}, "instances": []}
    return control.bring_up(state, started, lambda: _start(options, built, root, state, progress), down)


def _start(options: control.Options, built: build.Built, root: Path, state: dict[str, Any],
           progress: Callable[[str], None]) -> None:
    progress("making the network namespace")
    holder = netns.start_holder(root / "netns.log")
    state["netns"] = {"pid": holder}
    control.save_state(state)
    block = _free_block(options.instances)
    services = f"127.0.{block}.{SERVICES_HOST}"
    routes: list[tuple[str, int, int]] = [(services, podspec.ETCD_INNER, podspec.ETCD_INNER),
                                          (services, podspec.S3_INNER, podspec.S3_INNER)]
    for index in range(options.instances):
        inner = podspec.inner_ports(index)
        routes += [(f"127.0.{block}.{index + 1}", port, inner[name]) for name, port in podspec.OUTER.items()]
    (root / "routes.json").write_text(json.dumps(routes), encoding="utf-8")
    bridge_log = root / "bridge.log"
    bridge = spawn([sys.executable, "-m", "mmgitops.lab.bridge", "--holder", holder,
                    "--routes", root / "routes.json"], bridge_log)
    state["bridge"] = {"pid": bridge.pid, "block": f"127.0.{block}.0/24"}
    control.save_state(state)
    _wait("the bridge", lambda: b"bridge ready" in bridge_log.read_bytes(), bridge.pid, bridge_log, 30)

    progress("starting etcd and an S3 server (moto) in the namespace")
    etcd_log = root / "etcd.log"
    etcd = _spawn(etcdserver.command(root / "etcd", podspec.ETCD_INNER, podspec.ETCD_PEER_INNER), etcd_log, holder)
    state["etcd"] = {"endpoint": f"http://{services}:{podspec.ETCD_INNER}", "pid": etcd.pid}
    s3_log = root / "s3.log"
    # Every address the namespace has is loopback, so the S3 server may answer on all of them: the pods then
    # reach it at the same address as the outside does through the bridge, and one storage-config serves both
    # (a suite given these pods by --endpoint stages its samples with it).
    moto = _spawn([sys.executable, "-m", "moto.server", "-H", "0.0.0.0", "-p", podspec.S3_INNER], s3_log, holder)
    state["s3"] = {"endpoint": f"http://{services}:{podspec.S3_INNER}", "pid": moto.pid}
    control.save_state(state)
    _wait("etcd", lambda: requests.get(f"{state['etcd']['endpoint']}/health", timeout=1).ok, etcd.pid, etcd_log, 30)
    outer = StorageEntry(key=sampleset.STORAGE_KEY, type="s3", access_key_id=secrets.token_hex(10),
                         secret_access_key=secrets.token_hex(20), endpoint_url=state["s3"]["endpoint"],
                         bucket=sampleset.BUCKET)
    _wait("the S3 server", lambda: requests.get(outer.endpoint_url, timeout=1).status_code < 500, moto.pid,
          s3_log, 30)
    state["storage_config"] = str(write_config(root / "storage-config.json", {sampleset.STORAGE_KEY: outer}))
    if options.samples:
        progress(f"training and uploading {options.samples} sample models")
        state["samples"] = sampleset.upload(root / "samples", options.samples, outer)
    control.save_state(state)

    config = podspec.write_config(root / "config", {sampleset.STORAGE_KEY: outer.to_json()})
    pod_options = podspec.PodOptions(
        capacity_bytes=options.capacity_bytes,
        default_model_size=sizing.local_default_model_size(options.capacity_bytes),
        min_churn_age_ms=options.min_churn_age_ms, load_timeout_ms=options.load_timeout_ms,
        loading_concurrency=options.max_loading_concurrency, mlserver_version=_mlserver_version())
    for index in range(options.instances):
        state["instances"].append(_start_pod(index, block, built, root, config, state["name"], pod_options, holder))
        control.save_state(state)
    progress(f"waiting for {options.instances} pods to be ready (/ready on their probe port)")
    with ThreadPoolExecutor(max_workers=options.instances) as pool:
        list(pool.map(wait_ready, state["instances"]))
    if options.register_samples and state.get("samples"):
        progress("registering the samples as the controller registers InferenceServices")
        sampleset.register_all(state)


def _mlserver_version() -> str:
    from importlib.metadata import version

    return version("mlserver")


def _start_pod(index: int, block: int, built: build.Built, root: Path, config: dict[str, Path], mesh_name: str,
               options: podspec.PodOptions, holder: int) -> dict[str, Any]:
    iid = podspec.instance_id(index)
    pod_dir = root / iid
    pod_dir.mkdir(parents=True, exist_ok=True)
    spec = pod_dir / "pod.json"
    spec.write_text(podspec.spec_json(podspec.containers(index, built, pod_dir, config, f"mm-{mesh_name}",
                                                         options)), encoding="utf-8")
    log = pod_dir / "pod.log"
    proc = _spawn([sys.executable, "-m", "mmgitops.lab.reference.pod", "--spec", spec], log, holder)
    address = f"127.0.{block}.{index + 1}"
    return {"id": iid, "pid": proc.pid, "address": address, **podspec.endpoints(address), "log": str(log),
            "logs": str(pod_dir / "logs"), "inner_ports": podspec.inner_ports(index)}


def wait_ready(instance: dict[str, Any], timeout: float = READY_TIMEOUT) -> None:
    """The Deployment's readiness probe: HTTP GET /ready on the probe port answers 200. Then rest-proxy
    answering at all: it dials ModelMesh with backoff before it listens, so it can lag /ready by seconds."""
    started = time.monotonic()
    _wait(f"pod {instance['id']}", lambda: requests.get(f"{instance['probes']}/ready", timeout=1).status_code == 200,
          instance["pid"], Path(instance["logs"]) / "mm.log", timeout)
    _wait(f"rest-proxy of pod {instance['id']}",
          lambda: requests.get(f"{instance['rest']}/v2/models/_", timeout=2).status_code > 0,
          instance["pid"], Path(instance["logs"]) / "rest-proxy.log", max(10.0, timeout - (time.monotonic() - started)))


def down(mesh: str | None = None, base: Path | None = None) -> list[str]:
    return control.stop_recorded(control.read_state(mesh, base) or {}, control.state_dir(mesh, base), "pod",
                                 ("bridge", "s3", "etcd", "netns"))


def status(mesh: str | None = None) -> dict[str, Any]:
    state = control.read_state(mesh)
    if not state:
        return {"up": False}
    for instance in state.get("instances", []):
        instance["running"] = procs.alive(instance["pid"])
        try:
            instance["ready"] = requests.get(f"{instance['probes']}/ready", timeout=1).status_code == 200
        except requests.RequestException:
            instance["ready"] = False
    for part in ("s3", "etcd", "bridge", "netns"):
        if part in state:
            state[part]["running"] = procs.alive(state[part]["pid"])
    return {"up": True, **state}

"""Reference pods one at a time, in a network namespace that outlives them (the local cluster's pod network):
for a kubelet that adds and removes pods as Kubernetes schedules and deletes them (lab/kubelet/refpod.py).

Each pod is `mmgitops.lab.reference.pod` (its four containers) on a block of inner ports of its own, plus a
bridge that exposes the pod's four conventional ports on a loopback address of this machine, so pods come and
go without touching each other. The pod's environment is `podspec.containers`' with what differs per cluster
pod: the Kubernetes pod name (ModelMesh's instance id is its last 12 characters), the runtime's labels, the
mounted type-constraints file and etcd connection, the storage Secret's directory and the adapter's sizes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import netns
from mmgitops.lab.ports import bindable
from mmgitops.lab.reference import build, podspec
from mmgitops.lab.spawn import die_with_parent, spawn

ADDRESS_BLOCKS = range(100, 250)  # 127.0.N.0/24 blocks for pod addresses (`local mesh` takes them from 7 up)
MAX_PODS = 300  # inner port blocks of 100 from 20000


@dataclass(frozen=True)
class PodConfig:
    pod_name: str  # the Kubernetes pod's name
    labels: tuple[str, ...]
    constraints_file: Path
    etcd_connection_file: Path
    storage_dir: Path
    capacity_bytes: int
    default_model_size: int
    min_churn_age_ms: int
    load_timeout_ms: int
    loading_concurrency: int
    mm_env: tuple[tuple[str, str], ...] = ()  # the mm container's env over podspec's (e.g. its metrics scheme)
    mlserver_env: tuple[tuple[str, str], ...] = ()  # MLServer's, likewise


def wait_log(what: str, log: Path, marker: bytes, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and marker in log.read_bytes():
            return
        if not procs.alive(pid):
            break
        time.sleep(0.05)
    raise ToolError(f"{what} did not start (log {log})")


def free_address(taken: Iterable[str]) -> str:
    """A loopback address of this machine whose four pod ports are free."""
    skip = set(taken)
    for block in ADDRESS_BLOCKS:
        for host in range(1, 250):
            address = f"127.0.{block}.{host}"
            if address in skip:
                continue
            if bindable((address, port) for port in podspec.OUTER.values()):
                return address
    raise ToolError("no free loopback address for a reference pod")


def start_pod(holder: int, index: int, address: str, built: build.Built, pod_dir: Path, config: PodConfig,
              hosts: Path) -> dict[str, Any]:
    """One pod in the holder's namespace (inner port block `index`) and its bridge on `address`. hosts: the pod's
    /etc/hosts (its containers run in a mount namespace of their own where it is bind-mounted). The pod and its
    bridge die with the calling process, as containers with their kubelet's pod sandbox."""
    if not 0 <= index < MAX_PODS:
        raise ToolError(f"reference pod index {index}: at most {MAX_PODS} pods at once")
    pod_dir.mkdir(parents=True, exist_ok=True)
    files = {"constraints": config.constraints_file, "dataplane": config.constraints_file.parent /
             "dataplane_api_config", "storage": config.storage_dir}
    options = podspec.PodOptions(capacity_bytes=config.capacity_bytes, default_model_size=config.default_model_size,
                                 min_churn_age_ms=config.min_churn_age_ms, load_timeout_ms=config.load_timeout_ms,
                                 loading_concurrency=config.loading_concurrency, mlserver_version=version("mlserver"))
    containers = podspec.containers(index, built, pod_dir, files, "mm", options)
    for container in containers:
        if container["name"] == "mlserver":
            container["env"].update(dict(config.mlserver_env))
        if container["name"] == "mm":
            container["env"].update({"WKUBE_POD_NAME": config.pod_name, "HOSTNAME": config.pod_name,
                                     "MM_LABELS": ",".join(config.labels),
                                     "KV_STORE": f"etcd:{config.etcd_connection_file}", **dict(config.mm_env)})
    spec = pod_dir / "pod.json"
    spec.write_text(podspec.spec_json(containers), encoding="utf-8")
    pid = spawn(netns.with_hosts([sys.executable, "-m", "mmgitops.lab.reference.pod", "--spec", spec], hosts),
                pod_dir / "pod.log", preexec_fn=netns.inside(holder, die=True)).pid
    inner = podspec.inner_ports(index)
    routes = [(address, port, inner[name]) for name, port in podspec.OUTER.items()]
    (pod_dir / "routes.json").write_text(json.dumps(routes), encoding="utf-8")
    bridge_log = pod_dir / "bridge.log"
    bridge = spawn([sys.executable, "-m", "mmgitops.lab.bridge", "--holder", holder,
                    "--routes", pod_dir / "routes.json"], bridge_log, preexec_fn=die_with_parent).pid
    found = {"pid": pid, "bridge": bridge, "index": index, "address": address, "log": str(pod_dir / "logs"),
             **podspec.endpoints(address)}
    try:
        wait_log(f"the bridge of pod {config.pod_name}", bridge_log, b"bridge ready", bridge, 15)
    except ToolError:
        for started in (pid, bridge):
            procs.kill(started)
        raise
    return found

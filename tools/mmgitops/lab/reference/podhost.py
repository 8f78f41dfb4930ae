"""Reference pods one at a time, in a network namespace that outlives them: for a controller that adds and
removes pods as Kubernetes schedules and deletes them (the local cluster's ModelMesh stand-in).

The host is the namespace holder, one etcd inside it and egress bridges to services outside (S3). Each pod
is `mmgitops.lab.reference.pod` (its four containers) plus a bridge of its own that exposes the pod's four
conventional ports on a loopback address of its own, so pods come and go without touching each other.
The pod's environment is `podspec.containers`' with what differs per cluster pod: the Kubernetes pod
name (ModelMesh's instance id is its last 12 characters), the runtime's labels, the namespace's
type-constraints file and etcd connection (root prefix `<root>/mm_ns/<namespace>`, as the controller's
per-namespace etcd Secret has it), the storage Secret's directory and the adapter's sizes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
from mmgitops.lab.mesh import etcdserver
from mmgitops.lab.ports import bindable
from mmgitops.lab.reference import build, podspec
from mmgitops.lab.spawn import spawn

ETCD_PORT = podspec.ETCD_INNER
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


def _wait_log(what: str, log: Path, marker: bytes, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.is_file() and marker in log.read_bytes():
            return
        if not procs.alive(pid):
            break
        time.sleep(0.05)
    raise ToolError(f"{what} did not start (log {log})")


class Host:
    """The namespace holder, its etcd and its egress bridges; `pids()` lists them for stopping by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.holder = 0
        self.etcd = 0
        self.egress: dict[int, int] = {}  # outside port -> pid

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.holder or not procs.alive(self.holder):
            self.holder = netns.start_holder(self.root / "netns.log")
            self.etcd, self.egress = 0, {}
        if not self.etcd or not procs.alive(self.etcd):
            self.etcd = spawn(etcdserver.command(self.root / "etcd", ETCD_PORT, podspec.ETCD_PEER_INNER),
                              self.root / "etcd.log", preexec_fn=netns.inside(self.holder)).pid
            deadline = time.monotonic() + 30
            while not netns.connects_inside(self.holder, ETCD_PORT):
                if not procs.alive(self.etcd) or time.monotonic() > deadline:
                    raise ToolError(f"etcd in the reference namespace did not start (log {self.root / 'etcd.log'})")
                time.sleep(0.1)

    def ensure_egress(self, ports: Iterable[int]) -> None:
        """Make 127.0.0.1:port inside reach 127.0.0.1:port outside, for each port not bridged yet."""
        for port in sorted(set(ports)):
            if port in self.egress and procs.alive(self.egress[port]):
                continue
            log = self.root / f"egress-{port}.log"
            log.unlink(missing_ok=True)
            pid = spawn([sys.executable, "-m", "mmgitops.lab.egress", "--holder", self.holder,
                         "--port", port], log).pid
            _wait_log(f"the egress bridge for port {port}", log, b"egress ready", pid, 15)
            self.egress[port] = pid

    def pids(self) -> dict[str, int]:
        found = {f"reference egress {port}": pid for port, pid in self.egress.items()}
        if self.etcd:
            found["reference etcd"] = self.etcd
        if self.holder:
            found["reference netns"] = self.holder
        return found

    def stop(self) -> None:
        for pid in [*self.egress.values(), self.etcd, self.holder]:
            if pid and procs.alive(pid):
                procs.stop(pid, group=True)
        self.holder, self.etcd, self.egress = 0, 0, {}


def write_namespace_files(where: Path, namespace: str, table: dict[str, tuple[str, ...]],
                          etcd_root_prefix: str) -> tuple[Path, Path]:
    """The namespace's tc-config type_constraints (rewritten only when it changes) and etcd connection."""
    where.mkdir(parents=True, exist_ok=True)
    constraints = where / "type_constraints"
    text = podspec.type_constraints_json(table)
    if not constraints.is_file() or constraints.read_text(encoding="utf-8") != text:
        partial = where / "type_constraints.partial"
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, constraints)
    connection = where / "etcd_connection"
    connection.write_text(json.dumps({"endpoints": f"http://127.0.0.1:{ETCD_PORT}",
                                      "root_prefix": f"{etcd_root_prefix}/mm_ns/{namespace}"}), encoding="utf-8")
    (where / "dataplane_api_config").write_text(json.dumps(podspec.DATAPLANE_CONFIG), encoding="utf-8")
    return constraints, connection


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


def start_pod(host: Host, index: int, address: str, built: build.Built, pod_dir: Path,
              config: PodConfig) -> dict[str, Any]:
    """One pod in the host's namespace (inner port block `index`) and its bridge on `address`."""
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
        if container["name"] == "mm":
            container["env"].update({"WKUBE_POD_NAME": config.pod_name, "HOSTNAME": config.pod_name,
                                     "MM_LABELS": ",".join(config.labels),
                                     "KV_STORE": f"etcd:{config.etcd_connection_file}"})
    spec = pod_dir / "pod.json"
    spec.write_text(podspec.spec_json(containers), encoding="utf-8")
    pid = spawn([sys.executable, "-m", "mmgitops.lab.reference.pod", "--spec", spec], pod_dir / "pod.log",
                preexec_fn=netns.inside(host.holder)).pid
    inner = podspec.inner_ports(index)
    routes = [(address, port, inner[name]) for name, port in podspec.OUTER.items()]
    (pod_dir / "routes.json").write_text(json.dumps(routes), encoding="utf-8")
    bridge_log = pod_dir / "bridge.log"
    bridge = spawn([sys.executable, "-m", "mmgitops.lab.bridge", "--holder", host.holder,
                    "--routes", pod_dir / "routes.json"], bridge_log).pid
    found = {"pid": pid, "bridge": bridge, "index": index, "address": address, "log": str(pod_dir / "logs"),
             **podspec.endpoints(address)}
    try:
        _wait_log(f"the bridge of pod {config.pod_name}", bridge_log, b"bridge ready", bridge, 15)
    except ToolError:
        stop_pod(found, kill=True)
        raise
    return found


def stop_pod(pod: dict[str, Any], kill: bool) -> None:
    """kill: SIGKILL the pod's process group at once, as a pod deleted with no grace period dies."""
    for pid in (pod["pid"], pod["bridge"]):
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        elif procs.alive(pid):
            procs.stop(pid, group=True)

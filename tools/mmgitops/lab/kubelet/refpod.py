"""A modelmesh-serving runtime pod behind the reference engine: the real ModelMesh, rest-proxy and runtime adapter
built from the pinned sources, with MLServer (lab/reference), run in the pod network with the pod's own settings
(runtimepod.settings) and its mounted files: the etcd Secret ModelMesh reads through `KV_STORE` (`http://etcd:2379`,
resolved by the pod's hosts file as by cluster DNS), the tc-config ConfigMap and the storage-config Secret.

On a node each pod has a network namespace of its own; here all pods share the pod network, so each pod's
containers take a block of ports on 127.0.0.1 (reference/podspec.py), and two relays put the block's four
conventional ports where they are reached: on the pod IP inside the pod network (the controller's KubeResolver dials
8033, the kubelet probes 8089) and on a loopback address of this machine (the pod's PortForward, for the suite).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import egress, netns
from mmgitops.lab.kubelet import runtimepod
from mmgitops.lab.mesh import adapter
from mmgitops.lab.reference import build, podhost, podspec
from mmgitops.lab.spawn import spawn

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
MLSERVER_CONTAINER = "mlserver"  # the mlserver-1.x runtime's model server


class ReferencePods:
    """The reference pods of one pod network: their port blocks, loopback addresses and relays."""

    def __init__(self, root: Path, holder: int) -> None:
        self.root, self.holder = root, holder
        self.egress: dict[int, int] = {}  # port of this machine's loopback -> PID of its bridge from the pod network
        self.started: dict[tuple[str, str], dict[str, Any]] = {}
        self._built: build.Built | None = None

    def start(self, key: tuple[str, str], pod: dict[str, Any], s: runtimepod.PodSettings, hosts: Path,
              where: Path) -> dict[str, Any]:
        """The pod's containers and relays; returns {"pids": name -> PID, "endpoints": pod port -> HOST:PORT on
        this machine, "commit": the ModelMesh commit}."""
        if s.constraints_file is None:
            raise ToolError(f"container {runtimepod.MM_CONTAINER}: MM_TYPE_CONSTRAINTS_PATH names no mounted file")
        if self._built is None:
            self._built = build.build(None, lambda _text: None)  # checked before the cluster started
        self.root.mkdir(parents=True, exist_ok=True)
        storage = s.storage_dir or where / "no-storage-config"
        storage.mkdir(parents=True, exist_ok=True)
        # The storages on this machine's loopback (the cluster's S3 server): reached from the pod network as a
        # pod reaches an in-cluster S3 Service.
        self._egress(_loopback_ports(storage))
        taken = {p["index"] for p in self.started.values()}
        index = min(set(range(podhost.MAX_PODS)) - taken)
        address = podhost.free_address(p["address"] for p in self.started.values())
        mm = {c["name"]: c for c in pod["spec"]["containers"]}[runtimepod.MM_CONTAINER]
        config = podhost.PodConfig(
            pod_name=s.pod_name, labels=s.labels, constraints_file=s.constraints_file,
            etcd_connection_file=s.etcd.file, storage_dir=storage, capacity_bytes=s.capacity_bytes,
            default_model_size=s.default_model_size, min_churn_age_ms=s.min_churn_age_ms,
            load_timeout_ms=s.load_timeout_ms, loading_concurrency=s.loading_concurrency,
            mm_env=_mm_env(mm, s, podspec.inner_ports(index)["metrics"]), mlserver_env=_mlserver_env(pod))
        started = podhost.start_pod(self.holder, index, address, self._built, where, config, hosts)
        self.started[key] = started
        try:
            relay = self._relay(pod["status"]["podIP"], index, where)
        except ToolError:
            self.stop(key)
            for pid in (started["pid"], started["bridge"]):  # nobody else knows them yet
                procs.kill(pid)
            raise
        return {"pids": {"pod": started["pid"], "port-forward": started["bridge"], "pod-ip-relay": relay},
                "endpoints": {str(port): f"{address}:{port}" for port in podspec.OUTER.values()},
                "commit": self._built.commits["modelmesh"]}

    def _relay(self, pod_ip: str, index: int, where: Path) -> int:
        """The pod IP's ports to the pod's block, both ends inside the pod network."""
        inner = podspec.inner_ports(index)
        routes = where / "pod-ip-routes.json"
        routes.write_text(json.dumps([[pod_ip, port, inner[name]] for name, port in podspec.OUTER.items()]),
                          encoding="utf-8")
        log = where / "pod-ip-relay.log"
        pid = spawn([sys.executable, "-m", "mmgitops.lab.bridge", "--holder", self.holder, "--routes", routes],
                    log, preexec_fn=netns.inside(self.holder, die=True)).pid
        podhost.wait_log(f"the pod IP relay of {pod_ip}", log, b"bridge ready", pid, 15)
        return pid

    def stop(self, key: tuple[str, str]) -> None:
        """Forget the pod's block and address; its processes are the caller's to stop."""
        self.started.pop(key, None)

    def _egress(self, ports: list[int]) -> None:
        """127.0.0.1:port in the pod network reaching 127.0.0.1:port of this machine, for each port not bridged yet."""
        for port in sorted(set(ports)):
            if port not in self.egress or not procs.alive(self.egress[port]):
                self.egress[port] = egress.start(self.holder, [port], self.root / f"egress-{port}.log")

    def egress_pids(self) -> dict[str, int]:
        return {f"pod-network egress {port}": pid for port, pid in self.egress.items()}


def _mm_env(mm: dict[str, Any], s: runtimepod.PodSettings, metrics_port: int) -> tuple[tuple[str, str], ...]:
    """What of the mm container's own env the reference pod keeps over podspec's: its metrics scheme (RHOAI serves
    them over https, with a certificate ModelMesh makes itself) on the port of the pod's block, and its JVM
    arguments."""
    env = {e["name"]: str(e.get("value", "")) for e in mm.get("env") or [] if "value" in e}
    scheme = "https"
    for part in env.get("MM_METRICS", "").partition(":")[2].split(";"):
        name, _, value = part.partition("=")
        if name == "scheme" and value:
            scheme = value
    out = {"MM_METRICS": f"prometheus:port={metrics_port};scheme={scheme}",
           "CUSTOM_JVM_ARGS": env.get("CUSTOM_JVM_ARGS") or f"-Dtas.min_churn_age_ms={s.min_churn_age_ms}"}
    return tuple(sorted(out.items()))


def _mlserver_env(pod: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A pod whose model server is not MLServer (the triton-gpu runtime's) is played by MLServer too, and the mlserver
    adapter writes no implementation for a format it does not know: MLServer's default implementation is then the
    embedded engine's ONNX stand-in (onnxruntime), as the embedded engine plays Triton (docs/fidelity.md)."""
    if any(c.get("name") == MLSERVER_CONTAINER for c in pod["spec"]["containers"]):
        return ()
    return (("MLSERVER_MODEL_IMPLEMENTATION", adapter.IMPLEMENTATIONS["onnx"]),)


def _loopback_ports(storage_dir: Path) -> list[int]:
    """The ports of the storages on this machine's loopback the pod's storage-config names."""
    ports = []
    for path in sorted(storage_dir.iterdir()) if storage_dir.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            url = urlsplit(str(json.loads(path.read_text(encoding="utf-8")).get("endpoint_url", "")))
            if url.hostname in LOOPBACK_HOSTS and url.port:
                ports.append(url.port)
    return ports

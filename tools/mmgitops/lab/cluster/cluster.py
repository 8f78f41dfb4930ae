"""`mmgitops local cluster up | down | status`: kwokctl's binary runtime with our own binaries, on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from mmgitops import procs
from mmgitops.errors import ToolError
from mmgitops.lab import binaries, prereqs
from mmgitops.lab.cluster import audit, nodes
from mmgitops.lab.kubelet import backer, engines, network
from mmgitops.lab.ports import free_port
from mmgitops.lab.state import read_json, state_root

S3_KEY, S3_BUCKET = "localS3", "models"
# The tests' least-privileged ServiceAccounts live here; the API server audits their requests, and only theirs,
# and those of the conformance profile's runner (components/conformance/runner-namespace), which `make demo` runs as.
AUDITED_NAMESPACE = "mmgitops-identities"
AUDITED = (AUDITED_NAMESPACE, "mmgitops-conformance")


def name() -> str:
    """The kwokctl cluster name; tests use their own so they never touch a user's cluster."""
    return os.environ.get("MMGITOPS_CLUSTER_NAME", "mmgitops")


def state_dir() -> Path:
    return state_root() / f"cluster-{name()}"


def kubeconfig_path() -> Path:
    return state_dir() / "kubeconfig"


def pki_dir() -> Path:
    """kwokctl's certificates: ca.crt, and admin.crt/admin.key (the admin's, and kube-apiserver's serving pair)."""
    return Path.home() / ".kwok" / "clusters" / name() / "pki"


def _kwokctl_config(ports: dict[str, int]) -> dict[str, Any]:
    """kwokctl binds every component to 0.0.0.0; these arguments (the last one wins) keep them on loopback."""
    etcd, peer = f"http://127.0.0.1:{ports['etcd']}", f"http://127.0.0.1:{ports['etcd_peer']}"

    def args(**kv: str) -> list[dict[str, str]]:
        return [{"key": k.replace("_", "-"), "value": v} for k, v in kv.items()]

    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "componentsPatches": [
            {"name": "etcd", "extraArgs": args(listen_client_urls=etcd, advertise_client_urls=etcd,
                                               listen_peer_urls=peer, initial_advertise_peer_urls=peer,
                                               initial_cluster=f"node0={peer}")},
            # The range the pod network (lab/kubelet/network.py) routes; kube-apiserver's default overlaps kwok's pods.
            {"name": "kube-apiserver", "extraArgs": args(bind_address="127.0.0.1",
                                                         service_cluster_ip_range=network.SERVICE_CIDR)},
            {"name": "kube-controller-manager", "extraArgs": args(bind_address="127.0.0.1")},
            {"name": "kube-scheduler", "extraArgs": args(bind_address="127.0.0.1")},
            {"name": "kwok-controller", "extraArgs": args(server_address=f"127.0.0.1:{ports['kwok']}",
                                                          node_port=str(ports["kwok"]), cidr=network.POD_CIDR_KWOK)},
        ],
    }


def _kwokctl(bins: binaries.Binaries, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(bins.kwokctl), "--name", name(), *args], capture_output=True, text=True)
    if log:
        with log.open("a", encoding="utf-8") as out:
            out.write(proc.stdout + proc.stderr)
    return proc


def _last_message(text: str) -> str:
    for line in reversed(text.strip().splitlines()):
        try:
            return str(json.loads(line).get("msg", line))
        except ValueError:
            return line
    return "no output"


def read_state() -> dict[str, Any] | None:
    return read_json(state_dir() / "cluster.json")


def up(progress: Callable[[str], None], engine: str = engines.EMBEDDED) -> dict[str, Any]:
    """engine: what plays each runtime pod the ModelMesh controller makes, an embedded local-mesh instance or a
    reference pod (the real ModelMesh data plane)."""
    if engine not in engines.ENGINES:
        raise ToolError(f"--engine {engine}: choose one of {', '.join(engines.ENGINES)}")
    if read_state():
        raise ToolError(f"a local cluster is already up (kubeconfig {kubeconfig_path()}): "
                        "`mmgitops local cluster down` first")
    prereqs.check("`local cluster up`", "cluster", *(("reference",) if engine == engines.REFERENCE else ()))
    started = time.monotonic()
    _check_controller(progress)
    if engine == engines.REFERENCE:
        _check_reference(progress)
    bins, built = binaries.ensure(progress)
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    ports = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port(), "kwok": free_port(),
             "projects": free_port()}
    config = state / "kwokctl.yaml"
    config.write_text(yaml.safe_dump(_kwokctl_config(ports)), encoding="utf-8")
    audit_policy = state / "audit-policy.yaml"
    audit_policy.write_text(yaml.safe_dump(audit.policy(AUDITED)), encoding="utf-8")
    progress("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok")
    proc = _kwokctl(bins, "-c", str(config), "create", "cluster", "--runtime", "binary",
                    "--etcd-port", str(ports["etcd"]), "--kube-apiserver-port", str(ports["apiserver"]),
                    "--kube-apiserver-binary", str(bins.kube_apiserver),
                    "--kube-controller-manager-binary", str(bins.kube_controller_manager),
                    "--kube-scheduler-binary", str(bins.kube_scheduler),
                    "--etcd-binary", str(bins.etcd), "--kwok-controller-binary", str(bins.kwok),
                    "--enable-crds", "PortForward", "--kube-audit-policy", str(audit_policy),
                    "--kubeconfig", str(kubeconfig_path()), "--wait", "120s", log=state / "kwokctl.log")
    if proc.returncode != 0:
        _kwokctl(bins, "delete", "cluster", log=state / "kwokctl.log")
        raise ToolError(f"kwokctl create cluster failed: {_last_message(proc.stderr or proc.stdout)} "
                        f"(log: {state / 'kwokctl.log'})")
    info = {"name": name(), "kubeconfig": str(kubeconfig_path()), "ports": ports,
            "server": f"https://127.0.0.1:{ports['apiserver']}", "built": built, "engine": engine,
            "controller": _controller_commit(), "audit_log": str(audit.log_path())}
    (state / "cluster.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    from mmgitops.lab.cluster import bootstrap

    try:
        progress("adding nodes and installing the pinned CRDs")
        bootstrap.populate(kubeconfig_path(), nodes.cluster_nodes(), AUDITED_NAMESPACE)
        progress("making the pod network: a network namespace where pod and Service IPs answer")
        info["pod_network"] = network.start(state / "pod-network", ports["apiserver"])
        (state / "cluster.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        progress("starting the operator stand-ins, the pods' kubelet and an S3 server")
        info["standins_pid"] = _start_standins(state, engine, ports["projects"], info["pod_network"]["pod-network"],
                                               info["server"])
        progress("registering the project.openshift.io API")
        bootstrap.register_projects(kubeconfig_path(), ports["projects"])
        info.update(_start_s3(state))
    except BaseException:
        down()  # a half-started cluster helps nobody: stop what this call started
        raise
    info["seconds"] = round(time.monotonic() - started, 1)
    (state / "cluster.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def _check_reference(progress: Callable[[str], None]) -> None:
    """Before anything starts: reference pods need their binaries (built from the upstream sources, or cached)."""
    from mmgitops.lab.reference import build

    build.build(None, lambda text: progress(f"building the reference pods: {text}"))


def _check_controller(progress: Callable[[str], None]) -> None:
    """Before anything starts: the ModelMesh controller's binary, built from the pinned source (or cached). Root,
    which the pod network needs, is among the prerequisites checked before it."""
    from mmgitops.lab.controller import build

    build.ensure(lambda text: progress(f"building the ModelMesh controller: {text}"))


def _controller_commit() -> str:
    from mmgitops.lab.controller import build

    return f"modelmesh-serving {build.planned().commit}"


def _start_standins(state: Path, engine: str, projects_port: int, pod_network: int, server: str) -> int:
    log = (state / "standins.log").open("a", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "mmgitops.lab.standins", "--kubeconfig", str(kubeconfig_path()),
                             "--state", str(state), "--projects-port", str(projects_port), "--pki", str(pki_dir()),
                             "--pod-network", str(pod_network), "--server", server],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, engines.ENGINE_ENV: engine})
    (state / "standins.pid").write_text(str(proc.pid), encoding="utf-8")
    return proc.pid


def _start_s3(state: Path) -> dict[str, Any]:
    """The cluster's object store (where a real cluster has MinIO or AWS S3): moto on loopback, and a
    storage-config file naming it, for InferenceServices' models and the conformance suite's samples."""
    from mmgitops.lab.mesh.storage import S3Server
    from mmgitops.modelmesh.storage import write_config

    server = S3Server.start(state / "s3.log")
    (state / "s3.pid").write_text(str(server.pid), encoding="utf-8")
    path = write_config(state / "storage-config.json", {S3_KEY: server.entry(S3_KEY, S3_BUCKET)})
    return {"s3": server.endpoint, "storage_config": str(path)}


def kwok_pids() -> dict[str, int]:
    """The component processes kwokctl started, from the pid files it keeps."""
    pid_dir = Path.home() / ".kwok" / "clusters" / name() / "pids"
    out = {}
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        try:
            out[path.stem] = int(path.read_text().strip())
        except ValueError:
            continue
    return out


def down() -> list[str]:
    stopped = []
    state = state_dir()
    pid_file = state / "standins.pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text().strip())
        if procs.alive(pid):
            procs.stop(pid)
            stopped.append(f"operator stand-ins (pid {pid})")
    s3_pid = state / "s3.pid"
    if s3_pid.is_file() and procs.alive(pid := int(s3_pid.read_text().strip())):
        procs.stop(pid, group=True)
        stopped.append(f"S3 server (pid {pid})")
    # The pods' kubelet stops their processes on SIGTERM; these are what a killed one left.
    left = backer.recorded(state / "pods")
    for what, pid in left.items():
        if procs.alive(pid):
            procs.stop(pid, group=True)
            stopped.append(f"{what} (pid {pid})")
    info = read_state() or {}
    stopped += network.stop(info.get("pod_network") or {})
    components = kwok_pids()
    if components or (Path.home() / ".kwok" / "clusters" / name()).exists():
        bins = binaries.planned()
        if bins.kwokctl.is_file():
            _kwokctl(bins, "delete", "cluster")
        for component, pid in components.items():
            if procs.alive(pid):  # kwokctl missed it: stop it ourselves, by PID
                procs.stop(pid)
            stopped.append(f"{component} (pid {pid})")
    if state.exists():
        # rmtree removes symlinks as links: a reference pod's state links into the build cache
        shutil.rmtree(state)
    return stopped


def status() -> dict[str, Any]:
    info = read_state()
    if info is None:
        return {"up": False}
    processes = {name: {"pid": pid, "running": procs.alive(pid)} for name, pid in kwok_pids().items()}
    pid_file = state_dir() / "standins.pid"
    if pid_file.is_file():
        pid = int(pid_file.read_text().strip())
        processes["operator-standins"] = {"pid": pid, "running": procs.alive(pid)}
    s3_pid = state_dir() / "s3.pid"
    if s3_pid.is_file():
        pid = int(s3_pid.read_text().strip())
        processes["s3"] = {"pid": pid, "running": procs.alive(pid)}
    backed = {f"pod {name}": pid for name, pid in backer.recorded(state_dir() / "pods").items()}
    for what, pid in {**(info.get("pod_network") or {}), **backed}.items():
        processes[what] = {"pid": pid, "running": procs.alive(pid)}
    return {"up": True, "engine": engines.EMBEDDED, **info, "processes": processes}


@contextmanager
def fresh(cluster: str, progress: Callable[[str], None], engine: str = engines.EMBEDDED,
          stop_first: Callable[[], object] = lambda: None) -> Iterator[dict[str, Any]]:
    """A fresh local cluster named `cluster` (never a user's) for the span: what an earlier one of that name left
    is stopped first, and the cluster is stopped after; `stop_first` stops what runs beside it (its Argo CD) each
    time before the cluster stops."""
    previous = os.environ.get("MMGITOPS_CLUSTER_NAME")
    os.environ["MMGITOPS_CLUSTER_NAME"] = cluster
    try:
        stop_first()
        down()
        info = up(progress, engine)
        try:
            yield info
        finally:
            stop_first()
            down()
    finally:
        if previous is None:
            os.environ.pop("MMGITOPS_CLUSTER_NAME", None)
        else:
            os.environ["MMGITOPS_CLUSTER_NAME"] = previous

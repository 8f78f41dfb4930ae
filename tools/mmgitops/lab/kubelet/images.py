"""Which program of this machine runs a container of a given image, and how the container's view (its command,
its /tmp, its service-account namespace) maps onto this machine.

Only images whose program exists here are listed: modelmesh-serving's controller (built from the pinned RHOAI
source, lab/controller/build.py), etcd (the local cluster's own pinned build) and the etcd pod's init container
(`oc` scripts, ported). A pod with any other container is left to kwok, as before.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from mmgitops.lab.kubelet import KubeletError, secret_data

CONTAINER_TMP = "/tmp"
ETCD_CLIENT_PORT = 2379  # enable_auth.sh's endpoint, http://0.0.0.0:2379
ETCD_WAIT_S = 60.0  # the script's availability loop: 10 tries, 6 s apart


@dataclass
class Program:
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Container:
    """What a program needs to know of its container: the spec, the pod, its resolved env, its mounts on this
    machine (mountPath -> host path), its own scratch directory (the container's /tmp), a kubeconfig for the pod's
    ServiceAccount, and a Kubernetes client with the stand-ins' rights (init containers that run `oc`)."""

    spec: dict[str, Any]
    pod: dict[str, Any]
    env: dict[str, str]
    mounts: dict[str, Path]
    tmp: Path
    kubeconfig: Path
    kube: Any = None


def image_name(image: str) -> str:
    """`quay.io/opendatahub/modelmesh-controller:v0.12.0` -> `modelmesh-controller`."""
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


def mounted_path(path: str, mounts: dict[str, Path]) -> str | None:
    """Where a path under one of a container's mounts (mountPath -> host path) is on this machine; None if none."""
    for mount, host in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return str(host / path[len(mount):].lstrip("/"))
    return None


def container_path(path: str, c: Container) -> str:
    """A path the container names, as this machine sees it: under one of its mounts, or under its own /tmp."""
    mounted = mounted_path(path, c.mounts)
    if mounted is not None:
        return mounted
    if path == CONTAINER_TMP or path.startswith(CONTAINER_TMP + "/"):
        return str(c.tmp / path[len(CONTAINER_TMP):].lstrip("/"))
    return path


def link_mounts_under_tmp(c: Container) -> None:
    """Mounts below /tmp become links in the container's own tmp, so that a program given TMPDIR finds them where
    its image expects them (the controller's webhook certificates, /tmp/k8s-webhook-server/serving-certs)."""
    for mount, host in c.mounts.items():
        if mount.startswith(CONTAINER_TMP + "/"):
            link = c.tmp / mount[len(CONTAINER_TMP) + 1:]
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(host)


def modelmesh_controller(c: Container) -> Program:
    """The manager binary with the container's args. It reads its namespace from NAMESPACE where a pod has the
    service-account namespace file (main.go), its kube config from KUBECONFIG (the pod's ServiceAccount token:
    controller-runtime's loadConfig takes $KUBECONFIG before in-cluster config), its webhook certificates from
    $TMPDIR/k8s-webhook-server/serving-certs, and its Deployment template relative to its working directory, as
    the image's WORKDIR has it."""
    from mmgitops.lab.controller import build

    built = build.planned()
    link_mounts_under_tmp(c)
    args = [container_path(a, c) for a in c.spec.get("args") or []]
    env = {"NAMESPACE": c.pod["metadata"]["namespace"], "KUBECONFIG": str(c.kubeconfig), "TMPDIR": str(c.tmp),
           "HOME": str(c.tmp)}
    return Program([str(built.binary), *args], built.tree, env)


def etcd(c: Container) -> Program:
    """The local cluster's etcd build, with the container's command line (its data dir in the container's /tmp)."""
    from mmgitops.lab import binaries

    command = [*(c.spec.get("command") or ["etcd"]), *(c.spec.get("args") or [])]
    return Program([str(binaries.planned().etcd), *[container_path(a, c) for a in command[1:]]], c.tmp,
                   {"HOME": str(c.tmp)})


def etcd_secret_creator(c: Container) -> None:
    """The etcd pod's init container (config/overlays/odh/quickstart.yaml, `etcd-secret-creator`): the root
    password Secret and modelmesh-serving's `model-serving-etcd`, each made only when missing, from the other
    when one exists, as its `oc` script does."""
    namespace = c.pod["metadata"]["namespace"]
    core = c.kube.core

    def read(name: str) -> dict[str, str] | None:
        try:
            found = core.read_namespaced_secret(name, namespace)
            return {k: v.decode("utf-8", errors="replace") for k, v in secret_data({"data": found.data}).items()}
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    passwords, connection = read("etcd-passwords"), read("model-serving-etcd")
    if passwords is not None and connection is not None:
        return
    if passwords is None and connection is not None:
        password = str(json.loads(connection.get("etcd_connection", "{}")).get("password", ""))
    elif passwords is not None:
        password = passwords.get("root", "")
    else:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        password = "".join(secrets.choice(alphabet) for _ in range(32))
    if passwords is None:
        _create_secret(core, namespace, "etcd-passwords", {"root": password})
    if connection is None:
        value = json.dumps({"endpoints": "http://etcd:2379", "root_prefix": "modelmesh-serving", "userid": "root",
                            "password": password})
        _create_secret(core, namespace, "model-serving-etcd", {"etcd_connection": value})


def _create_secret(core: Any, namespace: str, name: str, data: dict[str, str]) -> None:
    # `oc create secret generic --type=string`, as the script makes them
    core.create_namespaced_secret(namespace, {"apiVersion": "v1", "kind": "Secret", "type": "string",
                                              "metadata": {"name": name}, "stringData": data})


def etcd_enable_auth(c: Container, holder: int) -> None:
    """The etcd container's postStart hook (config/overlays/odh's `etcd-scripts`, `enable_auth.sh ${ROOT_PASSWORD}`):
    once etcd answers, the user root with the container's ROOT_PASSWORD and auth enabled, as `etcdctl user add root`
    and `etcdctl auth enable` (which grants root the root role it needs) leave it. Through etcd's HTTP gateway."""
    from mmgitops.lab.kubelet import network

    base = f"http://127.0.0.1:{ETCD_CLIENT_PORT}/v3"
    deadline = time.monotonic() + ETCD_WAIT_S
    while network.post_json(holder, f"{base}/maintenance/status", {})[0] != 200:
        if time.monotonic() > deadline:
            raise KubeletError(f"container {c.spec['name']}: postStart: etcd did not answer in {ETCD_WAIT_S:.0f} s")
        time.sleep(0.5)
    password = c.env.get("ROOT_PASSWORD") or "password"  # the script's own default
    for path, body in (("auth/user/add", {"name": "root", "password": password}), ("auth/role/add", {"name": "root"}),
                       ("auth/user/grant", {"user": "root", "role": "root"}), ("auth/enable", {})):
        status, text = network.post_json(holder, f"{base}/{path}", body)
        if status != 200 and "already exist" not in text and "already enabled" not in text:
            raise KubeletError(f"container {c.spec['name']}: postStart: etcd {path}: {status} {text[:200]}")


PROGRAMS: dict[str, Callable[[Container], Program]] = {
    "modelmesh-controller": modelmesh_controller,
    "ose-etcd-rhel9": etcd,
}
INIT_PROGRAMS: dict[str, Callable[[Container], None]] = {
    "ose-cli-rhel9": etcd_secret_creator,
}
# lifecycle.postStart hooks, by image: run once the container's program started, in the pod network (its holder)
POST_START: dict[str, Callable[[Container, int], None]] = {
    "ose-etcd-rhel9": etcd_enable_auth,
}


def runs_here(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    return (all(image_name(c.get("image", "")) in PROGRAMS for c in spec.get("containers") or [])
            and all(image_name(c.get("image", "")) in INIT_PROGRAMS for c in spec.get("initContainers") or [])
            and bool(spec.get("containers")))


def environ(extra: dict[str, str], resolved: dict[str, str]) -> dict[str, str]:
    """A program's environment: the pod's resolved env over a minimal base (PATH only: nothing of this machine's
    environment leaks into the container), then what the program needs on this machine."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **resolved, **extra}

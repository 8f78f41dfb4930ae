"""A modelmesh-serving runtime pod as either engine plays it, configured from the env and volumes the controller gave
its containers. Embedded: one embedded mesh instance (lab/mesh) plays the pod's `mm`, `rest-proxy`, adapter and
model-server containers, and a relay in the pod network puts its ports on the pod IP, where the controller's
KubeResolver dials (8033) and the kubelet probes (8089). Reference: lab/kubelet/refpod.py.

From the pod spec: the instance id from `WKUBE_POD_NAME` (ModelMesh takes its last 12 characters), the labels
from `MM_LABELS`, the churn age from `CUSTOM_JVM_ARGS`, the capacity from the adapter's
`CONTAINER_MEM_REQ_BYTES` minus `MEM_BUFFER_BYTES`, `LOADTIME_TIMEOUT`, `LOADING_CONCURRENCY`, `DEFAULT_MODELSIZE`,
the mesh's etcd and key prefix from the mounted `etcd_connection` (`KV_STORE`), and the storage keys from the
mounted `storage-config`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError
from mmgitops.lab.kubelet import images
from mmgitops.lab.mesh import registry
from mmgitops.lab.mesh.serve import InstanceConfig
from mmgitops.modelmesh import defaults

MM_CONTAINER, MM_IMAGE = "mm", "modelmesh"
CHURN_ARG = re.compile(r"-Dtas\.min_churn_age_ms=(\d+)")
KV_STORE = "etcd:"
# The pod's ports, as the controller's template names them, and which of the instance's endpoints serves each.
POD_PORTS = {defaults.GRPC_PORT: "grpc", defaults.REST_PORT: "rest", defaults.METRICS_PORT: "metrics",
             defaults.PROBE_PORT: "probes"}


def is_runtime_pod(pod: dict[str, Any]) -> bool:
    """A pod with ModelMesh's `mm` container: the controller's runtime Deployments make no other."""
    return any(c.get("name") == MM_CONTAINER and images.image_name(c.get("image", "")) == MM_IMAGE
               for c in (pod.get("spec") or {}).get("containers") or [])


@dataclass(frozen=True)
class Etcd:
    endpoints: str  # as the Secret names them, e.g. http://etcd.redhat-ods-applications:2379
    root_prefix: str
    file: Path  # the mounted etcd_connection on this machine


def etcd_of(env: dict[str, str], mounts: dict[str, Path]) -> Etcd:
    """The mesh's etcd, as ModelMesh reads it from KV_STORE=etcd:<file> (the controller's mounted Secret)."""
    store = env.get("KV_STORE", "")
    if not store.startswith(KV_STORE):
        raise ToolError(f"container {MM_CONTAINER}: KV_STORE {store!r} is not etcd:<file>")
    mounted = images.mounted_path(store[len(KV_STORE):], mounts)
    if mounted is None:
        raise ToolError(f"container {MM_CONTAINER}: KV_STORE names {store[len(KV_STORE):]}, which no volume mounts")
    path = Path(mounted)
    try:
        connection = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ToolError(f"container {MM_CONTAINER}: cannot read its etcd connection {path}: {error}") from None
    return Etcd(str(connection.get("endpoints", "")), str(connection.get("root_prefix", "")), path)


@dataclass(frozen=True)
class PodSettings:
    """What a runtime pod's engine takes from the pod spec, whichever engine plays it."""

    pod_name: str
    service_name: str  # MM_SERVICE_NAME: the mesh's name in its etcd prefix
    labels: tuple[str, ...]
    capacity_bytes: int
    default_model_size: int  # 0: the engine's own default
    min_churn_age_ms: int
    load_timeout_ms: int
    loading_concurrency: int
    etcd: Etcd
    constraints_file: Path | None  # the mounted tc-config type_constraints (dataplane_api_config beside it)
    storage_dir: Path | None  # the mounted storage-config Secret


def settings(pod: dict[str, Any], envs: dict[str, dict[str, str]], mounts: dict[str, dict[str, Path]]) -> PodSettings:
    """The pod's settings. envs and mounts: per container name, resolved and materialised."""
    mm = envs[MM_CONTAINER]
    adapter = next((env for env in envs.values() if "CONTAINER_MEM_REQ_BYTES" in env), None)
    if adapter is None:
        raise ToolError("no container has CONTAINER_MEM_REQ_BYTES: not a built-in adapter runtime")
    storage = next((m["/storage-config"] for m in mounts.values() if "/storage-config" in m), None)
    mm_mounts = mounts.get(MM_CONTAINER, {})
    etcd = etcd_of(mm, mm_mounts)
    constraints = images.mounted_path(mm.get("MM_TYPE_CONSTRAINTS_PATH", ""), mm_mounts)
    timeout_ms = int(adapter.get("LOADTIME_TIMEOUT", "90000"))
    churn = CHURN_ARG.search(mm.get("CUSTOM_JVM_ARGS", ""))
    return PodSettings(
        pod_name=mm.get("WKUBE_POD_NAME") or pod["metadata"]["name"],
        service_name=mm.get("MM_SERVICE_NAME") or registry.SERVICE_NAME,
        labels=tuple(x for x in mm.get("MM_LABELS", "").split(",") if x),
        capacity_bytes=int(adapter["CONTAINER_MEM_REQ_BYTES"]) - int(adapter.get("MEM_BUFFER_BYTES", "0")),
        default_model_size=int(adapter.get("DEFAULT_MODELSIZE") or 0),
        # ModelMesh's default without the property: 10 x max(3 s, load timeout / 3)
        min_churn_age_ms=int(churn[1]) if churn else 10 * max(3000, timeout_ms // 3),
        load_timeout_ms=timeout_ms, loading_concurrency=int(adapter.get("LOADING_CONCURRENCY", "1")),
        etcd=etcd,
        constraints_file=Path(constraints) if constraints else None, storage_dir=storage)


def instance_config(s: PodSettings, etcd_endpoint: str, work: Path) -> InstanceConfig:
    """The embedded instance that plays a pod of these settings."""
    sizes = {"default_model_size_bytes": s.default_model_size} if s.default_model_size else {}
    return InstanceConfig(
        instance_id=defaults.instance_id(s.pod_name), etcd=etcd_endpoint,
        prefix=registry.kv_prefix(s.etcd.root_prefix, "", s.service_name), work_dir=str(work),
        capacity_bytes=s.capacity_bytes, min_churn_age_ms=s.min_churn_age_ms, load_timeout_ms=s.load_timeout_ms,
        max_loading_concurrency=s.loading_concurrency, storage_config=str(s.storage_dir or ""),
        etcd_connection=str(s.etcd.file),
        labels=list(s.labels), constraints_file=str(s.constraints_file or ""), **sizes)

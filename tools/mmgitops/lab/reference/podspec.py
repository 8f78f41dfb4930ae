"""A reference pod's containers and their environment, as modelmesh-serving's controller writes them for
the mlserver-1.x ServingRuntime (config/internal/base/deployment.yaml.tmpl, controllers/modelmesh/*.go),
with the few additions a pod needs off Kubernetes. All pods share one network namespace, so each gets
its own block of inner ports; the bridge exposes the four conventional ones on the pod's own address.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgitops.lab.mesh import constraints
from mmgitops.lab.reference.build import Built
from mmgitops.modelmesh.defaults import GRPC_PORT, METRICS_PORT, PROBE_PORT, REST_PORT

SERVICE_NAME = "modelmesh-serving"
DEFAULT_VMODEL_OWNER = "ksp"  # the controller's PredictorCRSourceId
# cluster_config.go: how the mesh finds the vmodel id in each data-plane request.
DATAPLANE_CONFIG = {
    "rpcConfigs": {
        "inference.GRPCInferenceService/ModelInfer": {"idExtractionPath": [1], "vModelId": True},
        "inference.GRPCInferenceService/ModelMetadata": {"idExtractionPath": [1], "vModelId": True},
        "tensorflow.serving.PredictionService/Predict": {"idExtractionPath": [1, 1], "vModelId": True},
        "org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions": {
            "idExtractionPath": [1], "vModelId": True},
    },
    "allowOtherRpcs": True,
}
# The conventional ports of a runtime pod, which the bridge exposes on each pod's address.
OUTER = {"grpc": GRPC_PORT, "rest": REST_PORT, "metrics": METRICS_PORT, "probes": PROBE_PORT}
ETCD_INNER, ETCD_PEER_INNER, S3_INNER = 2379, 2380, 9000
MEM_LIMIT_MB = 448  # the mm container's memory in model-serving-config's modelMeshResources
MEM_BUFFER_BYTES = 128 * 2**20  # mlserver-1.x's builtInAdapter.memBufferBytes


@dataclass(frozen=True)
class PodOptions:
    capacity_bytes: int
    default_model_size: int
    min_churn_age_ms: int
    load_timeout_ms: int
    loading_concurrency: int
    mlserver_version: str


def endpoints(address: str) -> dict[str, str]:
    """Where a pod exposed on `address` serves, as a mesh's state records it."""
    return {"grpc": f"{address}:{OUTER['grpc']}", "rest": f"http://{address}:{OUTER['rest']}",
            "metrics": f"http://{address}:{OUTER['metrics']}/metrics", "probes": f"http://{address}:{OUTER['probes']}"}


def inner_ports(index: int) -> dict[str, int]:
    """Pod `index`'s ports inside the namespace: the conventional numbers' last digits on a block of 100."""
    base = 20000 + 100 * index
    return {"grpc": base + 33, "rest": base + 8, "metrics": base + 12, "probes": base + 89, "prestop": base + 90,
            "adapter": base + 85, "mlserver_grpc": base + 1, "mlserver_http": base + 2, "mlserver_metrics": base + 3}


def instance_id(index: int) -> str:
    """12 characters: ModelMesh takes the last 12 of the pod name as the instance id, so this is all of it."""
    return f"mmref-pod-{index:02d}"


def type_constraints_json(table: dict[str, tuple[str, ...]]) -> str:
    """A type-constraints table as the tc-config ConfigMap's `type_constraints` file holds it."""
    return json.dumps({k: {"required": list(v)} for k, v in sorted(table.items())})


def write_config(config_dir: Path, storage: dict[str, Any]) -> dict[str, Path]:
    """The tc-config ConfigMap's two files and the storage-config Secret as a directory (one file per key)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    constraints_file, dataplane = config_dir / "type_constraints", config_dir / "dataplane_api_config"
    # The built-in mlserver-1.x runtime alone (constraints.py's defaults).
    constraints_file.write_text(type_constraints_json(constraints.constraints_for(constraints.runtime_labels())),
                                encoding="utf-8")
    dataplane.write_text(json.dumps(DATAPLANE_CONFIG), encoding="utf-8")
    secret = config_dir / "storage-config"
    secret.mkdir(exist_ok=True)
    for key, entry in storage.items():
        (secret / key).write_text(json.dumps(entry), encoding="utf-8")
    return {"constraints": constraints_file, "dataplane": dataplane, "storage": secret}


def install_dir(built: Built, pod_dir: Path) -> Path:
    """The pod's own copy of the image's install dir: start.sh writes into it (anchor file, GC log) and
    reads its build-version; the jars are shared through a link."""
    home = pod_dir / "mmesh"
    (home / "log").mkdir(parents=True, exist_ok=True)
    for name in ("start.sh", "stop.sh"):
        shutil.copy2(built.modelmesh_home / name, home / name)
    if not (home / "lib").exists():
        (home / "lib").symlink_to(built.modelmesh_home / "lib")
    (home / "build-version").write_text(built.build_version + "\n", encoding="utf-8")
    return home


def containers(index: int, built: Built, pod_dir: Path, config: dict[str, Path], kv_prefix: str,
               options: PodOptions) -> list[dict[str, Any]]:
    ports = inner_ports(index)
    pod_name = f"{SERVICE_NAME}-{constraints.MLSERVER_RUNTIME}-{instance_id(index)}"
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(pod_dir), "LANG": "C.UTF-8"}
    models = pod_dir / "models"
    (models / "_mlserver_models").mkdir(parents=True, exist_ok=True)
    home = install_dir(built, pod_dir)
    mm_env = {
        **base_env,
        "MM_SERVICE_NAME": SERVICE_NAME, "MM_SVC_GRPC_PORT": ports["grpc"],
        "WKUBE_POD_NAME": pod_name, "WKUBE_POD_IPADDR": "127.0.0.1", "MM_LOCATION": "127.0.0.1",
        "KV_STORE": f"etcd:http://127.0.0.1:{ETCD_INNER}",
        "MM_METRICS": f"prometheus:port={ports['metrics']};scheme=http",
        "SHUTDOWN_TIMEOUT_MS": 90000,
        "INTERNAL_SERVING_GRPC_PORT": ports["mlserver_grpc"], "INTERNAL_GRPC_PORT": ports["adapter"],
        "MM_SVC_GRPC_MAX_MSG_SIZE": 16777216,
        "MM_KVSTORE_PREFIX": kv_prefix, "MM_DEFAULT_VMODEL_OWNER": DEFAULT_VMODEL_OWNER,
        "MM_LABELS": ",".join(constraints.runtime_labels()),
        "MM_TYPE_CONSTRAINTS_PATH": config["constraints"], "MM_DATAPLANE_CONFIG_PATH": config["dataplane"],
        # Off Kubernetes: what the downward API, cgroups and `hostname -I` would give, and distinct ports.
        "WATSON_SERVICE_ADDRESS": "127.0.0.1", "MEM_LIMIT_MB": MEM_LIMIT_MB, "HOSTNAME": pod_name,
        "MM_PROBE_PORT": ports["probes"], "MM_PRESTOP_WAIT_PORT": ports["prestop"],
        "JAVA_HOME": built.java_home,
        "CUSTOM_JVM_ARGS": f"-Dtas.min_churn_age_ms={options.min_churn_age_ms}",
    }
    adapter_env = {
        **base_env,
        "ADAPTER_PORT": ports["adapter"], "RUNTIME_PORT": ports["mlserver_grpc"],
        "RUNTIME_DATA_ENDPOINT": f"port:{ports['mlserver_grpc']}",
        "CONTAINER_MEM_REQ_BYTES": options.capacity_bytes + MEM_BUFFER_BYTES, "MEM_BUFFER_BYTES": MEM_BUFFER_BYTES,
        "LOADTIME_TIMEOUT": options.load_timeout_ms, "USE_EMBEDDED_PULLER": "true",
        "RUNTIME_VERSION": options.mlserver_version, "LOADING_CONCURRENCY": options.loading_concurrency,
        "ROOT_MODEL_DIR": models, "STORAGE_CONFIG_DIR": config["storage"],
    }
    if options.default_model_size:  # unset, the adapter keeps its own default
        adapter_env["DEFAULT_MODELSIZE"] = options.default_model_size
    mlserver_env = {
        **base_env,
        "MLSERVER_MODELS_DIR": models / "_mlserver_models",
        "MLSERVER_GRPC_PORT": ports["mlserver_grpc"], "MLSERVER_HTTP_PORT": ports["mlserver_http"],
        "MLSERVER_METRICS_PORT": ports["mlserver_metrics"],
        "MLSERVER_LOAD_MODELS_AT_STARTUP": "false", "MLSERVER_MODEL_NAME": "dummy-model-fixme",
        "MLSERVER_HOST": "127.0.0.1", "MLSERVER_GRPC_MAX_MESSAGE_LENGTH": "-1",
        # No worker pool: ready in seconds and no event-loop trouble with MLServer 1.7.1 (toolchain notes).
        "MLSERVER_PARALLEL_WORKERS": "0",
    }
    rest_env = {**base_env, "REST_PROXY_LISTEN_PORT": ports["rest"], "REST_PROXY_GRPC_PORT": ports["grpc"],
                "REST_PROXY_USE_TLS": "false", "REST_PROXY_GRPC_MAX_MSG_SIZE_BYTES": 16777216}
    mlserver = Path(sys.executable).parent / "mlserver"
    logs = pod_dir / "logs"
    logs.mkdir(exist_ok=True)
    return [
        {"name": "mlserver", "argv": [mlserver, "start", models / "_mlserver_models"], "env": mlserver_env,
         "cwd": pod_dir, "log": logs / "mlserver.log"},
        {"name": "mlserver-adapter", "argv": [built.adapter], "env": adapter_env, "cwd": pod_dir,
         "log": logs / "mlserver-adapter.log"},
        {"name": "rest-proxy", "argv": [built.rest_proxy], "env": rest_env, "cwd": pod_dir,
         "log": logs / "rest-proxy.log"},
        {"name": "mm", "argv": ["/bin/bash", home / "start.sh"], "env": mm_env, "cwd": home,
         "log": logs / "mm.log"},
    ]


def spec_json(items: list[dict[str, Any]]) -> str:
    return json.dumps([{k: ({ek: str(ev) for ek, ev in v.items()} if k == "env" else
                            [str(a) for a in v] if k == "argv" else str(v)) for k, v in c.items()} for c in items],
                      indent=2)

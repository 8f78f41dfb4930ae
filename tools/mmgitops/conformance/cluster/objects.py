"""The Kubernetes objects a conformance run creates: every one in the run's namespace and with the run's label.

The runtimes are this repository's own ServingRuntime templates (components/modelmesh/serving-runtimes, shipped in
the package as conformance/runtimes), so a run exercises what the GitOps half installs; only what the checks need
is changed (a name, the replicas, a small model cache, the GPU).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import yaml
from kubernetes.utils.quantity import parse_quantity

from mmgitops.conformance.target import UNIT_BYTES
from mmgitops.errors import ToolError

RUN_LABEL = "mmgitops.io/conformance-run"
RUNNER_ANNOTATION = "mmgitops.io/conformance-runner"  # HOST:PID of the suite that owns the namespace
# The key in the run's storage Secret of the storage its samples were staged in, for cleanup after a kill.
SAMPLES_ANNOTATION = "mmgitops.io/conformance-samples"
NAMESPACE_PREFIX = "mmconf-"
STORAGE_SECRET = "storage-config"  # model-serving-config's storageSecretName default
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
RUNTIME_TEMPLATES = {"cpu": "mlserver-cpu.yaml", "gpu": "triton-gpu.yaml"}
GPU = "nvidia.com/gpu"


def namespace_name(run_id: str) -> str:
    return f"{NAMESPACE_PREFIX}{run_id}"


def _meta(name: str, run_id: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {RUN_LABEL: run_id, **extra.pop("labels", {})}, **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def namespace_labels(run_id: str) -> dict[str, str]:
    # modelmesh-enabled: RHOAI's modelmesh-controller serves only namespaces that carry it.
    return {RUN_LABEL: run_id, "modelmesh-enabled": "true"}


def namespace_annotations(runner: str, storage_key: str) -> dict[str, str]:
    return {RUNNER_ANNOTATION: runner, SAMPLES_ANNOTATION: storage_key}


def namespace(run_id: str, runner: str, storage_key: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace_name(run_id), "labels": namespace_labels(run_id),
                         "annotations": namespace_annotations(runner, storage_key)}}


def storage_secret(namespace: str, run_id: str, runner: str, storage_key: str,
                   entries: dict[str, dict[str, str]]) -> dict[str, Any]:
    """ModelMesh's storage-config Secret: one key per storage, each value the storage's JSON. It names the run's
    owner and the storage of its samples too: in a namespace the run was given, it is what cleanup finds."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(STORAGE_SECRET, run_id, namespace,
                              annotations=namespace_annotations(runner, storage_key)),
            "stringData": {key: json.dumps(entry) for key, entry in entries.items()}}


def read_template(kind: str) -> dict[str, Any]:
    path = resources.files("mmgitops.conformance").joinpath("runtimes", RUNTIME_TEMPLATES[kind])
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except OSError as error:
        raise ToolError(f"{path}: cannot read the ServingRuntime template: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ToolError(f"{path}: not YAML: {error}") from None
    runtimes = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ServingRuntime"]
    if len(runtimes) != 1:
        raise ToolError(f"{path}: expected one ServingRuntime, found {len(runtimes)}")
    return runtimes[0]


DEFAULT_MODELSIZE = "DEFAULT_MODELSIZE"  # the MLServer adapter's default model size, in bytes


def _memory_request(runtime: dict[str, Any]) -> int:
    """The model server container's memory request, in bytes: what the controller gives the adapter as
    CONTAINER_MEM_REQ_BYTES (controllers/modelmesh/runtime.go)."""
    where = f"ServingRuntime {runtime.get('metadata', {}).get('name')}"
    containers = (runtime.get("spec") or {}).get("containers") or []
    if not containers:
        raise ToolError(f"{where}: spec.containers is empty")
    requested = ((containers[0].get("resources") or {}).get("requests") or {}).get("memory")
    try:
        return int(parse_quantity(requested))
    except (ValueError, TypeError):
        raise ToolError(f"{where}: spec.containers[0].resources.requests.memory: {requested!r} is not a memory "
                        "quantity") from None


def declared_room(runtime: dict[str, Any]) -> int:
    """How many one-unit models a pod of this runtime holds: the adapter's capacity (memory request minus
    memBufferBytes, model-mesh-mlserver-adapter's CapacityInBytes) in ModelMesh's 8 KiB units, less the one unit
    ModelMesh keeps as its unload buffer and leaves out of the capacity it publishes (publishInstanceRecord)."""
    buffer = int(((runtime.get("spec") or {}).get("builtInAdapter") or {}).get("memBufferBytes") or 0)
    return max((_memory_request(runtime) - buffer) // UNIT_BYTES - 1, 0)


def serving_runtime(template: dict[str, Any], name: str, namespace: str, run_id: str, replicas: int,
                    capacity_models: int, gpu: bool, gpu_placement: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template under a new name in the run's namespace, with `replicas` pods whose model cache holds
    about `capacity_models` one-unit models (capacity = the runtime container's memory request minus
    memBufferBytes), and for `gpu` one `nvidia.com/gpu` per pod placed as the repo's GPU runtime places it."""
    body = copy.deepcopy(template)
    spec = body.get("spec") or {}
    containers = spec.get("containers") or []
    memory = _memory_request(body)
    adapter = spec.setdefault("builtInAdapter", {})
    # One unit of slack: ModelMesh keeps a small unload buffer out of the capacity it reports.
    adapter["memBufferBytes"] = max(memory - (capacity_models + 1) * UNIT_BYTES, 0)
    # The samples are one unit each. At the adapter's default size (1 MB, DEFAULT_MODELSIZE) ModelMesh would want
    # room for ten 1 MB models before it starts (ModelMesh.setupMemory) and would count every pod full with
    # room for a hundred samples left; builtInAdapter.env reaches the adapter container (modelmesh-serving
    # controllers/modelmesh/runtime.go).
    # The cache is sized from the memory request, so a capacity override (the GPU runtime's) goes too.
    env = [e for e in adapter.get("env") or [] if e.get("name") not in (DEFAULT_MODELSIZE, "CONTAINER_MEM_REQ_BYTES")]
    adapter["env"] = [*env, {"name": DEFAULT_MODELSIZE, "value": str(UNIT_BYTES)}]
    spec["replicas"] = replicas
    if gpu:
        resources = containers[0].setdefault("resources", {})
        for part in ("requests", "limits"):
            resources.setdefault(part, {})[GPU] = "1"
        for field in ("nodeSelector", "tolerations"):
            if gpu_placement and field in gpu_placement:
                spec[field] = copy.deepcopy(gpu_placement[field])
    annotations = {k: v for k, v in (body.get("metadata", {}).get("annotations") or {}).items()
                   if not k.startswith("argocd.argoproj.io/")}
    body["metadata"] = _meta(name, run_id, namespace, annotations=annotations)
    body["spec"] = spec
    return body


def model_spec(runtime: str, model_format: str, storage_key: str, bucket: str, path: str) -> dict[str, Any]:
    """`spec.predictor.model`; runtime "" names none, so that the format chooses (GetPredictorTypeLabel)."""
    return {"modelFormat": {"name": model_format}, **({"runtime": runtime} if runtime else {}),
            "storage": {"key": storage_key, "path": path, "parameters": {"bucket": bucket}}}


def inference_service(name: str, namespace: str, run_id: str, runtime: str, model_format: str, storage_key: str,
                      bucket: str, path: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": _meta(name, run_id, namespace, annotations={DEPLOYMENT_MODE: "ModelMesh"}),
        "spec": {"predictor": {"model": model_spec(runtime, model_format, storage_key, bucket, path)}},
    }

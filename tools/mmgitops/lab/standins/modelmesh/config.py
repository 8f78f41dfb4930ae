"""What the ModelMesh controller reads: `model-serving-config` and the ServingRuntimes of a namespace.

All runtimes of one namespace form ONE ModelMesh cluster (modelmesh-serving controllers/modelmesh/modelmesh.go:
every runtime's `mm` container gets MM_SERVICE_NAME = the `modelmesh-serving` Service and MM_KVSTORE_PREFIX "mm"
under the namespace's etcd root prefix `<root>/mm_ns/<namespace>`, pkg/mmesh/etcd_secret.go), with one
type-constraints table for the namespace (cluster_config.go calculateConstraintData over every runtime) and
each pod carrying its own runtime's labels (constraints.go MM_LABELS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mmgitops.gitops.quantities import memory_bytes
from mmgitops.lab.mesh import constraints
from mmgitops.lab.mesh.sizing import DEFAULT_MODEL_SIZE_BYTES

CONFIGMAP = "model-serving-config"
DEFAULT_APPLICATIONS_NAMESPACE = "redhat-ods-applications"
CHURN_ARG = re.compile(r"-Dtas\.min_churn_age_ms=(\d+)")
DEFAULT_LOAD_TIMEOUT_MS = 90_000
DEFAULT_MODELSIZE_ENV = "DEFAULT_MODELSIZE"  # the runtime adapter's default model size, bytes
SERVICE = "modelmesh-serving"  # InferenceServiceName's default: MM_SERVICE_NAME of every runtime's pods
ETCD_ROOT_PREFIX = "modelmesh-serving"  # root_prefix of RHOAI's model-serving-etcd Secret
KVSTORE_PREFIX = "mm"  # modelmesh.go ModelMeshEtcdPrefix


def registry_prefix(namespace: str) -> str:
    """Where a namespace's mesh keeps its registry: the same key space for every runtime of the namespace."""
    return f"{ETCD_ROOT_PREFIX}/mm_ns/{namespace}/{KVSTORE_PREFIX}/{SERVICE}/"


@dataclass(frozen=True)
class ServingConfig:
    """The fields of model-serving-config's config.yaml the stand-in acts on, with ModelMesh's defaults."""

    pods_per_runtime: int = 2
    scale_to_zero: bool = True
    grace_period_s: int = 60
    storage_secret: str = "storage-config"
    jvm_args: str = ""
    rest_proxy: bool = True

    @classmethod
    def parse(cls, text: str) -> ServingConfig:
        data = yaml.safe_load(text or "") or {}
        if not isinstance(data, dict):
            return cls()
        zero = data.get("scaleToZero") or {}
        env = {e.get("name"): str(e.get("value", "")) for e in data.get("internalModelMeshEnvVars") or []
               if isinstance(e, dict)}
        return cls(pods_per_runtime=int(data.get("podsPerRuntime", 2)), scale_to_zero=bool(zero.get("enabled", True)),
                   grace_period_s=int(zero.get("gracePeriodSeconds", 60)),
                   storage_secret=str(data.get("storageSecretName") or "storage-config"),
                   jvm_args=env.get("CUSTOM_JVM_ARGS", ""),
                   rest_proxy=bool((data.get("restProxy") or {}).get("enabled", True)))

    def min_churn_age_ms(self, load_timeout_ms: int) -> int:
        """The JVM property when set, else ModelMesh's default: 10 x max(3 s, load timeout / 3)."""
        found = CHURN_ARG.search(self.jvm_args)
        return int(found[1]) if found else 10 * max(3000, load_timeout_ms // 3)


@dataclass(frozen=True)
class RuntimeSettings:
    """What an instance of a runtime's pod is started with."""

    capacity_bytes: int
    load_timeout_ms: int
    max_loading_concurrency: int
    replicas: int
    server_type: str
    labels: tuple[str, ...] = ()  # MM_LABELS
    default_model_size_bytes: int = DEFAULT_MODEL_SIZE_BYTES  # the adapter's DEFAULT_MODELSIZE


def serves_models(runtime: dict[str, Any]) -> bool:
    """The runtimes the controller runs pods for: multi-model and not disabled (servingruntime_controller.go)."""
    spec = runtime.get("spec") or {}
    return bool(spec.get("multiModel")) and not spec.get("disabled")


def runtime_labels(runtime: dict[str, Any], rest_proxy: bool) -> tuple[str, ...]:
    """GetServingRuntimeLabelSet: mt: labels for the autoSelect formats only, pv: per protocol, rt:<name>."""
    spec = runtime.get("spec") or {}
    formats = [(str(f["name"]), None if f.get("version") is None else str(f["version"]))
               for f in spec.get("supportedModelFormats") or [] if f.get("autoSelect") and f.get("name")]
    return constraints.runtime_labels(runtime["metadata"]["name"], formats,
                                      [str(p) for p in spec.get("protocolVersions") or []], rest_proxy)


def namespace_constraints(labels_by_runtime: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """The namespace's tc-config `type_constraints`: one table for all its runtimes, each runtime's model types
    crossed with its own protocol versions only (calculateConstraintData works runtime by runtime)."""
    table = constraints.constraints_for(())
    for labels in labels_by_runtime.values():
        table.update(constraints.constraints_for(labels))
    return table


def default_model_size(runtime: dict[str, Any]) -> int:
    """DEFAULT_MODELSIZE from builtInAdapter.env, which runtime.go puts on the adapter container; else the
    adapter's own default."""
    where = f"ServingRuntime {runtime['metadata']['name']}: spec.builtInAdapter.env {DEFAULT_MODELSIZE_ENV}"
    for env in ((runtime.get("spec") or {}).get("builtInAdapter") or {}).get("env") or []:
        if env.get("name") == DEFAULT_MODELSIZE_ENV:
            try:
                size = int(str(env.get("value", "")))
            except ValueError:
                raise ValueError(f"{where}: {env.get('value')!r} is not a whole number of bytes") from None
            if size <= 0:
                raise ValueError(f"{where}: {size} is not a positive number of bytes")
            return size
    return DEFAULT_MODEL_SIZE_BYTES


def runtime_settings(runtime: dict[str, Any], config: ServingConfig) -> RuntimeSettings:
    spec = runtime.get("spec") or {}
    adapter = spec.get("builtInAdapter") or {}
    containers = spec.get("containers") or [{}]
    memory = memory_bytes(((containers[0].get("resources") or {}).get("requests") or {}).get("memory", 0),
                          f"ServingRuntime {runtime['metadata']['name']}: spec.containers[0].resources.requests.memory")
    annotations = runtime["metadata"].get("annotations") or {}
    return RuntimeSettings(
        capacity_bytes=max(memory - int(adapter.get("memBufferBytes", 0)), 0),
        load_timeout_ms=int(adapter.get("modelLoadingTimeoutMillis", DEFAULT_LOAD_TIMEOUT_MS)),
        max_loading_concurrency=int(annotations.get("maxLoadingConcurrency", 2)),
        replicas=int(spec["replicas"]) if spec.get("replicas") is not None else config.pods_per_runtime,
        server_type=str(adapter.get("serverType", "")),
        labels=runtime_labels(runtime, config.rest_proxy),
        default_model_size_bytes=default_model_size(runtime))

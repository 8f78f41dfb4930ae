"""What the ModelMesh controller reads: `model-serving-config`, ServingRuntimes, and which runtime serves a model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from mmgitops.quantities import memory_bytes

CONFIGMAP = "model-serving-config"
DEFAULT_APPLICATIONS_NAMESPACE = "redhat-ods-applications"
CHURN_ARG = re.compile(r"-Dtas\.min_churn_age_ms=(\d+)")
DEFAULT_LOAD_TIMEOUT_MS = 90_000


@dataclass(frozen=True)
class ServingConfig:
    """The fields of model-serving-config's config.yaml the stand-in acts on, with ModelMesh's defaults."""

    pods_per_runtime: int = 2
    scale_to_zero: bool = True
    grace_period_s: int = 60
    storage_secret: str = "storage-config"
    jvm_args: str = ""

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
                   jvm_args=env.get("CUSTOM_JVM_ARGS", ""))

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
        server_type=str(adapter.get("serverType", "")))


def model_format(isvc: dict[str, Any]) -> str:
    return str((((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("modelFormat", {})
               .get("name", ""))


def supports(runtime: dict[str, Any], format_name: str, auto_only: bool) -> bool:
    formats = (runtime.get("spec") or {}).get("supportedModelFormats") or []
    return any(f.get("name") == format_name and (f.get("autoSelect", False) or not auto_only) for f in formats)


def choose_runtime(isvc: dict[str, Any], runtimes: dict[str, dict[str, Any]]) -> tuple[str | None, str, str]:
    """(runtime name, failure reason, message): the named runtime if it serves the format, else the first
    auto-selectable one; a reason from the CRD's lastFailureInfo enum when there is none."""
    named = (((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}).get("runtime")
    wanted = model_format(isvc)
    if named:
        if named not in runtimes:
            return None, "RuntimeNotRecognized", f"Waiting for runtime to become available: {named}"
        if not supports(runtimes[named], wanted, auto_only=False):
            return None, "NoSupportingRuntime", f"Specified runtime {named} does not support model format {wanted}"
        return named, "", ""
    for name in sorted(runtimes):
        if supports(runtimes[name], wanted, auto_only=True):
            return name, "", ""
    return None, "NoSupportingRuntime", "No ServingRuntime supports specified model type and/or protocol"

"""The ModelMesh rule on a runtime pod's model cache: its size is the memory request of the serverType container
minus memBufferBytes (or builtInAdapter.env's CONTAINER_MEM_REQ_BYTES minus it), whatever else the pod has."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from mmgitops.errors import Finding, ToolError
from mmgitops.gitops.checks.modelmesh.srspec import (
    adapter,
    adapter_env,
    containers,
    deployed_spec,
    env_index,
    env_values,
    go_int,
    server_container,
    server_type,
)
from mmgitops.gitops.checks.rules import Context, finding, rule
from mmgitops.gitops.checks.schema import field_path
from mmgitops.gitops.objects import K8sObject, dig
from mmgitops.gitops.quantities import quantity
from mmgitops.modelmesh.defaults import UNIT_BYTES

CAPACITY = "mm-runtime-capacity"
Mi, Gi = 2**20, 2**30
# The adapters' defaults (runtime-adapter model-mesh-*-adapter/server/config.go): DEFAULT_MODELSIZE, and
# MODELSIZE_MULTIPLIER, the factor from a model's size on disk to the memory ModelMesh counts for it.
DEFAULT_MODEL_SIZE = 1_000_000
MULTIPLIER, MULTIPLIERS = 1.25, {"torchserve": 2.75}
MODELS_DIR_SCALE = 1.5  # controllers/modelmesh/runtime.go ModelDirScale: the /models emptyDir's sizeLimit factor
MEM_OVERRIDE = "CONTAINER_MEM_REQ_BYTES"


def min_capacity(default_size: int) -> int:
    """ModelMesh.java setupMemory: room for two default-size models, and for ten of them or 512 MiB, whichever is
    smaller; ModelMesh counts in whole 8 KiB units (ModelLoader.toUnits rounds up)."""
    default = -(-default_size // UNIT_BYTES) * UNIT_BYTES
    return max(2 * default, min(512 * Mi, 10 * default))


def _size(n: float) -> str:
    for unit, factor in (("GiB", Gi), ("MiB", Mi), ("KiB", 1024)):
        if abs(n) >= factor:
            return f"{n / factor:.4g} {unit}"
    return f"{n:g} B"


def _bytes(value: Any) -> Fraction | None:
    try:
        return quantity(value, "memory")
    except ToolError:
        return None  # the schema check reports a malformed quantity


def _request(c: dict[str, Any]) -> tuple[int | None, str]:
    """The requests.memory the downward API hands the adapter (divisor 1, rounded up), and which field it comes
    from. The API server defaults each resource's request to its limit when only the limit is set, so a limit alone
    is the request; with neither, the request is 0 (a namespace LimitRange default, which the repository may not
    show, is the only other source)."""
    for key in ("requests", "limits"):
        value = dig(c, "resources", key, "memory")
        if value is not None:
            found = _bytes(value)
            return (math.ceil(found) if found is not None else None), f"resources.{key}.memory"
    return 0, "resources"


def _models_dir_limit(spec: dict[str, Any]) -> int:
    """runtime.go calculateModelDirSize: 1.5 x the sum of the containers' memory limits (0: no sizeLimit)."""
    total = sum((_bytes(dig(c, "resources", "limits", "memory") or 0) or Fraction(0)) for _, c in containers(spec))
    return int(math.ceil(total) * MODELS_DIR_SCALE)


def _gpus(c: dict[str, Any]) -> list[str]:
    names = {str(k) for key in ("requests", "limits") for k in (dig(c, "resources", key) or {})}
    return sorted(n for n in names if "gpu" in n or n.startswith("nvidia.com/mig-"))


def _too_small(obj: K8sObject, field: str, what: str, request: int, capacity: int, default_size: int
               ) -> Iterator[Finding]:
    """ModelMesh.java setupMemory: the adapter's CapacityInBytes (a negative one wraps, and Java reads it back
    negative) must reach the minimum, or mm aborts startup."""
    least, buffer = min_capacity(default_size), request - capacity
    if capacity >= least:
        return
    refuses = ("ModelMesh refuses to start (\"Reported model capacity ... too small\") and the pods never become "
               "Ready")
    if what == "nothing":
        yield finding(obj, field, f"the server container has no memory request or limit, so the adapter reports a "
                      f"capacity of {_size(capacity)} (0 - memBufferBytes): {refuses}; set "
                      "resources.requests.memory (e.g. 4Gi)", CAPACITY)
    else:
        yield finding(obj, field, f"model capacity is {_size(capacity)} ({what} {_size(request)} - memBufferBytes "
                      f"{_size(buffer)}), below ModelMesh's minimum of {_size(least)}: {refuses}; raise {what}",
                      CAPACITY)


def _disk(obj: K8sObject, spec: dict[str, Any], field: str, capacity: int, env: dict[str, str | None]
          ) -> Iterator[Finding]:
    """A full cache is capacity / multiplier bytes of model files in the /models emptyDir (its sizeLimit from
    runtime.go calculateModelDirSize); over it the kubelet evicts the pod."""
    limit = _models_dir_limit(spec)
    try:
        multiplier = float(env.get("MODELSIZE_MULTIPLIER") or MULTIPLIERS.get(server_type(spec), MULTIPLIER))
    except ValueError:
        return  # the adapter-contract rule reports it
    if limit > 0 and multiplier > 0 and capacity / multiplier > limit:
        yield finding(obj, field, f"a full cache of {_size(capacity)} is about {_size(capacity / multiplier)} of "
                      f"model files (/ {multiplier:g}), more than the /models emptyDir's sizeLimit {_size(limit)} "
                      "(1.5 x the containers' memory limits): the kubelet evicts the pod once it fills; raise the "
                      "limits or lower the capacity", CAPACITY, "warning")


@rule(CAPACITY, "a runtime pod's model cache is its server container's memory request minus memBufferBytes",
      source="modelmesh-serving modelmesh/runtime.go addRuntimeToDeployment, calculateModelDirSize; "
             "runtime-adapter server/config.go GetAdapterConfigurationFromEnv; modelmesh ModelMesh.java setupMemory",
      symptom="mm aborts startup (\"Reported model capacity ... too small\"), pods never Ready; or models evicted "
              "and reloaded, GPU out of memory while ModelMesh sees room",
      fix="set the serverType container's requests.memory and memBufferBytes; with a GPU, set "
          "CONTAINER_MEM_REQ_BYTES in builtInAdapter.env to the GPU memory budget")
def capacity(obj: K8sObject, ctx: Context) -> Iterator[Finding]:
    """Mirrors modelmesh-serving controllers/modelmesh/runtime.go addRuntimeToDeployment (CONTAINER_MEM_REQ_BYTES
    from the serverType container's requests.memory, MEM_BUFFER_BYTES) and calculateModelDirSize, the adapters'
    server/config.go GetAdapterConfigurationFromEnv (capacity = the two's difference) and ModelMesh.java
    setupMemory (the minimum capacity)."""
    spec = deployed_spec(obj)
    found = server_container(spec) if spec is not None else None
    if spec is None or found is None:
        return  # no pods, or the adapter-contract rule reports the missing server container
    i, c = found
    settings = adapter(spec) or {}
    env, overrides = adapter_env(obj, spec), env_values(settings.get("env"))
    if MEM_OVERRIDE in overrides:
        request, what = go_int(overrides[MEM_OVERRIDE]), MEM_OVERRIDE
        field = field_path(["spec", "builtInAdapter", "env", env_index(settings.get("env"), MEM_OVERRIDE), "value"])
    else:
        request, where = _request(c)
        what = "nothing" if where == "resources" else "the memory request"
        field = field_path(["spec", "containers", i, *where.split(".")])
    buffer, default_size = go_int(env.get("MEM_BUFFER_BYTES")), go_int(env.get("DEFAULT_MODELSIZE"))
    cache = request - buffer if request is not None and buffer is not None else None  # None: only the pod knows
    if request is not None and cache is not None:
        yield from _too_small(obj, field, what, request, cache, default_size or DEFAULT_MODEL_SIZE)
        yield from _disk(obj, spec, field, cache, env)
    yield from _advice(obj, spec, overrides, cache)


def _advice(obj: K8sObject, spec: dict[str, Any], overrides: dict[str, str | None], cache: int | None
            ) -> Iterator[Finding]:
    """What works, but not as a runtime's author likely expects: no buffer for the server, a GPU nobody counts."""
    if "MEM_BUFFER_BYTES" not in overrides and not (adapter(spec) or {}).get("memBufferBytes"):
        yield finding(obj, "spec.builtInAdapter.memBufferBytes", "memBufferBytes is unset: the controller sends "
                      "MEM_BUFFER_BYTES=0, not the adapter's 256 MiB default, so the whole memory request is model "
                      "cache and nothing is kept for the server itself; set it (e.g. 134217728)", CAPACITY,
                      "warning")
    if MEM_OVERRIDE in overrides:
        return
    fill = _size(cache) if cache is not None else "the memory request minus memBufferBytes"
    for j, c in containers(spec):
        if gpus := _gpus(c):
            yield finding(obj, field_path(["spec", "containers", j, "resources"]), f"{', '.join(gpus)} is requested, "
                          "but ModelMesh sizes the cache by memory only: it loads models until their estimated sizes "
                          f"fill {fill} per pod, whatever the GPU holds; set CONTAINER_MEM_REQ_BYTES in "
                          "builtInAdapter.env to the GPU memory budget", CAPACITY, "warning")

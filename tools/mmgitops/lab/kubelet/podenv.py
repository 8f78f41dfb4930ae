"""A container's environment as the kubelet makes it (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables):
`envFrom` first, then `env` in order, each `value` expanded against the variables set so far
(third_party/forked/golang/expansion), each `valueFrom` resolved from the pod, its resources, or a ConfigMap or
Secret of its namespace. `field_value` and `resource_value` also serve downwardAPI volumes (volumes.py).

Where this differs from the kubelet, it says so rather than guess: `status.hostIP` and `status.podIP` come from
the pod's status (the kubelet asks its node and the pod sandbox) and an empty one is an error, because a process
told an empty address would fail far from the cause; Service links (`FOO_SERVICE_HOST`) come only from the
caller's `service_env`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from mmgitops.gitops.quantities import quantity
from mmgitops.lab.kubelet import KubeletError, Lookup, MissingReference, Obj, context, secret_data

# A limit the container leaves unset is the node's allocatable (kubelet_resources.go
# defaultPodLimitsForDownwardAPI); these are the local cluster's CPU workers' (lab/cluster/nodes.py).
DEFAULT_ALLOCATABLE: Mapping[str, Any] = {"cpu": "16", "memory": "64Gi"}
RESOURCES = ("limits.cpu", "limits.memory", "requests.cpu", "requests.memory")
# Paths the downward API serves by plain lookup (pkg/apis/core/pods ConvertDownwardAPIFieldLabel); the
# status addresses are handled apart, because an empty one is an error here.
_FIELDS: dict[str, Callable[[Obj], Any]] = {
    "metadata.name": lambda pod: (pod.get("metadata") or {}).get("name"),
    "metadata.namespace": lambda pod: (pod.get("metadata") or {}).get("namespace"),
    "metadata.uid": lambda pod: (pod.get("metadata") or {}).get("uid"),
    "spec.nodeName": lambda pod: (pod.get("spec") or {}).get("nodeName"),
    "spec.serviceAccountName": lambda pod: (pod.get("spec") or {}).get("serviceAccountName"),
    "spec.restartPolicy": lambda pod: (pod.get("spec") or {}).get("restartPolicy"),
    "spec.schedulerName": lambda pod: (pod.get("spec") or {}).get("schedulerName"),
    "status.phase": lambda pod: (pod.get("status") or {}).get("phase"),
}
_ADDRESSES = ("status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs")


def resolve(pod: Obj, container: str, objects: Lookup, *, allocatable: Mapping[str, Any] = DEFAULT_ALLOCATABLE,
            service_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of `container`, in the order the pod declares it (envFrom, then env, then Service
    links not set otherwise). Raises MissingReference for a required ConfigMap, Secret or key that does not
    exist, KubeletError for what the kubelet would refuse; each names pod, container and variable."""
    with context(pod, f"container {container}"):
        spec = find_container(pod, container)
    services = dict(service_env or {})
    env: dict[str, str] = {}
    for source in spec.get("envFrom") or []:
        with context(pod, f"container {container}: envFrom"):
            env.update(_env_from(source, objects))
    for var in spec.get("env") or []:
        name = str(var.get("name", ""))
        with context(pod, f"container {container}: env {name}"):
            value = _value(var, pod, container, objects, allocatable, env, services)
        if value is not None:  # None: an optional source that is not there leaves the variable unset
            env[name] = value
    return env | {key: value for key, value in services.items() if key not in env}


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """$(VAR) replaced by lookup(VAR); `$$` is one `$`; an undefined or unterminated reference stays as written
    (expansion.Expand, byte for byte: "$(A$(B))" looks up "A$(B" and keeps the last ")")."""
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            follower, close = text[cursor + 1], text.find(")", cursor + 2)
            if follower == "(" and close != -1:
                name = text[cursor + 2 : close]
                found = lookup(name)
                out.append(f"$({name})" if found is None else found)
                cursor = close
            else:
                # "$$" -> "$"; "$(" without a ")" and "$x" stay as they are.
                out.append("$" if follower == "$" else "$" + follower)
                cursor += 1
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def find_container(pod: Obj, name: str) -> Obj:
    """The named container or init container (resourceFieldRef's containerName may name either)."""
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if container.get("name") == name:
            return container
    raise KubeletError(f"no container {name} in the pod")


def field_value(pod: Obj, path: str) -> str:
    """The downward API's value of a fieldRef path ("metadata.labels['k']", "status.hostIP", ...)."""
    if path in _ADDRESSES:
        return _addresses(pod, path)
    if path in _FIELDS:
        return str(_FIELDS[path](pod) or "")
    for whole in ("metadata.labels", "metadata.annotations"):
        values = (pod.get("metadata") or {}).get(whole.removeprefix("metadata.")) or {}
        if path == whole:
            # fieldpath.FormatMap: sorted key="value" lines (Go's %q, which json.dumps matches for text).
            return "\n".join(f"{key}={json.dumps(values[key], ensure_ascii=False)}" for key in sorted(values))
        if path.startswith(f"{whole}['") and path.endswith("']"):
            return str(values.get(path[len(whole) + 2 : -2], ""))
    raise KubeletError(f"fieldRef {path!r} is not a field the downward API serves")


def resource_value(pod: Obj, container: str, selector: Obj,
                   allocatable: Mapping[str, Any] = DEFAULT_ALLOCATABLE) -> str:
    """A resourceFieldRef's value: the container's quantity over `divisor` (0 or absent: 1), rounded up as
    pkg/api/v1/resource convertResourceCPUToString / convertResourceMemoryToString do; an unset or zero limit
    is the node's allocatable."""
    resource = str(selector.get("resource", ""))
    if resource not in RESOURCES:
        raise KubeletError(f"resourceFieldRef {resource!r} is not one of {', '.join(RESOURCES)}")
    target = str(selector.get("containerName") or container)
    kind, name = resource.split(".")
    value = ((find_container(pod, target).get("resources") or {}).get(kind) or {}).get(name)
    amount = quantity(value, f"container {target} {resource}") if value is not None else Fraction(0)
    if kind == "limits" and amount == 0 and name in allocatable:
        amount = quantity(allocatable[name], f"node allocatable {name}")
    divisor = quantity(selector.get("divisor") or 0, f"resourceFieldRef {resource} divisor") or Fraction(1)
    # CPU counts in millicores, memory in bytes, each rounded up first as Quantity.MilliValue / Value do.
    scale = 1000 if name == "cpu" else 1
    return str(math.ceil(Fraction(math.ceil(amount * scale), math.ceil(divisor * scale))))


def _value(var: Obj, pod: Obj, container: str, objects: Lookup, allocatable: Mapping[str, Any],
           env: Mapping[str, str], services: Mapping[str, str]) -> str | None:
    """One env entry's value; `value` wins over `valueFrom` exactly when it is non-empty, as in the kubelet."""
    value, source = str(var.get("value") or ""), var.get("valueFrom")
    if value or not source:
        return expand(value, lambda name: env.get(name, services.get(name)))
    if "fieldRef" in source:
        return field_value(pod, str(source["fieldRef"].get("fieldPath", "")))
    if "resourceFieldRef" in source:
        return resource_value(pod, container, source["resourceFieldRef"], allocatable)
    if "configMapKeyRef" in source:
        return _key_ref(source["configMapKeyRef"], "ConfigMap", objects.config_map)
    if "secretKeyRef" in source:
        return _key_ref(source["secretKeyRef"], "Secret", objects.secret)
    raise KubeletError(f"valueFrom has none of fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef: "
                       f"{sorted(source)}")


def _key_ref(ref: Obj, kind: str, get: Callable[[str], Obj | None]) -> str | None:
    """One key of a ConfigMap or Secret; None when it or its object is missing and the ref is optional."""
    name, key, optional = str(ref.get("name", "")), str(ref.get("key", "")), bool(ref.get("optional"))
    obj = get(name)
    if obj is None:
        if optional:
            return None
        raise MissingReference(f"{kind} {name} not found")
    data = _env_data(kind, obj)
    if key not in data and not optional:
        raise MissingReference(f"key {key} not found in {kind} {name}")
    return data.get(key)


def _env_from(source: Obj, objects: Lookup) -> dict[str, str]:
    """Every key of one envFrom source, with its prefix; nothing for a missing optional source."""
    if "configMapRef" in source:
        ref, kind, get = source["configMapRef"], "ConfigMap", objects.config_map
    elif "secretRef" in source:
        ref, kind, get = source["secretRef"], "Secret", objects.secret
    else:
        raise KubeletError(f"envFrom entry has neither configMapRef nor secretRef: {sorted(source)}")
    name = str(ref.get("name", ""))
    obj = get(name)
    if obj is None:
        if ref.get("optional"):
            return {}
        raise MissingReference(f"{kind} {name} not found")
    prefix = str(source.get("prefix") or "")
    return {prefix + key: value for key, value in _env_data(kind, obj).items()}


def _env_data(kind: str, obj: Obj) -> dict[str, str]:
    """What env may take from a ConfigMap or Secret: the kubelet reads a ConfigMap's `data` only, never its
    binaryData (kubelet_pods.go); a Secret's bytes are kept as they are, undecodable ones included."""
    if kind == "Secret":
        return {key: value.decode("utf-8", "surrogateescape") for key, value in secret_data(obj).items()}
    return {str(key): str(value) for key, value in (obj.get("data") or {}).items()}


def _addresses(pod: Obj, path: str) -> str:
    """status.podIP(s) / hostIP(s): the first address, or all of them joined by commas."""
    status = pod.get("status") or {}
    single = path.removeprefix("status.").removesuffix("s")
    listed = [str(item.get("ip") or "") for item in status.get(single + "s") or []]
    found = [address for address in listed or [str(status.get(single) or "")] if address]
    if not found:
        raise KubeletError(f"{path} is not set yet (the kubelet knows it once the pod runs; this pod has none)")
    return ",".join(found) if path.endswith("s") else found[0]

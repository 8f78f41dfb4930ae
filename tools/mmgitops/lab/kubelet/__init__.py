"""The kubelet's part for the local cluster's pods: the pod network, the pods whose images run on this machine,
and what their processes see (env, mounted volumes), resolved from the pod spec as the kubelet resolves it."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from mmgitops.errors import ToolError

Obj = Mapping[str, Any]  # an API object as JSON: metadata, spec, status, data ...


class Lookup(Protocol):
    """The ConfigMaps and Secrets of the pod's namespace by name, as the API serves them (JSON field names, a
    Secret's `data` base64), or None where there is none of that name (the kubelet's NotFound)."""

    def config_map(self, name: str) -> Obj | None: ...

    def secret(self, name: str) -> Obj | None: ...


@dataclass(frozen=True)
class Objects:
    """A Lookup over objects already read: a list call's items by name, or a test's dicts."""

    config_maps: Mapping[str, Obj] = field(default_factory=dict)
    secrets: Mapping[str, Obj] = field(default_factory=dict)

    def config_map(self, name: str) -> Obj | None:
        return self.config_maps.get(name)

    def secret(self, name: str) -> Obj | None:
        return self.secrets.get(name)


class KubeletError(ToolError):
    """A pod the kubelet would not start as written (CreateContainerConfigError, FailedMount), in one line that
    names the pod, the container or volume, and the field; never a Secret's value."""


class MissingReference(KubeletError):
    """A ConfigMap, Secret or key the pod needs, without `optional: true`, does not exist."""


def pod_name(pod: Obj) -> str:
    """namespace/name, the way the kubelet's events name a pod."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


@contextmanager
def context(pod: Obj, where: str) -> Iterator[None]:
    """An error inside as one line that starts with the pod and `where` (container and variable, or volume);
    a MissingReference stays one."""
    try:
        yield
    except ToolError as error:
        kind = type(error) if isinstance(error, KubeletError) else KubeletError
        raise kind(f"pod {pod_name(pod)}: {where}: {error}") from None


def config_map_data(obj: Obj) -> dict[str, bytes]:
    """A ConfigMap's keys as bytes: `data` (text) and `binaryData` (base64), as its volume files hold them."""
    out = {key: str(value).encode() for key, value in (obj.get("data") or {}).items()}
    out.update(_decoded(obj, "binaryData", "ConfigMap"))
    return out


def secret_data(obj: Obj) -> dict[str, bytes]:
    """A Secret's keys as bytes, decoded from the API's base64 `data` (`stringData` is write-only and never read)."""
    return _decoded(obj, "data", "Secret")


def _decoded(obj: Obj, field_name: str, kind: str) -> dict[str, bytes]:
    out = {}
    for key, value in (obj.get(field_name) or {}).items():
        try:
            out[key] = base64.b64decode(str(value), validate=True)
        except binascii.Error:
            # The key is named, the value never: it may be a credential.
            name = (obj.get("metadata") or {}).get("name", "")
            raise KubeletError(f"{kind} {name}: {field_name} key {key} is not base64") from None
    return out

"""`validate --cluster`: the context the ModelMesh rules read, taken from a live cluster beside the trees, so that a
team's InferenceServices are checked against the runtimes, `storage-config` and namespaces of the platform they
deploy to. Read-only; it needs, in each namespace the trees' InferenceServices and ServingRuntimes name:
get namespaces, list servingruntimes.serving.kserve.io, get secrets (storage-config), list secrets (the data
connections, by label); and get configmaps (model-serving-config) in the controller's namespace.

No secret value leaves this module: each storage entry and data connection is reduced to its field names and
JSON types (and a storage entry's `type`, which is no secret) before the rules see it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError
from mmgitops.gitops.checks.modelmesh.context import (
    CONFIG_MAP,
    CONTROLLER_NAMESPACE,
    DATA_CONNECTION_LABELS,
    SERVING,
    STORAGE_SECRET,
)
from mmgitops.gitops.objects import K8sObject

RIGHTS = ("get namespaces", "list servingruntimes.serving.kserve.io", "get secrets (storage-config)",
          "list secrets (data connections)", f"get configmaps ({CONFIG_MAP}, in {CONTROLLER_NAMESPACE})")
_BLANK = {str: "", bool: False, int: 0, float: 0, dict: {}, list: [], type(None): None}


def read(api: client.ApiClient, namespaces: Iterable[str]) -> list[K8sObject]:
    """The objects of `namespaces` (and model-serving-config) the ModelMesh rules read, as context only."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    where = f"cluster {api.configuration.host}"
    found = [obj for ns in sorted(set(namespaces) - {""}) for obj in _namespace(core, custom, ns, where)]
    config = _call(core.read_namespaced_config_map, CONFIG_MAP, CONTROLLER_NAMESPACE,
                   what=f"get configmap {CONFIG_MAP} in {CONTROLLER_NAMESPACE}")
    if config is not None:
        found.append(K8sObject({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": CONFIG_MAP, "namespace": CONTROLLER_NAMESPACE}, "data": dict(config.data or {})}, where))
    return found


def _namespace(core: client.CoreV1Api, custom: client.CustomObjectsApi, ns: str, where: str) -> list[K8sObject]:
    namespace = _call(core.read_namespace, ns, what=f"get namespace {ns}")
    if namespace is None:
        return []  # not on the cluster: the rules say what that means
    found = [K8sObject({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": ns, "labels": namespace.metadata.labels or {}}}, where)]
    runtimes = _call(custom.list_namespaced_custom_object, SERVING, "v1alpha1", ns, "servingruntimes",
                     what=f"list servingruntimes in {ns}")
    for item in (runtimes or {}).get("items", []):
        body = {k: item[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in item}
        body["metadata"] = {k: v for k, v in body["metadata"].items()
                            if k in ("name", "namespace", "annotations", "labels")}
        found.append(K8sObject(body, where))
    storage = _call(core.read_namespaced_secret, STORAGE_SECRET, ns, what=f"get secret {STORAGE_SECRET} in {ns}")
    if storage is not None:
        found.append(_secret(storage, where, entries=True))
    selector = ",".join(f"{k}={v}" for k, v in DATA_CONNECTION_LABELS.items())
    connections = _call(core.list_namespaced_secret, ns, label_selector=selector, what=f"list secrets in {ns}")
    return found + [_secret(s, where, entries=False) for s in (connections.items if connections else [])]


def _call(read_it: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    """One read; None when the object does not exist, ToolError when the cluster refuses or cannot be reached."""
    try:
        return read_it(*args, **kwargs)
    except ApiException as error:
        if error.status == 404:
            return None
        if error.status in (401, 403):
            raise ToolError(f"the cluster refused to {what} ({error.status} {error.reason}): validate --cluster "
                            f"needs {', '.join(RIGHTS)}") from None
        raise ToolError(f"the cluster failed to {what}: {error.status} {error.reason}") from None
    except urllib3.exceptions.HTTPError as error:
        raise ToolError(f"cannot reach the cluster to {what}: {str(error).splitlines()[0][:200]}") from None


def _secret(secret: Any, where: str, entries: bool) -> K8sObject:
    """The Secret with every value blanked: a storage entry keeps its JSON shape and `type`, a data connection
    its key names."""
    data = {key: base64.b64encode(_blank(value, entries).encode()).decode()
            for key, value in (secret.data or {}).items()}
    meta = secret.metadata
    return K8sObject({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": meta.name, "namespace": meta.namespace, "labels": meta.labels or {},
        "annotations": meta.annotations or {}}, "data": data}, where)


def _blank(value: str | None, entry: bool) -> str:
    if not entry:
        return ""
    try:
        doc = json.loads(base64.b64decode(value or "", validate=False))
    except (binascii.Error, ValueError):
        return "not JSON"  # what the rules need to know of it
    if not isinstance(doc, dict):
        return json.dumps(_BLANK.get(type(doc)))
    return json.dumps({k: (v if k == "type" and isinstance(v, str) else _BLANK.get(type(v))) for k, v in doc.items()})

"""What the ModelMesh rules know beyond the object they check, per namespace: the ServingRuntimes, the
`storage-config` entries (their key names, storage type and field names: never a value), the data connections
and the namespace's labels; and cluster-wide, the ClusterServingRuntimes and `model-serving-config`.

Filled from every object rendered anywhere in the validated trees, as the controller sees a namespace: what one
kustomization defines and another uses still meets. Where a tree does not define something (a runtime made in the
dashboard), a rule says "not defined in this repository" instead of guessing.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from mmgitops.gitops.objects import K8sObject, dig

SERVING = "serving.kserve.io"
STORAGE_SECRET = "storage-config"  # model-serving-config storageSecretName's default (MS pkg/config/config.go)
CONFIG_MAP = "model-serving-config"
# RHOAI runs the controller there: it holds model-serving-config, and the controller serves it without the label.
CONTROLLER_NAMESPACE = "redhat-ods-applications"
# MS pkg/config/config.go defaults: builtInServerTypes, restProxy.enabled, allowAnyPVC.
BUILT_IN_SERVER_TYPES = ("mlserver", "triton", "ovms", "torchserve")
DATA_CONNECTION_LABELS = {"opendatahub.io/managed": "true", "opendatahub.io/dashboard": "true"}


@dataclass(frozen=True)
class StorageEntry:
    """One `storage-config` key: its JSON fields' names and types, and the storage `type`, which is no secret.
    `shape` says why the value is not a flat JSON object of strings ('' when it is)."""

    key: str
    type: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # field name -> JSON type name
    shape: str = ""


@dataclass(frozen=True)
class MeshConfig:
    """What the rules read of `model-serving-config`'s config.yaml, with the controller's defaults."""

    rest_proxy: bool = True
    built_in_server_types: tuple[str, ...] = BUILT_IN_SERVER_TYPES
    allow_any_pvc: bool = False
    storage_secret: str = STORAGE_SECRET


@dataclass
class NamespaceView:
    labels: dict[str, str] | None = None  # None: no Namespace object for it in the trees
    runtimes: dict[str, list[K8sObject]] = field(default_factory=dict)  # every rendered variant by name
    storage: dict[str, StorageEntry] | None = None  # None: no storage-config Secret for it in the trees
    data_connections: list[K8sObject] = field(default_factory=list)


@dataclass
class MeshContext:
    namespaces: dict[str, NamespaceView] = field(default_factory=dict)
    cluster_runtimes: dict[str, list[K8sObject]] = field(default_factory=dict)
    configs: list[MeshConfig] = field(default_factory=list)  # one per rendered variant; empty: defaults
    source: str = "this repository"  # where the context was read, for "not defined in ..." (validate --cluster)

    def namespace(self, name: str) -> NamespaceView:
        return self.namespaces.get(name) or NamespaceView()

    def config(self) -> MeshConfig:
        return self.configs[0] if self.configs else MeshConfig()

    @classmethod
    def from_objects(cls, objects: Iterable[K8sObject]) -> MeshContext:
        ctx = cls()
        for obj in objects:
            ctx.add(obj)
        return ctx

    def add(self, obj: K8sObject) -> None:
        if obj.kind == "Namespace" and obj.group == "":
            self._view(obj.name).labels = obj.labels
        elif obj.kind == "ServingRuntime" and obj.group == SERVING:
            _add_variant(self._view(obj.namespace).runtimes, obj)
        elif obj.kind == "ClusterServingRuntime" and obj.group == SERVING:
            _add_variant(self.cluster_runtimes, obj)
        elif obj.kind == "Secret" and obj.group == "":
            self._add_secret(obj)
        elif obj.kind == "ConfigMap" and obj.group == "" and obj.name == CONFIG_MAP:
            config = mesh_config(obj)
            if config not in self.configs:
                self.configs.append(config)

    def _add_secret(self, obj: K8sObject) -> None:
        if all(obj.labels.get(k) == v for k, v in DATA_CONNECTION_LABELS.items()):
            self._view(obj.namespace).data_connections.append(obj)
        if obj.name == self.config().storage_secret:
            view = self._view(obj.namespace)
            view.storage = {**(view.storage or {}), **storage_entries(obj)}

    def _view(self, namespace: str) -> NamespaceView:
        return self.namespaces.setdefault(namespace, NamespaceView())


def _add_variant(table: dict[str, list[K8sObject]], obj: K8sObject) -> None:
    variants = table.setdefault(obj.name, [])
    if all(v.body != obj.body for v in variants):
        variants.append(obj)


def secret_values(obj: K8sObject) -> dict[str, str]:
    """A Secret's values as text, from `data` (base64) and `stringData`; undecodable values become ''. Line breaks
    in base64 are skipped, as the API server's decoder skips them: kustomize wraps long generated values."""
    values: dict[str, str] = {}
    for key, value in (dig(obj.body, "data") or {}).items():
        try:
            values[str(key)] = base64.b64decode("".join(str(value).split()), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            values[str(key)] = ""
    for key, value in (dig(obj.body, "stringData") or {}).items():
        values[str(key)] = str(value)
    return values


def storage_entries(obj: K8sObject) -> dict[str, StorageEntry]:
    """The entries of a `storage-config` Secret, as the puller and the controller parse them: each key's value a
    JSON object (puller/config.go GetStorageConfiguration; servingruntime_controller.go getPVCs reads it as
    map[string]string)."""
    entries = {}
    for key, text in secret_values(obj).items():
        try:
            doc = json.loads(text)
        except ValueError:
            entries[key] = StorageEntry(key, shape="is not JSON")
            continue
        if not isinstance(doc, dict):
            entries[key] = StorageEntry(key, shape=f"is a JSON {_json_type(doc)}, not an object")
            continue
        fields = {str(k): _json_type(v) for k, v in doc.items()}
        odd = sorted(k for k, t in fields.items() if t != "string")
        shape = f"field(s) {', '.join(odd)} are not strings" if odd else ""
        kind = doc.get("type")
        entries[key] = StorageEntry(key, kind if isinstance(kind, str) else "", fields, shape)
    return entries


def _json_type(value: Any) -> str:
    for kind, name in ((bool, "boolean"), (str, "string"), (int, "number"), (float, "number"), (dict, "object"),
                       (list, "array")):
        if isinstance(value, kind):
            return name
    return "null"


def mesh_config(obj: K8sObject) -> MeshConfig:
    """config.yaml of a `model-serving-config` ConfigMap over the controller's defaults; unreadable: defaults
    (the schema and the controller itself report a broken file)."""
    try:
        doc = yaml.safe_load(str(dig(obj.body, "data", "config.yaml") or "")) or {}
    except yaml.YAMLError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    types = doc.get("builtInServerTypes")
    return MeshConfig(
        rest_proxy=dig(doc, "restProxy", "enabled") is not False,
        built_in_server_types=tuple(map(str, types)) if isinstance(types, list) else BUILT_IN_SERVER_TYPES,
        allow_any_pvc=doc.get("allowAnyPVC") is True,
        storage_secret=str(doc.get("storageSecretName") or STORAGE_SECRET))

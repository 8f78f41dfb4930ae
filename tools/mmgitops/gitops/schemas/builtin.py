"""Strict JSON schemas of built-in kinds, from the kubernetes-validate package's data."""

from __future__ import annotations

import json
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from mmgitops.errors import ToolError

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

# Cluster-scoped built-in kinds; every other built-in kind is namespaced.
CLUSTER_SCOPED = frozenset({
    "APIService", "CertificateSigningRequest", "ClusterRole", "ClusterRoleBinding",
    "ClusterTrustBundle", "ComponentStatus", "CSIDriver", "CSINode", "CustomResourceDefinition",
    "DeviceClass", "FlowSchema", "IngressClass", "IPAddress", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "MutatingWebhookConfiguration", "Namespace", "Node",
    "PersistentVolume", "PriorityClass", "PriorityLevelConfiguration", "ResourceSlice",
    "RuntimeClass", "ServiceCIDR", "StorageClass", "StorageVersionMigration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration", "VolumeAttachment", "VolumeAttributesClass",
})


class BuiltinSchemas:
    def __init__(self, kubernetes_version: str) -> None:
        root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
        self.dir = Path(str(root)) / f"v{kubernetes_version}.0-local-strict"
        if not self.dir.is_dir():
            raise ToolError(
                f"kubernetes-validate has no schemas for Kubernetes {kubernetes_version}: "
                "run `make setup` (pins kubernetes-validate==1.37.0)"
            )
        self._validators: dict[str, Draft202012Validator | None] = {}

    @cached_property
    def definitions(self) -> dict[str, Any]:
        return json.loads((self.dir / "_definitions.json").read_text(encoding="utf-8"))

    @cached_property
    def registry(self) -> Registry:
        defs = self.definitions
        return Registry().with_resource(defs["$id"], Resource.from_contents(defs))

    def object_meta_ref(self) -> dict[str, str]:
        return {"$ref": f"{self.definitions['$id']}#/$defs/{OBJECT_META}"}

    @staticmethod
    def file_name(group: str, version: str, kind: str) -> str:
        prefix = group.split(".")[0]
        return f"{kind.lower()}-{prefix}-{version}.json" if group else f"{kind.lower()}-{version}.json"

    def validator(self, group: str, version: str, kind: str) -> Draft202012Validator | None:
        name = self.file_name(group, version, kind)
        if name not in self._validators:
            path = self.dir / name
            if not path.is_file() or not kind:
                self._validators[name] = None
            else:
                schema = json.loads(path.read_text(encoding="utf-8"))
                self._validators[name] = Draft202012Validator(schema, registry=self.registry)
        return self._validators[name]

    def versions_of(self, group: str, kind: str) -> list[str]:
        pattern = self.file_name(group, "*", kind)
        return sorted(p.stem.rsplit("-", 1)[-1] for p in self.dir.glob(pattern))

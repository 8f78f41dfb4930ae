"""A rendered Kubernetes object together with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
HOOK_ANNOTATION = "argocd.argoproj.io/hook"
SYNC_OPTIONS_ANNOTATION = "argocd.argoproj.io/sync-options"


@dataclass
class K8sObject:
    body: dict[str, Any]
    file: str  # where a person would go to fix it
    render_root: str = ""  # the kustomization (or file) that produced it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        value = self.body.get("apiVersion")
        return value if isinstance(value, str) else ""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def kind(self) -> str:
        value = self.body.get("kind")
        return value if isinstance(value, str) else ""

    @property
    def metadata(self) -> dict[str, Any]:
        return _mapping(self.body.get("metadata"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "")

    @property
    def annotations(self) -> dict[str, str]:
        return _mapping(self.metadata.get("annotations"))

    @property
    def labels(self) -> dict[str, str]:
        return _mapping(self.metadata.get("labels"))

    @property
    def ref(self) -> str:
        return f"{self.kind or '?'}/{self.name or '?'}"

    def identity(self) -> tuple[str, str, str, str]:
        return (self.group, self.kind, self.namespace, self.name)


def dig(body: Any, *path: str) -> Any:
    """Follow a path of mapping keys; None where any step is missing."""
    for key in path:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _mapping(value: Any) -> dict[str, Any]:
    """A field a manifest should hold a mapping in, or {} when it holds anything else: the checks report that."""
    return value if isinstance(value, dict) else {}

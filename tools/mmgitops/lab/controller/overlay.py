"""ModelMesh installed as the RHOAI operator installs it: modelmesh-serving's `config/overlays/odh`, rendered from
the pinned source tree with kustomize, put into the DSCI's applications namespace, and created in the cluster.

The operator (opendatahub-operator, component modelmeshserving) deploys this overlay when the DataScienceCluster
says `modelmeshserving: Managed`; what the local cluster cannot take as it is, `adapt` changes, each change with
its reason (docs/fidelity.md, "The real controller").
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

from mmgitops.errors import ToolError
from mmgitops.gitops.render import find_kubectl
from mmgitops.gitops.yamlio import load_all

OVERLAY = Path("config") / "overlays" / "odh"
OVERLAY_NAMESPACE = "opendatahub"  # what the overlay's kustomization names; the operator replaces it
CONTROLLER = "modelmesh-controller"
ETCD = "etcd"
# Kinds the local cluster does not serve (no Prometheus operator): the operator's apply would need their CRDs.
UNSERVED_KINDS = ("ServiceMonitor",)
# kube-apiserver cannot reach a webhook behind a pod IP here, and the overlay's failurePolicy is Fail: with it
# registered, every ServingRuntime write would be refused.
UNREACHABLE_KINDS = ("ValidatingWebhookConfiguration",)


def render(tree: Path) -> list[dict[str, Any]]:
    """The overlay's objects as kustomize builds them from the source tree."""
    directory = tree / OVERLAY
    if not (directory / "kustomization.yaml").is_file():
        raise ToolError(f"{directory}: no kustomization.yaml (is {tree} a modelmesh-serving source tree?)")
    proc = subprocess.run([*find_kubectl(), str(directory)], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"kustomize build {directory} failed: {last}")
    return [doc for doc in load_all(proc.stdout) if isinstance(doc, dict)]


def adapt(objects: list[dict[str, Any]], namespace: str, existing_crds: set[str]) -> list[dict[str, Any]]:
    """What the operator applies, as the local cluster can take it:
    - every namespaced object (and every subject and webhook reference) moved to the applications namespace, as
      the operator's deploy step does;
    - CRDs the cluster already serves are kept as they are (the pinned kserve v0.15.2 CRDs, which
      `mmgitops validate` checks against); those it lacks (`predictors`) are created;
    - one controller replica, not three: leader election lets one reconcile anyway, and three processes would
      share one network namespace here;
    - no ServiceMonitor and no ValidatingWebhookConfiguration (see UNSERVED_KINDS, UNREACHABLE_KINDS)."""
    out = []
    for original in objects:
        obj = copy.deepcopy(original)
        kind, meta = obj.get("kind"), obj.setdefault("metadata", {})
        if kind in UNSERVED_KINDS or kind in UNREACHABLE_KINDS:
            continue
        if kind == "CustomResourceDefinition" and meta.get("name") in existing_crds:
            continue
        if meta.get("namespace") == OVERLAY_NAMESPACE:
            meta["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            if subject.get("namespace") == OVERLAY_NAMESPACE:
                subject["namespace"] = namespace
        if kind == "Deployment" and meta.get("name") == CONTROLLER:
            obj["spec"]["replicas"] = 1
        out.append(obj)
    return out


_rendered: list[dict[str, Any]] | None = None
_installed: set[str] = set()  # applications namespaces done: the stand-in runs every second


def install(api: Any, namespace: str) -> None:
    """Create what the operator deploys into `namespace` and the cluster, leaving objects that exist as they are
    (the operator reconciles them; here nothing else writes them), once per namespace and process."""
    global _rendered
    if namespace in _installed:
        return
    from kubernetes import client

    from mmgitops.lab.cluster.bootstrap import create_missing
    from mmgitops.lab.controller import build

    if _rendered is None:
        _rendered = render(build.planned().tree)
    crds = {c.metadata.name for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items}
    create_missing(api, adapt(_rendered, namespace, crds))
    _installed.add(namespace)

"""What an Argo CD instance needs in its namespace before its processes start, as OpenShift GitOps creates it
for the default instance: the namespace, the controller's ServiceAccount and RBAC, argocd-cm, argocd-rbac-cm and
argocd-secret. The health checks in argocd-cm are written later, by the GitOps operator's stand-in, from the
ArgoCD custom resource this repository applies (lab/standins/gitops.py)."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from kubernetes import client

from mmgitops.lab.cluster import bootstrap, identity

NAMESPACE = "openshift-gitops"
CONTROLLER_SA = "openshift-gitops-argocd-application-controller"
PART_OF = {"app.kubernetes.io/part-of": "argocd"}


def _meta(name: str, namespace: str | None = NAMESPACE, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**PART_OF, **(labels or {})}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def manifests() -> list[dict[str, Any]]:
    # OpenShift GitOps gives the default instance's controller cluster-wide rights; this repository's apps
    # install operators and cluster-scoped instances, so it needs them (docs/argocd.md).
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(CONTROLLER_SA)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(f"{CONTROLLER_SA}-cluster-admin", None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_SA, "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("argocd-cm"), "data": {}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("argocd-rbac-cm"), "data": {}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta("argocd-secret"), "type": "Opaque",
         # Argo CD's settings refuse to load without a server signature key; a fresh random one per instance.
         "data": {"server.secretkey": base64.b64encode(secrets.token_bytes(32)).decode()}},
    ]


def create(api: client.ApiClient) -> None:
    """Create what is missing; what exists is left as it is (a second `up` keeps the first one's key)."""
    bootstrap.create_missing(api, manifests())


def token(api: client.ApiClient, seconds: int = 7 * 86400) -> str:
    """A bound token of the controller's ServiceAccount: it acts with that account's rights. The API server may
    shorten its life; an instance that outlives it needs `down` and `up`."""
    return identity.token(api, NAMESPACE, CONTROLLER_SA, seconds)

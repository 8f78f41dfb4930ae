"""OpenShift GitOps operator stand-in: what the ArgoCD custom resource says, written into its instance's argocd-cm.

Only the part this repository sets (argocd/instance), as argocd-operator's reconcileArgoConfigMap writes it
(controllers/argocd/configmap.go, pinned module): each `spec.resourceHealthChecks` entry becomes the key
`resource.customizations.health.<group>_<kind>` (no `<group>_` for the core group), `spec.resourceExclusions` becomes
`resource.exclusions`, and `spec.resourceTrackingMethod` becomes `application.resourceTrackingMethod` (`label` when
unset, as the operator defaults). The rest of the instance (its processes, argocd-secret) is `mmgitops local argocd
up`'s; a namespace without an argocd-cm has no instance yet, and nothing is written there.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client.rest import ApiException

from mmgitops.lab.standins.kube import Kube

GROUP, VERSION, PLURAL = "argoproj.io", "v1beta1", "argocds"
HEALTH_PREFIX = "resource.customizations.health."
# The keys this stand-in owns in argocd-cm: a health check removed from the CR is removed from argocd-cm.
OWNED = "mmgitops.local/gitops-operator-keys"


def argocd_cm_data(spec: dict[str, Any]) -> dict[str, str]:
    data: dict[str, str] = {}
    for check in spec.get("resourceHealthChecks") or []:
        group = check.get("group") or ""
        data[f"{HEALTH_PREFIX}{group + '_' if group else ''}{check.get('kind', '')}"] = str(check.get("check") or "")
    data["resource.exclusions"] = str(spec.get("resourceExclusions") or "")
    data["application.resourceTrackingMethod"] = str(spec.get("resourceTrackingMethod") or "label")
    return data


def reconcile(kube: Kube) -> None:
    for cr in kube.list(GROUP, VERSION, PLURAL):
        namespace = cr["metadata"]["namespace"]
        try:
            cm = kube.core.read_namespaced_config_map("argocd-cm", namespace)
        except ApiException as exc:
            if exc.status == 404:
                continue
            raise
        want = argocd_cm_data(cr.get("spec") or {})
        have = cm.data or {}
        owned_before = set(((cm.metadata.annotations or {}).get(OWNED) or "").split(",")) - {""}
        stale = {key: None for key in owned_before - set(want)}
        owned = ",".join(sorted(want))
        if all(have.get(k) == v for k, v in want.items()) and not stale and owned_before == set(want):
            continue
        kube.core.patch_namespaced_config_map("argocd-cm", namespace, {
            "metadata": {"annotations": {OWNED: owned}}, "data": {**stale, **want}})

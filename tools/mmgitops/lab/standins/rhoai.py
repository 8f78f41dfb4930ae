"""RHOAI operator stand-in: DSCI and DSC status, and ModelMesh as the operator installs it when the DSC says
`modelmeshserving: Managed`: modelmesh-serving's ODH overlay (lab/controller/overlay.py)."""

from __future__ import annotations

from typing import Any

from kubernetes.client.rest import ApiException

from mmgitops.lab.controller import overlay
from mmgitops.lab.standins.kube import Kube, condition

CONTROLLER = "modelmesh-controller"
# Test-only: a DSC annotated with one of these is held in that state, as an operator stuck or failing would leave
# it (the conditions the RHOAI operator sets in each case), so tests can watch Argo CD's health follow.
FAULT_ANNOTATION = "lab.mmgitops.local/fault"
FAULTS = {
    "not-ready": {"phase": "Not Ready", "conditions": [
        condition("Ready", False, "NotReady"),
        condition("ModelMeshServingReady", False, "NotReady", "held not ready by a lab fault")]},
    "degraded": {"phase": "Error", "conditions": [
        condition("Ready", False, "Error"),
        condition("Degraded", True, "Error", "held degraded by a lab fault")]},
}


def reconcile(kube: Kube) -> None:
    dscis = kube.list("dscinitialization.opendatahub.io", "v1", "dscinitializations")
    ready_dsci = None
    for dsci in dscis:
        spec = dsci.get("spec") or {}
        apps = spec.get("applicationsNamespace") or "redhat-ods-applications"
        kube.ensure_namespace(apps)
        monitoring = (spec.get("monitoring") or {})
        if monitoring.get("managementState") == "Managed":
            kube.ensure_namespace(monitoring.get("namespace") or "redhat-ods-monitoring")
        if (dsci.get("status") or {}).get("phase") != "Ready":
            kube.patch_status(dsci, "dscinitializations", {
                "phase": "Ready",
                "conditions": [condition("Available", True, "ReconcileCompleted", "Reconcile completed successfully"),
                               condition("ReconcileComplete", True, "ReconcileCompleted")],
            })
        ready_dsci = apps
    for dsc in kube.list("datasciencecluster.opendatahub.io", "v1", "datascienceclusters"):
        _reconcile_dsc(kube, dsc, ready_dsci)


def _reconcile_dsc(kube: Kube, dsc: dict[str, Any], apps_namespace: str | None) -> None:
    components = (dsc.get("spec") or {}).get("components") or {}
    managed = {k: (v or {}).get("managementState") == "Managed" for k, v in components.items()}
    fault = ((dsc.get("metadata") or {}).get("annotations") or {}).get(FAULT_ANNOTATION)
    if fault in FAULTS:
        status = FAULTS[fault]
        if not _same(dsc.get("status") or {}, status["phase"], status["conditions"]):
            kube.patch_status(dsc, "datascienceclusters", status)
        return
    if apps_namespace is None:
        status = {"phase": "Not Ready",
                  "conditions": [condition("Ready", False, "Error", "DSCInitialization not ready")]}
        kube.patch_status(dsc, "datascienceclusters", status)
        return
    conditions = []
    ready = True
    if managed.get("modelmeshserving"):
        overlay.install(kube.core.api_client, apps_namespace)
        available = _available(kube, apps_namespace)
        ready = ready and available
        conditions.append(condition("ModelMeshServingReady", available, "Ready" if available else "NotReady",
                                    "" if available else f"deployment {CONTROLLER} not ready"))
    else:
        conditions.append(condition("ModelMeshServingReady", False, "Removed",
                                    "Component ManagementState is set to Removed"))
    conditions.insert(0, condition("Ready", ready, "Ready" if ready else "NotReady"))
    if _same(dsc.get("status") or {}, "Ready" if ready else "Not Ready", conditions):
        return  # keep lastTransitionTime and resourceVersion stable, as the operator does
    kube.patch_status(dsc, "datascienceclusters", {
        "phase": "Ready" if ready else "Not Ready",
        "conditions": conditions,
        "installedComponents": {k: v for k, v in managed.items()},
    })


def _available(kube: Kube, namespace: str) -> bool:
    try:
        current = kube.apps.read_namespaced_deployment(CONTROLLER, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return bool(current.status and (current.status.available_replicas or 0) >= 1)


def _same(status: dict[str, Any], phase: str, conditions: list[dict[str, Any]]) -> bool:
    have = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return status.get("phase") == phase and all(have.get(c["type"]) == c["status"] for c in conditions)

"""OLM stand-in: a Subscription gets a Succeeded CSV and `status.state: AtLatestKnown`."""

from __future__ import annotations

from typing import Any

from kubernetes.client.rest import ApiException

from mmgitops.lab.standins.kube import Kube, now

GROUP = "operators.coreos.com"

# A plausible CSV name per package, as the catalog's head of each pinned channel would give.
CSV_VERSIONS = {"rhods-operator": "2.25.0", "nfd": "4.18.0", "gpu-operator-certified": "25.10.0"}


def csv_name(package: str) -> str:
    return f"{package}.v{CSV_VERSIONS.get(package, '0.0.1')}"


def reconcile(kube: Kube) -> None:
    for sub in kube.list(GROUP, "v1alpha1", "subscriptions"):
        status = sub.get("status") or {}
        if status.get("state") == "AtLatestKnown":
            continue
        namespace = sub["metadata"]["namespace"]
        if not _has_operator_group(kube, namespace):
            continue  # real OLM installs nothing without one either
        package = (sub.get("spec") or {}).get("name", sub["metadata"]["name"])
        name = csv_name(package)
        _ensure_csv(kube, namespace, name, package)
        kube.patch_status(sub, "subscriptions", {
            "state": "AtLatestKnown", "currentCSV": name, "installedCSV": name, "lastUpdated": now(),
            "conditions": [{"type": "CatalogSourcesUnhealthy", "status": "False", "reason": "AllCatalogSourcesHealthy",
                            "message": "all available catalogsources are healthy", "lastTransitionTime": now()}],
        })


def _has_operator_group(kube: Kube, namespace: str) -> bool:
    groups = kube.custom.list_namespaced_custom_object(GROUP, "v1", namespace, "operatorgroups")["items"]
    return bool(groups)


def _ensure_csv(kube: Kube, namespace: str, name: str, package: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "ClusterServiceVersion",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"displayName": package, "install": {"strategy": "deployment", "spec": {"deployments": []}}},
    }
    try:
        kube.custom.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, "clusterserviceversions", body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    csv = kube.custom.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, "clusterserviceversions", name)
    kube.patch_status(csv, "clusterserviceversions", {
        "phase": "Succeeded", "reason": "InstallSucceeded", "message": "install strategy completed with no errors",
        "lastUpdateTime": now(), "lastTransitionTime": now(),
    })

"""GPU operator and NFD stand-ins: status from what the simulated nodes really carry."""

from __future__ import annotations

from mmgitops.lab.standins.kube import Kube, condition

NVIDIA_PCI_LABEL = "feature.node.kubernetes.io/pci-10de.present"


def reconcile(kube: Kube) -> None:
    nodes = kube.core.list_node().items
    labelled = [n for n in nodes if (n.metadata.labels or {}).get(NVIDIA_PCI_LABEL) == "true"]
    for nfd in kube.list("nfd.openshift.io", "v1", "nodefeaturediscoveries"):
        conditions = (nfd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions):
            kube.patch_status(nfd, "nodefeaturediscoveries", {"conditions": [
                condition("Available", True, "Available", f"{len(nodes)} nodes labelled"),
                condition("Progressing", False, "Available"),
                condition("Degraded", False, "Available"),
            ]})
    gpu_nodes = [n for n in labelled if "nvidia.com/gpu" in (n.status.capacity or {})]
    for policy in kube.list("nvidia.com", "v1", "clusterpolicies"):
        state = "ready" if gpu_nodes else "notReady"
        if (policy.get("status") or {}).get("state") != state:
            kube.patch_status(policy, "clusterpolicies", {"state": state, "namespace": "nvidia-gpu-operator"})

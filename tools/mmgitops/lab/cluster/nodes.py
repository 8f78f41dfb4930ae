"""The simulated nodes of the local cluster: a small OpenShift cluster with CPU and GPU workers."""

from __future__ import annotations

from typing import Any

GPU_PRODUCT = "NVIDIA-A100-SXM4-40GB"
GPUS_PER_NODE = 4


def node(name: str, cpu: str, memory: str, gpus: int = 0, address: str = "") -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/worker": "",
        "type": "kwok",
    }
    capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
    # No kwok taint: modelmesh-serving's runtime Deployments tolerate only the runtime's own tolerations, and no
    # real node exists here for the taint to keep pods off.
    taints = []
    if gpus:
        # What NFD (PCI vendor 10de) and the GPU operator's feature discovery put on such a node.
        labels.update({
            "feature.node.kubernetes.io/pci-10de.present": "true",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": GPU_PRODUCT,
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.memory": "40960",
        })
        capacity["nvidia.com/gpu"] = str(gpus)
        taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "spec": {"taints": taints},
        # An InternalIP, as every kubelet reports one: kwok gives it to the node's pods as status.hostIP, which
        # modelmesh-serving's runtime pods read (MM_LOCATION); nothing listens there.
        "status": {"capacity": capacity, "allocatable": dict(capacity),
                   **({"addresses": [{"type": "InternalIP", "address": address}]} if address else {}),
                   "nodeInfo": {"kubeletVersion": "fake", "operatingSystem": "linux", "architecture": "amd64"}},
    }


def cluster_nodes() -> list[dict[str, Any]]:
    # The machine network, apart from the pod and Service ranges (lab/kubelet/network.py).
    return [
        node("cpu-worker-0", "16", "64Gi", address="10.1.0.10"),
        node("cpu-worker-1", "16", "64Gi", address="10.1.0.11"),
        node("gpu-worker-0", "32", "256Gi", GPUS_PER_NODE, address="10.1.0.20"),
        node("gpu-worker-1", "32", "256Gi", GPUS_PER_NODE, address="10.1.0.21"),
    ]

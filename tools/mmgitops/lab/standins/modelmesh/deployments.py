"""The runtime Deployments and the `modelmesh-serving` Service the controller keeps in a model namespace.

kwok's scheduler and kubelet stand-in place and "run" the pods; what matters here is what a user inspects:
the Deployment name, the pod labels, the four containers and the runtime's resources (GPU included).
"""

from __future__ import annotations

import copy
from typing import Any

from mmgitops.lab.standins.modelmesh.config import SERVICE
from mmgitops.modelmesh.defaults import GRPC_PORT, METRICS_PORT, REST_PORT

POD_LABEL = "modelmesh-service"
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
MM_RESOURCES = {"requests": {"cpu": "300m", "memory": "448Mi"}, "limits": {"cpu": "3", "memory": "448Mi"}}
PORTS = {"grpc": GRPC_PORT, "http": REST_PORT, "prometheus": METRICS_PORT}


def deployment_name(runtime: str) -> str:
    return f"{SERVICE}-{runtime}"


def deployment(namespace: str, runtime: dict[str, Any], replicas: int, server_type: str) -> dict[str, Any]:
    name = runtime["metadata"]["name"]
    spec = runtime.get("spec") or {}
    labels = {POD_LABEL: SERVICE, "name": deployment_name(name), "modelmesh-service-runtime": name}
    containers = [
        {"name": "mm", "image": "quay.io/opendatahub/modelmesh:stable", "resources": MM_RESOURCES,
         "ports": [{"name": "grpc", "containerPort": PORTS["grpc"]},
                   {"name": "prometheus", "containerPort": PORTS["prometheus"]}]},
        {"name": "rest-proxy", "image": "quay.io/opendatahub/rest-proxy:stable",
         "ports": [{"name": "http", "containerPort": PORTS["http"]}]},
        *[{k: copy.deepcopy(v) for k, v in c.items() if k in ("name", "image", "command", "args", "env", "resources")}
          for c in spec.get("containers") or []],
        {"name": f"{server_type}-adapter", "image": "quay.io/opendatahub/modelmesh-runtime-adapter:stable"},
    ]
    pod_spec: dict[str, Any] = {"containers": containers,
                                "tolerations": [*(spec.get("tolerations") or []), KWOK_TOLERATION]}
    if spec.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(spec["nodeSelector"])
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": deployment_name(name), "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}


def service(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": namespace, "labels": {POD_LABEL: SERVICE}},
            "spec": {"selector": {POD_LABEL: SERVICE},
                     "ports": [{"name": n, "port": p, "targetPort": p} for n, p in PORTS.items()]}}

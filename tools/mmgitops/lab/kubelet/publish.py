"""How a backed pod is reached from this machine: kwok's PortForward (what `kubectl port-forward` and the suite's
default resolver go through, via the real API server) and the pod's `mmgitops.io/*` annotations (the suite's
annotation resolver, and which engine plays the pod)."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.rest import ApiException

ENDPOINTS_ANNOTATION = "mmgitops.io/endpoints"  # read by the conformance suite's annotation resolver
ENGINE_ANNOTATION = "mmgitops.io/mesh-engine"  # which local-mesh engine backs the pod: embedded | reference
COMMIT_ANNOTATION = "mmgitops.io/reference-commit"  # reference engine: the ModelMesh source commit it runs
PORT_FORWARD = ("kwok.x-k8s.io", "v1alpha1", "portforwards")


def port_forward(pod_name: str, namespace: str, uid: str, endpoints: dict[str, str]) -> dict[str, Any]:
    """kwok's PortForward for a pod: every pod port of `endpoints` (8033, 8008, 2112, 8089) to its loopback
    address. Owned by the pod, so it goes with it."""
    def target(address: str) -> dict[str, Any]:
        host, _, port = address.rpartition(":")
        return {"address": host, "port": int(port)}
    return {"apiVersion": f"{PORT_FORWARD[0]}/{PORT_FORWARD[1]}", "kind": "PortForward",
            "metadata": {"name": pod_name, "namespace": namespace,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": uid}]},
            "spec": {"forwards": [{"ports": [int(port)], "target": target(address)}
                                  for port, address in sorted(endpoints.items())]}}


def ensure_port_forward(custom: Any, name: str, namespace: str, uid: str, endpoints: dict[str, str]) -> None:
    body = port_forward(name, namespace, uid, endpoints)
    try:
        custom.create_namespaced_custom_object(*PORT_FORWARD[:2], namespace, PORT_FORWARD[2], body)
    except ApiException as error:
        if error.status == 409:
            custom.patch_namespaced_custom_object(*PORT_FORWARD[:2], namespace, PORT_FORWARD[2], name,
                                                  {"spec": body["spec"]})
        elif error.status != 404:  # 404: a cluster started without kwok's PortForward CRD
            raise


def publish(kube: Any, name: str, namespace: str, uid: str, current: dict[str, str], endpoints: dict[str, str],
            engine: str, commit: str = "") -> None:
    """The pod's PortForward, then its annotations; the endpoints annotation goes last: it marks the pod as
    reachable both ways. Nothing is written when the annotations already say so."""
    wanted = {ENDPOINTS_ANNOTATION: json.dumps(endpoints), ENGINE_ANNOTATION: engine,
              **({COMMIT_ANNOTATION: commit} if commit else {})}
    if any(current.get(k) != v for k, v in wanted.items()):
        ensure_port_forward(kube.custom, name, namespace, uid, endpoints)
        kube.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": wanted}})

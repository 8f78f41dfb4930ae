"""What the readiness checks read from the Kubernetes API: the DSC, the controller, runtime pods, InferenceServices."""

from __future__ import annotations

import json
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops.conformance.cluster import objects
from mmgitops.conformance.cluster.session import Session
from mmgitops.conformance.target import Platform, RuntimePod, ServiceReadiness, TargetError
from mmgitops.errors import Forbidden

CONTROLLER = "modelmesh-controller"
DEFAULT_APPLICATIONS_NAMESPACE = "redhat-ods-applications"  # RHOAI's default DSCI applicationsNamespace
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


def read(session: Session, runtime: dict[str, Any], pods: list[Any]) -> Platform:
    """The platform around one runtime of the run: `pods` are its pods, as the target lists them."""
    unreadable: dict[str, str] = {}
    dscs = _list_cluster(session.custom, "datasciencecluster.opendatahub.io", "v1", "datascienceclusters",
                         unreadable, "dsc")
    dscis = _list_cluster(session.custom, "dscinitialization.opendatahub.io", "v1", "dscinitializations",
                          unreadable, "dsc")
    apps = next((str(get(d, "spec", "applicationsNamespace")) for d in dscis
                 if get(d, "spec", "applicationsNamespace")), DEFAULT_APPLICATIONS_NAMESPACE)
    available = False
    try:
        deployment = session.apps.read_namespaced_deployment(CONTROLLER, apps)
        available = any(c.type == "Available" and c.status == "True" for c in (deployment.status.conditions or []))
    except ApiException as error:
        if error.status == 403:
            unreadable["controller"] = reason(error)
        elif error.status != 404:
            raise TargetError("UNAVAILABLE", f"deployment {apps}/{CONTROLLER}: {reason(error)}") from None
    name, spec = runtime["metadata"]["name"], runtime["spec"]
    try:
        isvcs = session.custom.list_namespaced_custom_object(*ISVC[:2], session.namespace, ISVC[2])["items"]
    except ApiException as error:
        raise api_error(error, f"inferenceservices in namespace {session.namespace}") from None
    return Platform(
        namespace=session.namespace,
        dsc=dscs[0]["metadata"]["name"] if dscs else "",
        dsc_conditions={c.get("type"): c.get("status") for c in get(dscs[0], "status", "conditions") or []}
        if dscs else {},
        controller=f"{apps}/{CONTROLLER}",
        controller_available=available,
        runtime=name,
        runtime_containers=["mm", "rest-proxy", *(c["name"] for c in spec["containers"]),
                            f"{(spec.get('builtInAdapter') or {}).get('serverType', '')}-adapter"],
        runtime_pods=[_runtime_pod(session.core, p) for p in pods],
        services=[ServiceReadiness(
            i["metadata"]["name"],
            str(get(i, "status", "modelStatus", "states", "activeModelState")),
            str(get(i, "status", "modelStatus", "transitionStatus")),
            str(get(i, "status", "components", "predictor", "grpcUrl")),
            str(get(i, "status", "components", "predictor", "restUrl")),
        ) for i in isvcs if get(i, "spec", "predictor", "model", "runtime") == name],
        unreadable=unreadable,
    )


def _runtime_pod(core: client.CoreV1Api, pod: Any) -> RuntimePod:
    node = pod.spec.node_name or ""
    node_gpus = None
    if node:
        try:
            node_gpus = int((core.read_node(node).status.capacity or {}).get(objects.GPU, 0))
        except ApiException as error:
            if error.status != 403:  # forbidden: the check says it cannot see the node's GPUs
                raise TargetError("UNAVAILABLE", f"node {node}: {reason(error)}") from None
    requested = sum(int(((c.resources and c.resources.requests) or {}).get(objects.GPU, 0))
                    for c in pod.spec.containers)
    return RuntimePod(pod.metadata.name, pod_ready(pod),
                      {c.name: bool(c.ready) for c in (pod.status.container_statuses or [])},
                      node, requested, node_gpus)


def _list_cluster(custom: client.CustomObjectsApi, group: str, version: str, plural: str,
                  unreadable: dict[str, str], part: str) -> list[dict[str, Any]]:
    try:
        return list(custom.list_cluster_custom_object(group, version, plural)["items"])
    except ApiException as error:
        if error.status == 403:
            unreadable.setdefault(part, reason(error))
            return []
        if error.status == 404:  # not installed: the check says so
            return []
        raise TargetError("UNAVAILABLE", f"{plural}.{group}: {reason(error)}") from None
    except urllib3.exceptions.HTTPError as error:
        raise TargetError("UNAVAILABLE", f"{plural}.{group}: {error}") from None


def get(obj: Any, *path: str) -> Any:
    """A nested field of a JSON object, "" when any part is missing."""
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return "" if obj is None else obj


def pod_ready(pod: Any) -> bool:
    return pod.status is not None and pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def api_error(error: ApiException, what: str, code: str = "UNAVAILABLE") -> Exception:
    """A 403 stops the run (Forbidden, exit 2): the API server's message names the verb, the resource and the
    namespace, and no check can pass without the call. Anything else is the target's error."""
    if error.status == 403:
        return Forbidden(reason(error))
    return TargetError(code, f"{what}: {reason(error)}")


def reason(error: ApiException) -> str:
    """The API server's message (it names the field a CRD rejected), else the HTTP reason."""
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)

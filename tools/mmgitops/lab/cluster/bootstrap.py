"""What `up` puts into a fresh API server: the simulated nodes, the pinned upstream CRDs, the audited identities'
namespace, and the registration of the project.openshift.io stand-in (lab/standins/projects/)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, utils
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError
from mmgitops.gitops.schemas.catalog import crd_files_from_pins
from mmgitops.gitops.yamlio import load_all


def populate(kubeconfig: Path, node_bodies: list[dict[str, Any]], audited_namespace: str | None = None) -> None:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api)
    if audited_namespace:
        create_missing(api, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": audited_namespace}}])
    for body in node_bodies:
        try:
            core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise ToolError(f"node {body['metadata']['name']} rejected: {exc.reason}") from exc
    install_crds(api)


def install_crds(api: client.ApiClient, timeout: float = 60.0) -> list[str]:
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path, _label in crd_files_from_pins():
        for doc in load_all(path.read_text(encoding="utf-8")):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            names.append(name)
            try:
                ext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise ToolError(f"{path}: CRD {name} rejected: {exc.reason}") from exc
    deadline = time.monotonic() + timeout
    waiting = set(names)
    while waiting and time.monotonic() < deadline:
        for name in list(waiting):
            crd = ext.read_custom_resource_definition(name)
            conditions = (crd.status and crd.status.conditions) or []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                waiting.discard(name)
        time.sleep(0.2)
    if waiting:
        raise ToolError(f"CRDs not Established after {timeout:.0f} s: {', '.join(sorted(waiting))}")
    return names


def create_missing(api: client.ApiClient, bodies: list[dict[str, Any]]) -> None:
    """Create each object unless it exists."""
    for body in bodies:
        try:
            utils.create_from_dict(api, body)
        except utils.FailToCreateError as exc:
            if any(getattr(e, "status", None) != 409 for e in exc.api_exceptions):
                reasons = "; ".join(str(getattr(e, "reason", e)) for e in exc.api_exceptions)
                raise ToolError(f"{body['kind']} {body['metadata']['name']} rejected: {reasons}") from exc


def register_projects(kubeconfig: Path, port: int, timeout: float = 60.0) -> None:
    """Route project.openshift.io to the stand-in on 127.0.0.1:port, once it listens, and return when
    kube-apiserver's aggregator reports the APIService Available (so `get --raw /apis/project.openshift.io/v1`
    works)."""
    from mmgitops.lab.standins.projects import api as projects

    deadline = time.monotonic() + timeout
    while not _listening(port):
        if time.monotonic() > deadline:
            raise ToolError(f"the project.openshift.io stand-in is not listening on 127.0.0.1:{port} after "
                            f"{timeout:.0f} s (see standins.log in the cluster's state directory)")
        time.sleep(0.2)
    api = config.new_client_from_config(config_file=str(kubeconfig))
    create_missing(api, projects.registration(port))
    registration = client.ApiregistrationV1Api(api)
    message = "no status yet"
    while time.monotonic() < deadline:
        found = registration.read_api_service(projects.APISERVICE)
        for cond in (found.status and found.status.conditions) or []:
            if cond.type == "Available":
                if cond.status == "True":
                    return
                message = cond.message or cond.reason or message
        time.sleep(0.2)
    raise ToolError(f"APIService {projects.APISERVICE} not Available after {timeout:.0f} s: {message}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False

"""What `up` puts into a fresh API server: the simulated nodes and the pinned upstream CRDs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError
from mmgitops.gitops.schemas.catalog import crd_files_from_pins
from mmgitops.gitops.yamlio import load_all


def populate(kubeconfig: Path, node_bodies: list[dict[str, Any]]) -> None:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    core = client.CoreV1Api(api)
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

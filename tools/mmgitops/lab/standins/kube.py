"""The few Kubernetes calls the stand-ins make, on the official client."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, status: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True" if status else "False", "reason": reason,
            "message": message, "lastTransitionTime": now()}


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def list(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        try:
            return self.custom.list_cluster_custom_object(group, version, plural)["items"]
        except ApiException as exc:
            if exc.status == 404:  # the CRD is not installed (yet)
                return []
            raise

    def patch_status(self, obj: dict[str, Any], plural: str, status: dict[str, Any]) -> None:
        group, _, version = obj["apiVersion"].rpartition("/")
        meta = obj["metadata"]
        body = {"status": status}
        if meta.get("namespace"):
            self.custom.patch_namespaced_custom_object_status(group, version, meta["namespace"], plural,
                                                              meta["name"], body)
        else:
            self.custom.patch_cluster_custom_object_status(group, version, plural, meta["name"], body)

    def ensure_namespace(self, name: str) -> None:
        try:
            self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def ensure(self, create: Any, read: Any, body: dict[str, Any], *args: Any) -> None:
        """Create an object unless it exists."""
        try:
            read(body["metadata"]["name"], *args)
        except ApiException as exc:
            if exc.status != 404:
                raise
            create(*args, body)

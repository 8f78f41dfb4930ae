"""What the project.openshift.io group looks like to clients, and what registers it with kube-apiserver."""

from __future__ import annotations

from typing import Any

GROUP, VERSION = "project.openshift.io", "v1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
APISERVICE = f"{VERSION}.{GROUP}"
# Where OpenShift's openshift-apiserver Service lives; here an ExternalName Service naming loopback.
SERVICE_NAMESPACE, SERVICE_NAME = "openshift-apiserver", "api"
SELF_PROVISIONER, BASIC_USER = "self-provisioner", "basic-user"
# The conventional home of a custom project template (stand-in for projects.config.openshift.io/cluster
# spec.projectRequestTemplate, which names a Template in openshift-config).
TEMPLATE_NAMESPACE, TEMPLATE_CONFIGMAP, TEMPLATE_KEY = "openshift-config", "project-request-template", "template.yaml"
# Marks the ClusterRole and ClusterRoleBinding that let a requester get and delete their own project.
REQUESTER_LABEL = "lab.mmgitops.local/requested-project"

class Refusal(Exception):
    """A request answered with a Kubernetes Status (its code and reason) instead of an object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = status(code, reason, message, details)


def status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}




def discovery_group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [version],
            "preferredVersion": version}


def discovery_resources() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": [
        {"name": "projectrequests", "singularName": "projectrequest", "namespaced": False,
         "kind": "ProjectRequest", "verbs": ["create", "list"]},
        {"name": "projects", "singularName": "project", "namespaced": False, "kind": "Project",
         "verbs": ["delete", "get", "list", "watch"]},
    ]}


def openapi(parts: list[str]) -> dict[str, Any]:
    """Empty OpenAPI documents: kube-apiserver's OpenAPI aggregators ask every APIService for them, and log an error
    each time one is missing. No schemas: `kubectl explain` knows nothing of these kinds here."""
    info = {"title": "project.openshift.io (local stand-in)", "version": VERSION}
    if parts == ["v2"]:
        return {"swagger": "2.0", "info": info, "paths": {}, "definitions": {}}
    if parts == ["v3"]:
        return {"paths": {f"apis/{GROUP_VERSION}": {"serverRelativeURL": f"/openapi/v3/apis/{GROUP_VERSION}"}}}
    if parts == ["v3", "apis", GROUP, VERSION]:
        return {"openapi": "3.0.0", "info": info, "paths": {}, "components": {"schemas": {}}}
    raise Refusal(404, "NotFound", "the server could not find the requested resource")


def registration(port: int) -> list[dict[str, Any]]:
    """What makes kube-apiserver route the group to the stand-in: a Service kube-apiserver resolves to
    https://localhost:PORT (ExternalName), the APIService with OpenShift's priorities, and OpenShift's
    self-provisioner ClusterRole (bound to nobody: OpenShift binds it to system:authenticated:oauth)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SERVICE_NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
         "spec": {"type": "ExternalName", "externalName": "localhost",
                  "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
         "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 9900, "versionPriority": 15,
                  "insecureSkipTLSVerify": True,
                  "service": {"namespace": SERVICE_NAMESPACE, "name": SERVICE_NAME, "port": port}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": SELF_PROVISIONER,
                      "annotations": {"openshift.io/description": "A user that can request projects."}},
         # OpenShift's bootstrap policy names the legacy group "" too.
         "rules": [{"apiGroups": [GROUP, ""], "resources": ["projectrequests"], "verbs": ["create"]}]},
        # The projects part of OpenShift's basic-user, bound as there to every authenticated user: anyone may list
        # projects (the list holds only the ones they may see).
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": BASIC_USER},
         "rules": [{"apiGroups": [GROUP, ""], "resources": ["projects"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "basic-users"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": BASIC_USER},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]},
    ]

"""A ProjectRequest as OpenShift's template turns it into objects: names it refuses, the default template, parameter
substitution, and projects as views of namespaces. Pure: no API calls."""

from __future__ import annotations

import re
from typing import Any

from mmgitops.lab.standins.projects.api import GROUP, GROUP_VERSION, REQUESTER_LABEL

FORBIDDEN_NAMES = ("openshift", "kubernetes", "kube")
FORBIDDEN_PREFIXES = ("openshift-", "kubernetes-", "kube-")
PARAMETERS = ("PROJECT_NAME", "PROJECT_DISPLAYNAME", "PROJECT_DESCRIPTION", "PROJECT_ADMIN_USER",
              "PROJECT_REQUESTING_USER")
ANNOTATIONS = {"description": "openshift.io/description", "display_name": "openshift.io/display-name",
               "requester": "openshift.io/requester"}
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PARAM = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def name_problem(name: str) -> str | None:
    """Why a project name is invalid (OpenShift's ValidateProjectName: a DNS-1123 label of 2 or more), else None."""
    if len(name) < 2:
        return "must be at least 2 characters long"
    if len(name) > 63 or not _LABEL.match(name):
        return ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                "start and end with an alphanumeric character, at most 63 characters")
    return None


def forbidden_reason(name: str) -> str | None:
    """Why OpenShift refuses to hand this name out by a project request, else None."""
    if name in FORBIDDEN_NAMES:
        return f'cannot request a project with the name "{name}"'
    for prefix in FORBIDDEN_PREFIXES:
        if name.startswith(prefix):
            return f'cannot request a project starting with "{prefix}"'
    return None


def default_template() -> dict[str, Any]:
    """openshift-apiserver's built-in template: the Project with three annotations and an `admin` RoleBinding."""
    return {
        "apiVersion": "template.openshift.io/v1", "kind": "Template", "metadata": {"name": "project-request"},
        "objects": [
            {"apiVersion": GROUP_VERSION, "kind": "Project", "metadata": {
                "name": "${PROJECT_NAME}",
                "annotations": {ANNOTATIONS["description"]: "${PROJECT_DESCRIPTION}",
                                ANNOTATIONS["display_name"]: "${PROJECT_DISPLAYNAME}",
                                ANNOTATIONS["requester"]: "${PROJECT_REQUESTING_USER}"}}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "admin", "namespace": "${PROJECT_NAME}"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                           "name": "${PROJECT_ADMIN_USER}"}]},
        ],
        "parameters": [{"name": p} for p in PARAMETERS],
    }


def process(template: dict[str, Any], given: dict[str, str]) -> list[dict[str, Any]]:
    """The template's objects with `${NAME}` replaced in every string value (the template's own parameter
    values, the five project parameters overriding them) and the template's `labels` added to each object.
    Raises ValueError for what OpenShift's processor refuses."""
    values: dict[str, str] = {}
    for param in template.get("parameters") or []:
        name = str(param.get("name") or "")
        if param.get("generate") and name not in given:
            raise ValueError(f"parameter {name}: generated values are not supported by the local stand-in")
        values[name] = given.get(name, str(param.get("value") or ""))
        if param.get("required") and not values[name]:
            raise ValueError(f"parameter {name} is required and has no value")

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return _PARAM.sub(lambda m: values.get(m.group(1), m.group(0)), node)
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        return node

    labels = template.get("labels") or {}
    objects = []
    for obj in fill(template.get("objects") or []):
        if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
            raise ValueError("every object of the template needs apiVersion and kind")
        if labels:
            meta = obj.setdefault("metadata", {})
            meta["labels"] = {**fill(labels), **(meta.get("labels") or {})}
        objects.append(obj)
    return objects


def is_project(obj: dict[str, Any]) -> bool:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return obj.get("kind") == "Project" and group in (GROUP, "")  # "" : the legacy `apiVersion: v1` Project


def split_project(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The template's one Project, and the objects to create in it. ValueError unless there is exactly one."""
    projects = [o for o in objects if is_project(o)]
    if len(projects) != 1:
        raise ValueError(f"must contain {'only one' if projects else 'a'} project resource")
    return projects[0], [o for o in objects if not is_project(o)]


def namespace_from(project: dict[str, Any]) -> dict[str, Any]:
    """The Namespace a Project stands for (ConvertProjectToExternal: the display-name annotation is always set)."""
    meta = {k: v for k, v in (project.get("metadata") or {}).items() if k in ("name", "labels", "annotations")}
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           ANNOTATIONS["display_name"]: (meta.get("annotations") or {}).get(
                               ANNOTATIONS["display_name"], "")}
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
    finalizers = (project.get("spec") or {}).get("finalizers")
    if finalizers:
        body["spec"] = {"finalizers": finalizers}
    return body


def project_from(namespace: dict[str, Any]) -> dict[str, Any]:
    """The Project view of a Namespace (ConvertNamespaceFromExternal)."""
    ns_status = namespace.get("status") or {}
    project_status: dict[str, Any] = {"phase": ns_status.get("phase", "Active")}
    if ns_status.get("conditions") is not None:
        project_status["conditions"] = ns_status["conditions"]
    return {"kind": "Project", "apiVersion": GROUP_VERSION, "metadata": namespace.get("metadata") or {},
            "spec": {"finalizers": (namespace.get("spec") or {}).get("finalizers") or []}, "status": project_status}


def requester_rbac(project: str, user: str) -> list[dict[str, Any]]:
    """A ClusterRole and ClusterRoleBinding letting the requester get and delete projects/PROJECT: OpenShift's
    kube-apiserver authorizes a project by its namespace's RoleBindings, plain kube-apiserver as cluster-scoped."""
    name = f"project-{project}-requester"
    meta = {"name": name, "labels": {REQUESTER_LABEL: project}}
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta,
         "rules": [{"apiGroups": [GROUP], "resources": ["projects"], "resourceNames": [project],
                    "verbs": ["get", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ]

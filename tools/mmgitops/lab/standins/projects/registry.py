"""Projects made and removed with the stand-ins' admin credentials, as openshift-apiserver's REST storage does."""

from __future__ import annotations

import json
import time
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops.lab.standins.projects.api import (
    GROUP,
    GROUP_VERSION,
    REQUESTER_LABEL,
    SUCCESS,
    TEMPLATE_CONFIGMAP,
    TEMPLATE_KEY,
    TEMPLATE_NAMESPACE,
    Refusal,
)
from mmgitops.lab.standins.projects.template import (
    default_template,
    forbidden_reason,
    name_problem,
    namespace_from,
    process,
    project_from,
    requester_rbac,
    split_project,
)


class Admin:
    """Raw JSON calls to kube-apiserver with the stand-ins' admin credentials: objects stay as the API wrote them."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict[str, Any]:
        response = self.api.call_api(path, method, query_params=list((query or {}).items()), body=body,
                                     header_params={"Accept": "application/json",
                                                    "Content-Type": "application/json"},
                                     auth_settings=["BearerToken"], _preload_content=False,
                                     _return_http_data_only=True)
        return json.loads(response.data or b"{}")

    def resource_path(self, obj: dict[str, Any], namespace: str) -> str:
        """Where to POST obj in namespace, found by discovery as OpenShift's RESTMapper finds it."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            listing = self.call("GET", base)
        except ApiException as exc:
            raise ValueError(f"mapping {api_version}, Kind={kind} failed: not served here") from exc
        for resource in listing.get("resources") or []:
            if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                if not resource.get("namespaced"):
                    raise ValueError(f"{api_version}, Kind={kind} specified in project template is not namespace "
                                     "scoped")
                return f"{base}/namespaces/{namespace}/{resource['name']}"
        raise ValueError(f"mapping {api_version}, Kind={kind} failed: no such kind")

    def template(self) -> dict[str, Any]:
        try:
            config_map = self.call("GET", f"/api/v1/namespaces/{TEMPLATE_NAMESPACE}/configmaps/{TEMPLATE_CONFIGMAP}")
        except ApiException as exc:
            if exc.status == 404:
                return default_template()
            raise
        text = (config_map.get("data") or {}).get(TEMPLATE_KEY)
        if text is None:
            return default_template()
        try:
            template = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{TEMPLATE_KEY} is not YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(template, dict) or template.get("kind") != "Template":
            raise ValueError(f"{TEMPLATE_KEY} is not a Template")
        return template

    def allowed(self, user: str, groups: list[str], attributes: dict[str, str]) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": user, "groups": groups, "resourceAttributes": attributes}}
        return bool(self.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
                    .get("status", {}).get("allowed"))


def create_project(admin: Admin, request: dict[str, Any], user: str, groups: list[str]) -> dict[str, Any]:
    """REST.Create of a ProjectRequest: validate, refuse reserved names, process the template, create the
    namespace, then the template's other objects (undoing the namespace if one fails), then the requester's
    rights on projects/NAME, wait for the last RoleBinding and those rights, and return the Project."""
    meta = request.get("metadata") or {}
    name = str(meta.get("name") or "")
    problem = "Required value: name is required" if not name else name_problem(name)
    if problem:
        raise _invalid(name, "metadata.name", problem if not name else f'Invalid value: "{name}": {problem}')
    display, description = str(request.get("displayName") or ""), str(request.get("description") or "")
    if "\n" in display or "\t" in display:
        raise _invalid(name, "displayName", f"Invalid value: {json.dumps(display)}: may not contain a new line or tab")
    details = {"name": name, "group": GROUP, "kind": "project"}
    if reason := forbidden_reason(name):
        raise Refusal(403, "Forbidden", f'project.project.openshift.io "{name}" is forbidden: {reason}', details)
    if _namespace(admin, name) is not None:
        raise Refusal(409, "AlreadyExists", f'project.project.openshift.io "{name}" already exists', details)
    values = {"PROJECT_NAME": name, "PROJECT_DISPLAYNAME": display, "PROJECT_DESCRIPTION": description,
              "PROJECT_ADMIN_USER": user, "PROJECT_REQUESTING_USER": user}
    try:
        project, others = split_project(process(admin.template(), values))
        paths = [admin.resource_path(obj, name) for obj in others]
    except ValueError as exc:
        raise Refusal(500, "InternalError", f"Internal error occurred: the project template "
                      f"({TEMPLATE_NAMESPACE}/{TEMPLATE_CONFIGMAP}) is not correctly configured: {exc}") from exc
    try:
        created = admin.call("POST", "/api/v1/namespaces", namespace_from(project))
    except ApiException as exc:
        if exc.status == 409:  # a racer won: only one request gets the project and its objects
            raise Refusal(409, "AlreadyExists", f'project.project.openshift.io "{name}" already exists',
                          details) from exc
        raise
    project_name = created["metadata"]["name"]
    last_binding = ""
    try:
        for obj, path in zip(others, paths, strict=True):
            obj.setdefault("metadata", {})["namespace"] = project_name
            try:
                admin.call("POST", path, obj)
            except ApiException as exc:
                if exc.status != 409:  # OpenShift, too, lets an object that already exists be
                    raise
            if obj["kind"] == "RoleBinding":
                last_binding = obj["metadata"]["name"]
        for obj in requester_rbac(project_name, user):
            plural = "clusterroles" if obj["kind"] == "ClusterRole" else "clusterrolebindings"
            admin.call("POST", f"/apis/rbac.authorization.k8s.io/v1/{plural}", obj)
    except ApiException as exc:
        delete_project(admin, project_name)
        raise Refusal(500, "InternalError", f"Internal error occurred: creating the objects of project "
                      f"{project_name}: {exc.reason}") from exc
    deadline = time.monotonic() + 6.0  # as waitForRoleBinding: about 6 s; a late one is not an error
    while last_binding and time.monotonic() < deadline and _namespaced_missing(admin, project_name, last_binding):
        time.sleep(0.1)
    # Ours: kube-apiserver's authorizer sees the requester's rights on projects/NAME before the answer goes out.
    attributes = {"verb": "delete", "group": GROUP, "resource": "projects", "name": project_name}
    while time.monotonic() < deadline and not admin.allowed(user, groups, attributes):
        time.sleep(0.1)
    return project_from(admin.call("GET", f"/api/v1/namespaces/{project_name}"))


def _invalid(name: str, field: str, message: str) -> Refusal:
    return Refusal(422, "Invalid", f'ProjectRequest.project.openshift.io "{name}" is invalid: {field}: {message}',
                   {"name": name, "group": GROUP, "kind": "ProjectRequest",
                    "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]})


def delete_project(admin: Admin, name: str) -> dict[str, Any]:
    """Delete the namespace (its API error, such as `namespaces "x" not found`, is the answer, as on OpenShift),
    then the requester's rights on it."""
    admin.call("DELETE", f"/api/v1/namespaces/{name}")
    remove_requester_rbac(admin, name)
    return SUCCESS


def remove_requester_rbac(admin: Admin, project: str) -> None:
    for plural in ("clusterrolebindings", "clusterroles"):
        try:
            admin.call("DELETE", f"/apis/rbac.authorization.k8s.io/v1/{plural}/project-{project}-requester")
        except ApiException as exc:
            if exc.status != 404:
                raise


def list_projects(admin: Admin, user: str, groups: list[str], selector: str | None) -> dict[str, Any]:
    """The projects the user may see: namespaces they may `get` (what OpenShift's project auth cache reviews)."""
    query = {"labelSelector": selector} if selector else None
    listing = admin.call("GET", "/api/v1/namespaces", query=query)
    items = [project_from(ns) for ns in listing.get("items") or []
             if admin.allowed(user, groups, {"verb": "get", "resource": "namespaces",
                                             "namespace": ns["metadata"]["name"], "name": ns["metadata"]["name"]})]
    # The namespaces' resourceVersion: a watch started from it (kubectl get -w) goes on where the list ended.
    meta = {"resourceVersion": (listing.get("metadata") or {}).get("resourceVersion", "")}
    return {"kind": "ProjectList", "apiVersion": GROUP_VERSION, "metadata": meta, "items": items}


def _namespace(admin: Admin, name: str) -> dict[str, Any] | None:
    try:
        return admin.call("GET", f"/api/v1/namespaces/{name}")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _namespaced_missing(admin: Admin, namespace: str, binding: str) -> bool:
    try:
        admin.call("GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{binding}")
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def reconcile(api: client.ApiClient) -> None:
    """Sweep the requester rights of projects whose namespace went some other way than DELETE projects/NAME."""
    admin = Admin(api)
    roles = admin.call("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                       query={"labelSelector": REQUESTER_LABEL}).get("items") or []
    for role in roles:
        project = role["metadata"]["labels"][REQUESTER_LABEL]
        if _namespace(admin, project) is None:
            remove_requester_rbac(admin, project)

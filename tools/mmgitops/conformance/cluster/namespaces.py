"""Where a run's objects live, in one of three ways, each needing other rights (docs/conformance.md#rbac):

- `Given`: `--namespace NS`, made once by an admin. The run never creates or deletes a namespace; it removes the
  objects it labelled. Needs ClusterRole mmgitops-conformance-namespace bound by a RoleBinding in NS.
- `Project`: on OpenShift (the API serves project.openshift.io, and this user may request projects), a
  ProjectRequest, as `oc new-project` makes: the requester becomes the project's admin, so the cluster's
  self-provisioner role is enough. Deleted at the end.
- `Own`: elsewhere, a namespace the run creates, labelled, and deletes at the end (ClusterRole
  mmgitops-conformance-runner).
"""

from __future__ import annotations

from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops.conformance.cluster import access, objects
from mmgitops.errors import ToolError

PROJECTS = ("project.openshift.io", "v1")
MODELMESH_ENABLED = "modelmesh-enabled"
TEMPLATE = "components/conformance/runner-namespace"
BIND = (f"bind ClusterRole mmgitops-conformance-namespace to this user with a RoleBinding there ({TEMPLATE} "
        "makes one)")


class Place(Protocol):
    name: str
    kind: str  # how the report names it
    role: str  # the shipped role (access.py) whose rules the run needs there
    fix: str  # how to grant a right the run lacks there
    settle_s: float  # how long rights granted by open() may take to reach the authorizer

    def open(self) -> None: ...

    def close(self) -> list[str]:
        """Remove what open() made; a line per part that could not be removed."""
        ...


def choose(api: client.ApiClient, given: str | None, run_id: str, runner: str, storage_key: str) -> Place:
    """The namespace given; else a project where the API serves them and this user may request one; else a
    namespace of the run's own where this user may create one (a cluster admin on OpenShift may do both)."""
    if given:
        return Given(api, given)
    projects = serves_projects(api)
    if projects and access.allowed(api, access.Access("create", PROJECTS[0], "projectrequests")):
        return Project(api, run_id, runner, storage_key)
    if access.allowed(api, access.Access("create", "", "namespaces")):
        return Own(api, run_id, runner, storage_key)
    neither = "request a project (create projectrequests.project.openshift.io) nor " if projects else ""
    raise ToolError(f"this user may not {neither}create namespaces: pass --namespace NS, a namespace an admin made "
                    f"for the run ({TEMPLATE})")


def serves_projects(api: client.ApiClient) -> bool:
    try:
        groups = client.ApisApi(api).get_api_versions().groups or []
    except ApiException as error:
        raise ToolError(f"cannot list the API groups (GET /apis): {error.status} {error.reason}") from None
    return any(g.name == PROJECTS[0] for g in groups)


def _enabled(labels: dict[str, str] | None) -> bool:
    # modelmesh-serving controllers/util.go modelMeshEnabled: only the label's value "true" counts.
    return (labels or {}).get(MODELMESH_ENABLED) == "true"


class Given:
    kind = "given namespace"
    role = access.NAMESPACED
    fix = BIND
    settle_s = 0.0

    def __init__(self, api: client.ApiClient, name: str) -> None:
        self.api, self.name = api, name

    def open(self) -> None:
        where = f"namespace {self.name}"
        try:
            found = client.CoreV1Api(self.api).read_namespace(self.name)
        except ApiException as error:
            if error.status == 404:
                raise ToolError(f"{where}: not found; the run uses it as it is and never creates one (an admin "
                                f"makes it once: {TEMPLATE})") from None
            if error.status == 403:
                # A RoleBinding in NS grants get on NS itself; without one, a missing namespace looks the same.
                raise ToolError(f"{where}: this user may not get namespaces {self.name}: it does not exist, or "
                                f"no RoleBinding in it grants this user anything; {BIND}") from None
            raise access.refused(error, "get", f"namespaces {self.name}", where) from None
        if not _enabled(found.metadata.labels):
            raise ToolError(f"{where}: no label {MODELMESH_ENABLED}=true, and RHOAI's modelmesh-controller serves "
                            f"only namespaces that carry it; an admin adds it: kubectl label namespace {self.name} "
                            f"{MODELMESH_ENABLED}=true")

    def close(self) -> list[str]:
        return []  # the namespace stays; the session removes the objects it labelled


class Own:
    kind = "namespace of the run's own"
    role = access.LABELLED
    settle_s = 0.0
    fix = "bind ClusterRole mmgitops-conformance-runner to this user (components/conformance/runner-rbac)"

    def __init__(self, api: client.ApiClient, run_id: str, runner: str, storage_key: str) -> None:
        self.core = client.CoreV1Api(api)
        self.run_id, self.runner, self.storage_key = run_id, runner, storage_key
        self.name = objects.namespace_name(run_id)

    def open(self) -> None:
        try:
            self.core.create_namespace(objects.namespace(self.run_id, self.runner, self.storage_key))
        except ApiException as error:
            raise access.refused(error, "create", "namespaces", f"namespace {self.name}") from None

    def close(self) -> list[str]:
        try:
            self.core.delete_namespace(self.name, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                return [f"namespace {self.name}: {error.reason}"]
        return []


class Project:
    kind = "OpenShift project"
    role = access.NAMESPACED
    # The project's admin role grants all of it on OpenShift; a cluster that trimmed that role is the only way here.
    fix = "this user is the project's admin, whose role should grant it (OpenShift's admin ClusterRole)"
    settle_s = 10.0  # the project's admin RoleBinding is new

    def __init__(self, api: client.ApiClient, run_id: str, runner: str, storage_key: str) -> None:
        self.api, self.custom = api, client.CustomObjectsApi(api)
        self.run_id, self.runner, self.storage_key = run_id, runner, storage_key
        self.name = objects.namespace_name(run_id)
        self.made = False

    def open(self) -> None:
        where = f"project {self.name}"
        request = {"apiVersion": "project.openshift.io/v1", "kind": "ProjectRequest", "metadata": {"name": self.name},
                   "displayName": f"mmgitops conformance run {self.run_id}",
                   "description": f"made by the conformance suite running at {self.runner}; deleted at its end"}
        try:
            project: dict[str, Any] = self.custom.create_cluster_custom_object(*PROJECTS, "projectrequests", request)
        except ApiException as error:
            raise access.refused(error, "create", "projectrequests.project.openshift.io", where) from None
        self.made = True
        if _enabled(project["metadata"].get("labels")):
            return
        # A project's admin may not label its namespace (OpenShift's admin role reads namespaces only, and a
        # Project's labels are immutable), so this works only for a user who may patch namespaces.
        body = {"metadata": {"labels": objects.namespace_labels(self.run_id),
                             "annotations": objects.namespace_annotations(self.runner, self.storage_key)}}
        try:
            client.CoreV1Api(self.api).patch_namespace(self.name, body)
        except ApiException as error:
            if error.status != 403:
                raise access.refused(error, "patch", f"namespaces {self.name}", where) from None
            raise ToolError(
                f"{where}: came without the label {MODELMESH_ENABLED}=true and this user may not patch namespaces "
                f"{self.name} to add it; RHOAI's modelmesh-controller serves only labelled namespaces. Have the "
                "cluster's project template label new projects, or run with --namespace NS in a namespace an admin "
                "labelled") from None

    def close(self) -> list[str]:
        if not self.made:
            return []
        try:
            self.custom.delete_cluster_custom_object(*PROJECTS, "projects", self.name)
        except ApiException as error:
            if error.status != 404:
                return [f"project {self.name}: {error.reason}"]
        return []

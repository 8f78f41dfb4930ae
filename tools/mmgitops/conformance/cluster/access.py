"""What the runner may do, asked of the API server before a run creates anything.

The rules are the roles this repository ships (components/conformance/runner-rbac, in the package as
conformance/rbac): a run checks each one with a SelfSubjectAccessReview, which every authenticated user may make,
so a missing RoleBinding is one line naming the namespace, the verb and the resource, before any object exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import tenacity
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from mmgitops.errors import ToolError

NAMESPACED = "namespaced"  # bound by a RoleBinding in the run's namespace (--namespace)
READER = "cluster-reader"  # read-only, outside that namespace
LABELLED = "labelled-namespaces"  # a namespace of the run's own on plain Kubernetes


@dataclass(frozen=True)
class Access:
    verb: str
    group: str
    resource: str  # with its subresource, as RBAC writes it: pods/portforward
    name: str = ""

    def __str__(self) -> str:
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {what}{f' {self.name}' if self.name else ''}"


def role_rules(role: str) -> list[Access]:
    """Every (verb, group, resource[, name]) a shipped ClusterRole grants, one per combination."""
    path = resources.files("mmgitops.conformance").joinpath("rbac", f"{role}.yaml")
    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ToolError(f"{path}: cannot read the runner's ClusterRole: {error}") from None
    return [Access(verb, group, resource, name)
            for rule in body.get("rules") or []
            for group in rule.get("apiGroups") or [""]
            for resource in rule.get("resources") or []
            for name in rule.get("resourceNames") or [""]
            for verb in rule.get("verbs") or []]


# What the checks touch inside the run's namespace; the roles' other rules are for cluster-scoped objects, or for
# objects elsewhere read by name.
IN_NAMESPACE = {"secrets", "pods", "pods/portforward", "servingruntimes", "inferenceservices", "deployments"}


def in_namespace(role: str) -> list[Access]:
    return [a for a in role_rules(role) if a.resource in IN_NAMESPACE]


def allowed(api: client.ApiClient, access: Access, namespace: str = "") -> bool:
    resource, _, sub = access.resource.partition("/")
    attributes = {"verb": access.verb, "group": access.group, "resource": resource, "subresource": sub,
                  "name": access.name or None, "namespace": namespace or None}
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {k: v for k, v in attributes.items() if v}}}
    try:
        answer = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    except ApiException as error:
        raise ToolError(f"cannot ask the API server what this user may do (SelfSubjectAccessReview): "
                        f"{error.status} {error.reason}") from None
    return bool(answer.status and answer.status.allowed)


def require(api: client.ApiClient, namespace: str, rules: list[Access], fix: str, settle_s: float = 0.0) -> None:
    """A ToolError naming the first rule this user lacks in `namespace`, and how to grant it. `settle_s`: how long a
    refusal may be the authorizer not having seen a RoleBinding just made (a new project's) yet."""
    for access in rules:
        try:
            tenacity.Retrying(stop=tenacity.stop_after_delay(settle_s), wait=tenacity.wait_fixed(0.5),
                              retry=tenacity.retry_if_result(lambda ok: not ok))(allowed, api, access, namespace)
        except tenacity.RetryError:
            raise ToolError(f"namespace {namespace}: this user may not {access} there; {fix}") from None


def refused(error: ApiException, verb: str, what: str, where: str = "", hint: str = "") -> ToolError:
    """One line for a call the API server did not allow: a 403 as what this user may not do (and `hint`, how
    to go on), anything else with its status."""
    prefix = f"{where}: " if where else ""
    if error.status == 403:
        return ToolError(f"{prefix}this user may not {verb} {what}{f'; {hint}' if hint else ''}")
    return ToolError(f"{prefix}cannot {verb} {what}: {error.status} {error.reason}")

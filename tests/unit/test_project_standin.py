"""The ProjectRequest stand-in's pure parts: name rules, template processing, the objects it builds, and the
audit policy and reader of the local cluster (lab/standins/projects/, lab/cluster/audit.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmgitops.lab.cluster import audit
from mmgitops.lab.standins.projects import api as projects
from mmgitops.lab.standins.projects import template as templates

USER = "system:serviceaccount:mmgitops-identities:alice"
VALUES = {"PROJECT_NAME": "team-a", "PROJECT_DISPLAYNAME": "Team A", "PROJECT_DESCRIPTION": "models",
          "PROJECT_ADMIN_USER": USER, "PROJECT_REQUESTING_USER": USER}


@pytest.mark.parametrize(("name", "reason"), [
    ("openshift", 'cannot request a project with the name "openshift"'),
    ("kube", 'cannot request a project with the name "kube"'),
    ("kubernetes", 'cannot request a project with the name "kubernetes"'),
    ("openshift-x", 'cannot request a project starting with "openshift-"'),
    ("kube-system2", 'cannot request a project starting with "kube-"'),
    ("kubernetes-a", 'cannot request a project starting with "kubernetes-"'),
    ("kubeflow", None), ("openshiftish", None), ("team-a", None),
])
def test_reserved_names_are_refused_as_openshift_refuses_them(name, reason):
    assert templates.forbidden_reason(name) == reason


@pytest.mark.parametrize(("name", "valid"), [
    ("ab", True), ("a", False), ("team-1", True), ("Team", False), ("a_b", False), ("-ab", False), ("ab-", False),
    ("a" * 63, True), ("a" * 64, False),
])
def test_project_names_are_dns_labels_of_two_or_more(name, valid):
    assert (templates.name_problem(name) is None) is valid


def test_the_default_template_gives_the_annotated_project_and_an_admin_binding():
    project, others = templates.split_project(templates.process(templates.default_template(), VALUES))
    assert project["metadata"] == {"name": "team-a", "annotations": {
        "openshift.io/description": "models", "openshift.io/display-name": "Team A",
        "openshift.io/requester": USER}}
    assert others == [{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "admin", "namespace": "team-a"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]}]


def test_a_custom_template_substitutes_parameters_labels_and_defaults():
    template = templates.default_template()
    template["objects"][0]["metadata"]["labels"] = {"modelmesh-enabled": "true", "owner": "${PROJECT_ADMIN_USER}"}
    template["parameters"].append({"name": "QUOTA", "value": "4"})
    template["labels"] = {"platform": "${QUOTA}"}
    template["objects"].append({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
                                "spec": {"hard": {"pods": "${QUOTA}", "other": "${UNKNOWN}"}}})
    project, others = templates.split_project(templates.process(template, VALUES))
    assert project["metadata"]["labels"] == {"modelmesh-enabled": "true", "owner": USER, "platform": "4"}
    assert others[1]["spec"]["hard"] == {"pods": "4", "other": "${UNKNOWN}"}  # unknown names stay, as in OpenShift


def test_templates_the_processor_refuses():
    template = templates.default_template()
    template["parameters"].append({"name": "SECRET", "generate": "expression", "from": "[a-z]{8}"})
    with pytest.raises(ValueError, match="generated"):
        templates.process(template, VALUES)
    template["parameters"][-1] = {"name": "NEEDED", "required": True}
    with pytest.raises(ValueError, match="required"):
        templates.process(template, VALUES)
    with pytest.raises(ValueError, match="must contain a project"):
        templates.split_project([])
    twice = templates.process(templates.default_template(), VALUES)
    with pytest.raises(ValueError, match="only one"):
        templates.split_project([twice[0], twice[0]])


def test_a_legacy_v1_project_is_a_project():
    assert templates.is_project({"apiVersion": "v1", "kind": "Project"})
    assert not templates.is_project({"apiVersion": "example.com/v1", "kind": "Project"})


def test_projects_and_namespaces_convert_as_openshift_converts_them():
    project = {"apiVersion": "project.openshift.io/v1", "kind": "Project",
               "metadata": {"name": "team-a", "labels": {"x": "y"}}}
    namespace = templates.namespace_from(project)
    assert namespace == {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "team-a", "labels": {"x": "y"}, "annotations": {"openshift.io/display-name": ""}}}
    view = templates.project_from({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]},
                                  "status": {"phase": "Terminating"}})
    assert view == {"kind": "Project", "apiVersion": "project.openshift.io/v1", "metadata": {"name": "team-a"},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}}


def test_the_requester_may_get_and_delete_only_their_project():
    role, binding = templates.requester_rbac("team-a", USER)
    assert role["metadata"] == binding["metadata"] == {"name": "project-team-a-requester",
                                                       "labels": {projects.REQUESTER_LABEL: "team-a"}}
    assert role["rules"] == [{"apiGroups": ["project.openshift.io"], "resources": ["projects"],
                              "resourceNames": ["team-a"], "verbs": ["get", "delete"]}]
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]


def test_the_registration_routes_the_group_to_loopback():
    service, api_service, role, basic, binding = projects.registration(12345)[1:]
    assert service["spec"] == {"type": "ExternalName", "externalName": "localhost",
                               "ports": [{"name": "https", "port": 12345, "protocol": "TCP"}]}
    assert api_service["metadata"]["name"] == "v1.project.openshift.io"
    assert api_service["spec"]["service"] == {"namespace": "openshift-apiserver", "name": "api", "port": 12345}
    assert (api_service["spec"]["groupPriorityMinimum"], api_service["spec"]["versionPriority"]) == (9900, 15)
    assert role["metadata"]["name"] == "self-provisioner"
    assert role["rules"] == [{"apiGroups": ["project.openshift.io", ""], "resources": ["projectrequests"],
                              "verbs": ["create"]}]
    # As OpenShift's basic-user, bound to every authenticated user: anyone may list the projects they can see.
    assert basic["rules"] == [{"apiGroups": ["project.openshift.io", ""], "resources": ["projects"],
                               "verbs": ["list", "watch"]}]
    assert (binding["roleRef"]["name"], binding["subjects"]) == ("basic-user", [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}])


def test_the_audit_policy_records_only_the_audited_namespaces_accounts():
    policy = audit.policy(("mmgitops-identities", "mmgitops-conformance"))
    assert policy["omitStages"] == ["RequestReceived"]
    assert policy["rules"] == [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts:mmgitops-identities",
                                             "system:serviceaccounts:mmgitops-conformance"]}, {"level": "None"}]


def test_audit_events_are_one_users_json_lines(tmp_path: Path):
    log = tmp_path / "audit.log"
    lines = [{"user": {"username": USER}, "verb": "create"}, {"user": {"username": "someone"}, "verb": "get"},
             {"user": {"username": USER}, "verb": "list"}]
    log.write_text("\n".join(json.dumps(e) for e in lines) + '\n{"user": {"userna', encoding="utf-8")
    assert [e["verb"] for e in audit.audit_events(USER, log)] == ["create", "list"]
    assert audit.audit_events(USER, tmp_path / "missing.log") == []

"""The runner's least-privilege pieces without a cluster: the shipped roles as the suite reads them, the --namespace
option, the one-line refusals of each namespace mode, and a forbidden call stopping the run with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kubernetes.client.rest import ApiException
from mmgitops.conformance import settings
from mmgitops.conformance.cluster import access, namespaces
from mmgitops.errors import ToolError

pytestmark = pytest.mark.unit
WRITES = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate"}


def test_the_suite_reads_every_shipped_role():
    for role in (access.NAMESPACED, access.READER, access.LABELLED):
        assert access.role_rules(role), role


def test_the_namespace_role_grants_the_calls_the_run_makes_in_its_namespace():
    assert {str(a) for a in access.in_namespace(access.NAMESPACED)} == {
        "create secrets", "get secrets", "delete secrets", "list pods", "delete pods", "get pods/portforward",
        *(f"{verb} servingruntimes.serving.kserve.io" for verb in ("create", "list", "delete")),
        *(f"{verb} inferenceservices.serving.kserve.io" for verb in ("create", "get", "list", "patch", "delete")),
        *(f"get deployments.apps modelmesh-serving-conf-{kind}" for kind in ("cpu", "gpu"))}


def test_the_reader_role_only_reads_and_holds_no_secrets():
    rules = access.role_rules(access.READER)
    assert not [str(a) for a in rules if a.verb in WRITES or a.resource == "secrets"]


def test_the_reader_role_reads_no_deployment_but_the_controller():
    assert [a.name for a in access.role_rules(access.READER) if a.resource == "deployments"] == ["modelmesh-controller"]


def test_the_labelled_namespace_role_never_reads_secrets():
    assert [str(a) for a in access.role_rules(access.LABELLED) if a.resource == "secrets"] == ["create secrets"]


@pytest.fixture
def storage(tmp_path: Path) -> str:
    path = tmp_path / "storage-config.json"
    path.write_text("{}")
    return str(path)


def test_namespace_is_a_cluster_option(storage):
    chosen = settings.from_values({"target": "cluster", "storage_config": storage, "namespace": "team-a"})
    assert chosen.namespace == "team-a"
    with pytest.raises(pytest.UsageError, match="--namespace: for --target cluster only"):
        settings.from_values({"namespace": "team-a"})


@pytest.mark.parametrize("name", ["Team-A", "-a", "a" * 64, "a_b"])
def test_a_bad_namespace_name_is_a_usage_error(storage, name):
    with pytest.raises(pytest.UsageError, match=f"--namespace {name}: not a namespace name"):
        settings.from_values({"target": "cluster", "storage_config": storage, "namespace": name})


class FakeCore:
    """CoreV1Api that answers read_namespace with a given status, or a namespace with given labels."""

    status = 200
    labels: ClassVar[dict[str, str]] = {}

    def __init__(self, _api: Any) -> None:
        pass

    def read_namespace(self, name: str) -> Any:
        if self.status != 200:
            raise ApiException(status=self.status, reason="refused")
        return type("NS", (), {"metadata": type("Meta", (), {"labels": self.labels, "name": name})()})()


@pytest.mark.parametrize(("status", "labels", "message"), [
    (404, {}, "namespace team-a: not found; the run uses it as it is and never creates one"),
    (403, {}, "namespace team-a: this user may not get namespaces team-a: it does not exist, or no RoleBinding"),
    (200, {}, "namespace team-a: no label modelmesh-enabled=true"),
    (200, {"modelmesh-enabled": "false"}, "namespace team-a: no label modelmesh-enabled=true"),
])
def test_a_given_namespace_that_cannot_serve_is_one_line(monkeypatch, status, labels, message):
    monkeypatch.setattr(FakeCore, "status", status)
    monkeypatch.setattr(FakeCore, "labels", labels)
    monkeypatch.setattr(namespaces.client, "CoreV1Api", FakeCore)
    with pytest.raises(ToolError) as raised:
        namespaces.Given(object(), "team-a").open()  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_missing_right_names_the_namespace_verb_and_resource(monkeypatch):
    monkeypatch.setattr(access, "allowed", lambda _api, a, _ns: a.resource != "pods/portforward")
    with pytest.raises(ToolError, match=r"^namespace team-a: this user may not get pods/portforward there; bind"):
        access.require(object(), "team-a", access.in_namespace(access.NAMESPACED), namespaces.BIND)  # type: ignore


FORBIDDEN_RUN = '''
from mmgitops.errors import Forbidden

def test_first():
    raise Forbidden('pods is forbidden: User "u" cannot list resource "pods" in the namespace "ns"')

def test_second():
    pass
'''


def test_a_forbidden_call_stops_the_run_with_the_usage_exit_code(tmp_path):
    (tmp_path / "test_forbidden.py").write_text(FORBIDDEN_RUN)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null",
                          str(tmp_path / "test_forbidden.py")], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout
    assert "1 failed" in run.stdout and "test_second" not in run.stdout.split("short test summary")[0]
    assert 'forbidden: pods is forbidden: User "u" cannot list resource "pods" in the namespace "ns"' in run.stdout


@pytest.mark.parametrize(("projects", "message"), [
    (True, "this user may not request a project (create projectrequests.project.openshift.io) nor create namespaces: "
           "pass --namespace NS"),
    (False, "this user may not create namespaces: pass --namespace NS"),
])
def test_a_user_who_may_make_no_namespace_is_told_to_pass_one(monkeypatch, projects, message):
    monkeypatch.setattr(namespaces, "serves_projects", lambda _api: projects)
    monkeypatch.setattr(access, "allowed", lambda *_: False)
    with pytest.raises(ToolError) as raised:
        namespaces.choose(object(), None, "0a0b0c", "host:1", "s3")  # type: ignore[arg-type]
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(("may", "kind"), [({"projectrequests", "namespaces"}, "OpenShift project"),
                                           ({"namespaces"}, "namespace of the run's own")])
def test_a_project_where_one_may_be_requested_else_a_namespace_of_the_runs_own(monkeypatch, may, kind):
    monkeypatch.setattr(namespaces, "serves_projects", lambda _api: True)
    monkeypatch.setattr(access, "allowed", lambda _api, a, _ns="": a.resource in may)
    assert namespaces.choose(object(), None, "0a0b0c", "host:1", "s3").kind == kind  # type: ignore[arg-type]

"""The conformance suite run as least-privileged ServiceAccounts on the local cluster (its API server runs RBAC):
each mode passes with only the roles this repository ships, each identity is refused what its roles leave out,
and the API server's audit log of the run shows every verb the roles grant in use, so a role cannot drift wider
than the suite needs.

The namespace mode's run is the demo's (the `demo` fixture): `make demo` runs the suite as the profile's runner.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from mmgitops.conformance.cluster import objects
from mmgitops.lab.cluster import audit, bootstrap, identity
from mmgitops.lab.cluster.cluster import AUDITED_NAMESPACE

from tests.integration.conftest import ROOT, mmgitops

pytestmark = pytest.mark.integration
RBAC = ROOT / "components/conformance/runner-rbac"
GIVEN_NS, GIVEN_SA = "mmgitops-conformance", "conformance-runner"  # as components/conformance/runner-namespace has them
CHURN = ["--", "--min-churn-age-ms", "1500"]
# Calls every authenticated user may make, which no role of ours grants: asking what one may do, and (OpenShift's
# basic-user, which the local cluster has too) listing the projects one may see, which `conform cleanup` does.
ANYONE = {("create", "authorization.k8s.io", "selfsubjectaccessreviews"), ("list", "project.openshift.io", "projects")}


def admin(cluster: dict) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster["kubeconfig"])


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def create(api: client.ApiClient, body: dict[str, Any]) -> None:
    """Create, or keep what an earlier run of this module left."""
    bootstrap.create_missing(api, [body])


def service_account(api: client.ApiClient, namespace: str, name: str) -> str:
    create(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    create(api, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})
    return f"system:serviceaccount:{namespace}:{name}"


def bind_cluster_role(api: client.ApiClient, role: str, namespace: str, account: str) -> None:
    create(api, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": f"{role}-{account}"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                 "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]})


def status_of(call: Any) -> int:
    try:
        call()
    except ApiException as error:
        return int(error.status)
    return 200


def granted(*roles: str) -> set[tuple[str, str, str]]:
    """(verb, group, resource[/subresource]) for every rule of the shipped ClusterRoles named."""
    out = set()
    for role in roles:
        for rule in documents(RBAC / role / "clusterrole.yaml")[0]["rules"]:
            out |= {(v, g, r) for v in rule["verbs"] for g in rule["apiGroups"] for r in rule["resources"]}
    return out


def used(cluster: dict, user: str, since: float, until: float
         ) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(allowed, refused) resource calls of `user` in the audit log between `since` and `until` (epoch seconds):
    the run and its cleanup, not the refusals the tests then provoke on purpose."""
    allowed, refused = set(), set()
    for event in audit.audit_events(user, Path(cluster["audit_log"])):
        when = dt.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
        ref = event.get("objectRef")
        if not since <= when <= until:
            continue
        if not ref:
            continue  # discovery, /version: not a resource
        call = (event["verb"], ref.get("apiGroup", ""),
                ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else ""))
        (refused if event.get("responseStatus", {}).get("code") == 403 else allowed).add(call)
    return allowed - ANYONE, refused


def conform(cluster: dict, env: dict, kubeconfig: Path, report: Path, *extra: str,
            timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return mmgitops("conform", "--target", "cluster", "--kubeconfig", str(kubeconfig), "--storage-config",
                    cluster["storage_config"], "--report", str(report), *extra, env=env, timeout=timeout)


def results(report: Path) -> dict[str, Any]:
    path = report / "results.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def outcomes(found: dict[str, Any]) -> dict[str, str]:
    return {t["nodeid"].rpartition("::")[2]: t["outcome"] for t in found.get("tests", [])}


# ---- bring your own namespace: the demo's run --------------------------------------------------------------
@pytest.fixture(scope="module")
def given(cluster: dict, cluster_env: dict, demo: dict, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Any]:
    """The demo ran the whole suite as the profile's runner (components/conformance/runner-namespace, synced with
    the profile) in its namespace; then `conform cleanup --namespace` as the same account, after a planted killed
    run. The runner acts nowhere else, so its audit log is these two."""
    api = admin(cluster)
    kubeconfig = identity.service_account_kubeconfig(Path(cluster["kubeconfig"]), GIVEN_NS, GIVEN_SA,
                                                     tmp_path_factory.mktemp("given") / "kubeconfig")
    left = plant_killed_run(api, GIVEN_NS)
    cleanup = mmgitops("conform", "cleanup", "--kubeconfig", str(kubeconfig), "--namespace", GIVEN_NS,
                       env=cluster_env)
    return {"api": api, "run": demo["run"], "results": demo["results"], "kubeconfig": kubeconfig,
            "user": f"system:serviceaccount:{GIVEN_NS}:{GIVEN_SA}", "since": 0.0, "until": time.time(),
            "cleanup": cleanup, "left": left}


def plant_killed_run(api: client.ApiClient, namespace: str) -> str:
    """What a SIGKILLed run leaves in a namespace it was given: its storage Secret and an InferenceService, both
    labelled, the Secret naming a runner on another host (so cleanup treats it as dead)."""
    run_id = "dead00"
    secret = objects.storage_secret(namespace, run_id, "elsewhere:1", "none", {})
    secret["metadata"]["annotations"].pop(objects.SAMPLES_ANNOTATION)
    client.CoreV1Api(api).create_namespaced_secret(namespace, secret)
    isvc = objects.inference_service("conf-left", namespace, run_id, "conf-cpu", "sklearn", "none", "none", "x")
    client.CustomObjectsApi(api).create_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace,
                                                                 "inferenceservices", isvc)
    return run_id


def test_the_given_namespace_stays_and_holds_nothing_of_the_run(given):
    api = given["api"]
    assert client.CoreV1Api(api).read_namespace(GIVEN_NS).status.phase == "Active"
    custom = client.CustomObjectsApi(api)
    for version, plural in (("v1beta1", "inferenceservices"), ("v1alpha1", "servingruntimes")):
        assert custom.list_namespaced_custom_object("serving.kserve.io", version, GIVEN_NS, plural,
                                                    label_selector=objects.RUN_LABEL)["items"] == []
    assert status_of(lambda: client.CoreV1Api(api).read_namespaced_secret(objects.STORAGE_SECRET, GIVEN_NS)) == 404


def test_cleanup_in_a_given_namespace_removes_a_killed_runs_labelled_objects(given):
    assert given["cleanup"].returncode == 0, given["cleanup"].stderr
    assert f"removed the objects labelled {objects.RUN_LABEL}={given['left']} in namespace {GIVEN_NS}" in \
        given["cleanup"].stdout


def test_the_namespace_bound_identity_is_refused_outside_its_namespace(given):
    api = config.new_client_from_config(config_file=str(given["kubeconfig"]))
    core = client.CoreV1Api(api)
    assert status_of(lambda: core.read_namespaced_secret("anything", "redhat-ods-applications")) == 403
    assert status_of(lambda: core.list_secret_for_all_namespaces()) == 403
    assert status_of(lambda: core.delete_namespaced_pod("anything", "redhat-ods-applications")) == 403
    assert status_of(lambda: core.create_namespace({"metadata": {"name": "mmgitops-not-allowed"}})) == 403
    assert status_of(lambda: core.delete_namespace(GIVEN_NS)) == 403
    assert status_of(lambda: client.AppsV1Api(api).read_namespaced_deployment("other", "redhat-ods-applications")
                     ) == 403


def test_the_given_namespace_roles_grant_exactly_the_calls_the_run_makes(cluster, given):
    allowed, refused = used(cluster, given["user"], given["since"], given["until"])
    assert allowed == granted("namespaced", "cluster-reader")
    assert refused == set()


# ---- bad input -----------------------------------------------------------------------------------------------
def test_a_missing_namespace_is_one_line_and_exit_2(cluster, cluster_env, given, tmp_path):
    run = conform(cluster, cluster_env, given["kubeconfig"], tmp_path / "r", "--namespace", "mmgitops-nowhere",
                  timeout=300)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr
    assert "namespace mmgitops-nowhere: this user may not get namespaces mmgitops-nowhere" in run.stdout + run.stderr


def namespace_bound(api: client.ApiClient, namespace: str, role: str) -> None:
    """A namespace ModelMesh serves, where the demo's runner is bound to `role` and nothing else."""
    create(api, {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": namespace, "labels": {"modelmesh-enabled": "true"}}})
    create(api, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "runner", "namespace": namespace},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                 "subjects": [{"kind": "ServiceAccount", "name": GIVEN_SA, "namespace": GIVEN_NS}]})


def refused_before_anything(cluster: dict, cluster_env: dict, given: dict, namespace: str, line: str,
                            report: Path) -> None:
    run = conform(cluster, cluster_env, given["kubeconfig"], report, "--namespace", namespace, timeout=300)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr
    assert line in run.stdout + run.stderr
    core = client.CoreV1Api(given["api"])
    assert core.list_namespaced_secret(namespace, label_selector=objects.RUN_LABEL).items == []


def test_a_namespace_without_the_rolebinding_is_one_line_and_exit_2(cluster, cluster_env, given, tmp_path):
    # view alone: the run may see the namespace, and must say which right it lacks before making anything.
    namespace_bound(given["api"], "mmgitops-unbound", "view")
    refused_before_anything(cluster, cluster_env, given, "mmgitops-unbound",
                            "namespace mmgitops-unbound: this user may not create secrets there", tmp_path / "r")


def test_a_forbidden_call_is_named_before_the_run_makes_anything(cluster, cluster_env, given, tmp_path):
    """The RoleBinding's role lacks pods/portforward: without the preflight the pods would never look serving."""
    role = documents(RBAC / "namespaced/clusterrole.yaml")[0]
    role["metadata"]["name"] = "mmgitops-conformance-no-portforward"
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["pods/portforward"]]
    create(given["api"], role)
    namespace_bound(given["api"], "mmgitops-noforward", role["metadata"]["name"])
    refused_before_anything(cluster, cluster_env, given, "mmgitops-noforward",
                            "namespace mmgitops-noforward: this user may not get pods/portforward there",
                            tmp_path / "r")


def test_a_runner_that_may_not_read_nodes_leaves_the_gpu_node_check_not_reached(cluster, cluster_env, given,
                                                                                  tmp_path):
    """The namespace's role alone, without the reader: the packing check's node read is refused, and the run says
    so as not reached, exit 3, instead of passing it by."""
    api = given["api"]
    service_account(api, GIVEN_NS, "node-blind-runner")
    create(api, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "node-blind-runner", "namespace": GIVEN_NS},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": "mmgitops-conformance-namespace"},
                 "subjects": [{"kind": "ServiceAccount", "name": "node-blind-runner", "namespace": GIVEN_NS}]})
    kubeconfig = identity.service_account_kubeconfig(Path(cluster["kubeconfig"]), GIVEN_NS, "node-blind-runner",
                                                     tmp_path / "kubeconfig")
    run = conform(cluster, cluster_env, kubeconfig, tmp_path / "r", "--namespace", GIVEN_NS, "-m", "packing",
                  "--", "--min-churn-age-ms", "1500", "--packing-models", "2", "-k", "gpu_node", timeout=600)
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-2000:]
    found = results(tmp_path / "r")
    assert [(t["outcome"], t["skip_reason"].startswith("the runner may not read node gpu-worker-"))
            for t in found["tests"]] == [("not reached", True)], found["tests"]


# ---- a labelled namespace of the run's own (plain Kubernetes) --------------------------------------------------
@pytest.fixture(scope="module")
def labelled(cluster: dict, cluster_env: dict, given: dict, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Any]]:
    api = given["api"]
    user = service_account(api, AUDITED_NAMESPACE, "labelled-runner")
    bind_cluster_role(api, "mmgitops-conformance-runner", AUDITED_NAMESPACE, "labelled-runner")
    kubeconfig = identity.service_account_kubeconfig(Path(cluster["kubeconfig"]), AUDITED_NAMESPACE, "labelled-runner",
                                                     tmp_path_factory.mktemp("labelled") / "kubeconfig")
    report = tmp_path_factory.mktemp("labelled-report")
    since = time.time()
    # Every group that makes a call the others do not (the demo's run in the given namespace runs them all); eviction,
    # cold loads and routing add no verb.
    run = conform(cluster, cluster_env, kubeconfig, report, "-m", "not (eviction or coldload or routing)", *CHURN)
    left = objects.namespace("dead01", "elsewhere:1", "localS3")
    client.CoreV1Api(api).create_namespace(left)
    cleanup = mmgitops("conform", "cleanup", "--kubeconfig", str(kubeconfig), "--storage-config",
                       cluster["storage_config"], env=cluster_env)
    yield {"api": api, "run": run, "results": results(report), "user": user, "kubeconfig": kubeconfig,
           "since": since, "until": time.time(), "cleanup": cleanup, "left": left["metadata"]["name"]}


def test_the_suite_passes_in_a_namespace_of_its_own_with_the_trimmed_cluster_role(labelled):
    run, found = labelled["run"], labelled["results"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert [n for n, o in outcomes(found).items() if o != "passed"] == []
    assert found["target"]["namespace"].endswith("(namespace of the run's own)")


def test_cleanup_with_the_trimmed_role_removes_a_killed_runs_namespace(labelled):
    assert labelled["cleanup"].returncode == 0, labelled["cleanup"].stderr
    assert f"removed namespace {labelled['left']}" in labelled["cleanup"].stdout


def test_the_trimmed_cluster_role_is_refused_secrets_and_other_deployments(labelled):
    api = config.new_client_from_config(config_file=str(labelled["kubeconfig"]))
    core = client.CoreV1Api(api)
    assert status_of(lambda: core.read_namespaced_secret("anything", "redhat-ods-applications")) == 403
    assert status_of(lambda: core.list_secret_for_all_namespaces()) == 403
    assert status_of(lambda: core.patch_namespace("redhat-ods-applications", {"metadata": {"labels": {"a": "b"}}})
                     ) == 403
    assert status_of(lambda: client.AppsV1Api(api).read_namespaced_deployment("other", "redhat-ods-applications")
                     ) == 403


def test_the_trimmed_cluster_role_grants_exactly_the_calls_the_run_makes(cluster, labelled):
    allowed, refused = used(cluster, labelled["user"], labelled["since"], labelled["until"])
    assert allowed == granted("labelled-namespaces")
    assert refused == set()


# ---- an OpenShift project, self-provisioned -------------------------------------------------------------------
PROJECT_TEMPLATE = {
    "apiVersion": "template.openshift.io/v1", "kind": "Template", "metadata": {"name": "project-request"},
    "objects": [
        {"apiVersion": "project.openshift.io/v1", "kind": "Project",
         "metadata": {"name": "${PROJECT_NAME}", "labels": {"modelmesh-enabled": "true"},
                      "annotations": {"openshift.io/requester": "${PROJECT_REQUESTING_USER}",
                                      "openshift.io/display-name": "${PROJECT_DISPLAYNAME}",
                                      "openshift.io/description": "${PROJECT_DESCRIPTION}"}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "admin", "namespace": "${PROJECT_NAME}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "${PROJECT_ADMIN_USER}"}]}],
    "parameters": [{"name": n} for n in ("PROJECT_NAME", "PROJECT_DISPLAYNAME", "PROJECT_DESCRIPTION",
                                         "PROJECT_ADMIN_USER", "PROJECT_REQUESTING_USER")]}


@pytest.fixture(scope="module")
def self_provisioner(cluster: dict, given: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A ServiceAccount with OpenShift's self-provisioner role and the read-only one, nothing else."""
    api = given["api"]
    user = service_account(api, AUDITED_NAMESPACE, "project-runner")
    for role in ("self-provisioner", "mmgitops-conformance-reader"):
        bind_cluster_role(api, role, AUDITED_NAMESPACE, "project-runner")
    kubeconfig = identity.service_account_kubeconfig(Path(cluster["kubeconfig"]), AUDITED_NAMESPACE, "project-runner",
                                                     tmp_path_factory.mktemp("project") / "kubeconfig")
    return {"api": api, "user": user, "kubeconfig": kubeconfig}


def projects_of(api: client.ApiClient) -> list[str]:
    return [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items
            if n.metadata.name.startswith(objects.NAMESPACE_PREFIX)
            and (n.metadata.annotations or {}).get("openshift.io/requester", "").endswith(":project-runner")
            and n.status.phase != "Terminating"]


def test_without_a_labelling_project_template_the_project_mode_stops_with_one_line_and_removes_its_project(
        cluster, cluster_env, self_provisioner, tmp_path):
    run = conform(cluster, cluster_env, self_provisioner["kubeconfig"], tmp_path / "r", "-m", "readiness",
                  timeout=300)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr
    assert "may not patch namespaces" in run.stdout + run.stderr
    assert projects_of(self_provisioner["api"]) == []


def test_the_readiness_group_passes_in_a_self_provisioned_project(cluster, cluster_env, self_provisioner, tmp_path):
    api = self_provisioner["api"]
    create(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "openshift-config"}})
    create(api, {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "project-request-template", "namespace": "openshift-config"},
                 "data": {"template.yaml": yaml.safe_dump(PROJECT_TEMPLATE)}})
    try:
        run = conform(cluster, cluster_env, self_provisioner["kubeconfig"], tmp_path / "r", "-m", "readiness",
                      *CHURN)
    finally:
        client.CoreV1Api(api).delete_namespaced_config_map("project-request-template", "openshift-config")
    found = results(tmp_path / "r")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert [n for n, o in outcomes(found).items() if o != "passed"] == []
    assert found["target"]["namespace"].endswith("(OpenShift project)")
    assert projects_of(api) == []
